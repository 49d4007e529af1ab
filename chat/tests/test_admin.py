"""Moderation in the admin: who reaches it, what it lists, and that deletions and read-only rooms reach open pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from chat import broadcasts, errors, groups, services
from chat.models import Message, Room
from chat.tests.conftest import direct_message, hears_only_presence, joined, open_socket, receive_until, send_message
from tests.support.html import visible_text


@pytest.fixture
def moderator(db: None) -> User:
    return User.objects.create_superuser(username="mod", password="correct-horse-battery-staple")


@pytest.fixture
def moderator_client(moderator: User) -> Client:
    client = Client()
    client.force_login(moderator)
    return client


@pytest.fixture
def lobby(db: None) -> Room:
    return Room.objects.create(name="lobby")


@pytest.fixture
def removals(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, list[int]]]:
    """What the deletions publish once committed: {group: [message ids]} per call."""
    calls: list[dict[str, list[int]]] = []
    monkeypatch.setattr(
        broadcasts,
        "messages_removed",
        lambda *, messages: calls.append(broadcasts.removals_by_group(messages=messages)),
    )
    return calls


def admin_urls(message: Message, private: Message, room: Room, user: User) -> list[str]:
    return [
        reverse("admin:index"),
        reverse("admin:chat_room_changelist"),
        reverse("admin:chat_room_change", args=[room.pk]),
        reverse("admin:chat_message_changelist"),
        reverse("admin:chat_message_change", args=[message.pk]),
        reverse("admin:chat_message_delete", args=[message.pk]),
        reverse("admin:chat_privatemessage_changelist"),
        reverse("admin:chat_privatemessage_delete", args=[private.pk]),
        reverse("admin:accounts_user_changelist"),
        reverse("admin:accounts_user_change", args=[user.pk]),
    ]


# --- who can reach it


def test_a_logged_in_user_who_is_not_staff_reaches_no_admin_page(alice, bob, alice_client, lobby):
    message = Message.objects.create(room=lobby, author=bob, body="hello")
    private = direct_message(bob, alice, "psst")

    for url in admin_urls(message, private, lobby, bob):
        response = alice_client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_a_user_who_is_not_staff_cannot_delete_through_the_admin(alice, bob, alice_client, lobby, removals):
    message = Message.objects.create(room=lobby, author=bob, body="keep me")

    alice_client.post(reverse("admin:chat_message_delete", args=[message.pk]), {"post": "yes"})
    alice_client.post(
        reverse("admin:chat_message_changelist"),
        {"action": "delete_selected", "_selected_action": [message.pk], "post": "yes"},
    )
    alice_client.post(reverse("admin:chat_room_change", args=[lobby.pk]), {"read_only": "on"})

    assert Message.objects.filter(pk=message.pk).exists()
    assert not Room.objects.get(pk=lobby.pk).read_only
    assert removals == []


def test_staff_without_permissions_is_refused_with_403(make_user, lobby):
    staff = make_user("intern")
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)

    assert client.get(reverse("admin:index")).status_code == 200
    assert client.get(reverse("admin:chat_message_changelist")).status_code == 403
    assert client.get(reverse("admin:accounts_user_changelist")).status_code == 403


def test_a_moderator_with_view_and_delete_permissions_can_delete_but_not_edit(make_user, bob, lobby, removals):
    staff = make_user("helper")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_message", "delete_message"]))
    client = Client()
    client.force_login(staff)
    message = Message.objects.create(room=lobby, author=bob, body="spam")

    assert client.get(reverse("admin:chat_message_changelist")).status_code == 200
    client.post(reverse("admin:chat_message_change", args=[message.pk]), {"body": "edited"})
    assert Message.objects.get(pk=message.pk).body == "spam"
    response = client.post(reverse("admin:chat_message_delete", args=[message.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Message.objects.filter(pk=message.pk).exists()


# --- what it lists


def test_messages_are_searchable_by_text_author_and_room(moderator_client, alice, bob, lobby):
    other = Room.objects.create(name="gardening")
    Message.objects.create(room=lobby, author=alice, body="tomatoes are red")
    Message.objects.create(room=other, author=bob, body="cucumbers are green")
    url = reverse("admin:chat_message_changelist")

    def found(query: str) -> str:
        response = moderator_client.get(url, {"q": query})
        assert response.status_code == 200
        return visible_text(response.content.decode())

    assert "tomatoes are red" in found("tomatoes")
    assert "cucumbers" not in found("tomatoes")
    assert "cucumbers are green" in found("bob")
    assert "tomatoes" not in found("bob")
    assert "cucumbers are green" in found("gardening")


def test_messages_filter_by_date(moderator_client, alice, lobby):
    old = Message.objects.create(room=lobby, author=alice, body="last month's news")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    Message.objects.create(room=lobby, author=alice, body="today's news")
    # The parameters of the date filter's "Today" link.
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)

    response = moderator_client.get(
        reverse("admin:chat_message_changelist"),
        {"created_at__gte": str(today), "created_at__lt": str(today + timedelta(days=1))},
    )

    text = visible_text(response.content.decode())
    assert "today's news" in text
    assert "last month's news" not in text


def test_room_messages_and_private_messages_are_listed_apart(moderator_client, alice, bob, lobby):
    Message.objects.create(room=lobby, author=alice, body="for everyone")
    direct_message(alice, bob, "only for bob")

    public = visible_text(moderator_client.get(reverse("admin:chat_message_changelist")).content.decode())
    private = visible_text(moderator_client.get(reverse("admin:chat_privatemessage_changelist")).content.decode())
    assert "for everyone" in public
    assert "only for bob" not in public
    assert "only for bob" in private
    assert "for everyone" not in private


def test_the_admin_lists_rooms_and_users_and_adds_no_messages_or_rooms(moderator_client, alice, lobby):
    assert "lobby" in moderator_client.get(reverse("admin:chat_room_changelist")).content.decode()
    assert "alice" in moderator_client.get(reverse("admin:accounts_user_changelist")).content.decode()
    # Added or edited here, a message would never reach open pages; a room name is validated by its URL.
    assert moderator_client.get(reverse("admin:chat_message_add")).status_code == 403
    assert moderator_client.get(reverse("admin:chat_room_add")).status_code == 403
    assert moderator_client.get(reverse("admin:chat_room_delete", args=[lobby.pk])).status_code == 403


# --- deleting goes through the service


def test_the_delete_page_deletes_through_the_service_and_publishes_the_removal(
    moderator_client, alice, lobby, removals, django_capture_on_commit_callbacks
):
    message = Message.objects.create(room=lobby, author=alice, body="rude")

    with django_capture_on_commit_callbacks(execute=True):
        response = moderator_client.post(reverse("admin:chat_message_delete", args=[message.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not Message.objects.filter(pk=message.pk).exists()
    assert removals == [{lobby.group_name: [message.pk]}]


def test_delete_selected_deletes_through_the_service_one_removal_per_group(
    moderator_client, alice, bob, lobby, removals, django_capture_on_commit_callbacks
):
    other = Room.objects.create(name="other")
    here = [Message.objects.create(room=lobby, author=alice, body=f"spam {i}") for i in range(3)]
    there = Message.objects.create(room=other, author=bob, body="more spam")
    kept = Message.objects.create(room=lobby, author=bob, body="fine")

    with django_capture_on_commit_callbacks(execute=True):
        moderator_client.post(
            reverse("admin:chat_message_changelist"),
            {"action": "delete_selected", "_selected_action": [m.pk for m in [*here, there]], "post": "yes"},
        )

    assert list(Message.objects.all()) == [kept]
    assert len(removals) == 1
    assert {group: sorted(ids) for group, ids in removals[0].items()} == {
        lobby.group_name: sorted(m.pk for m in here),
        other.group_name: [there.pk],
    }


def test_deleting_a_private_message_publishes_to_its_conversation_and_both_people_only(
    moderator_client, alice, bob, lobby, removals, django_capture_on_commit_callbacks
):
    private = direct_message(alice, bob, "psst")

    with django_capture_on_commit_callbacks(execute=True):
        moderator_client.post(reverse("admin:chat_privatemessage_delete", args=[private.pk]), {"post": "yes"})

    assert not Message.objects.filter(pk=private.pk).exists()
    assert removals == [
        {
            private.room.group_name: [private.pk],
            groups.user_group(bob.pk): [private.pk],
            groups.user_group(alice.pk): [private.pk],
        }
    ]


def test_deleting_a_user_removes_their_messages_from_open_pages(
    moderator_client, alice, bob, lobby, removals, django_capture_on_commit_callbacks
):
    message = Message.objects.create(room=lobby, author=alice, body="bye")
    Message.objects.create(room=lobby, author=bob, body="stays")

    with django_capture_on_commit_callbacks(execute=True):
        moderator_client.post(reverse("admin:accounts_user_delete", args=[alice.pk]), {"post": "yes"})

    assert not User.objects.filter(pk=alice.pk).exists()
    assert removals == [{lobby.group_name: [message.pk]}]
    assert list(Message.objects.values_list("body", flat=True)) == ["stays"]


# --- read-only rooms


def test_a_read_only_room_refuses_posting_with_a_chat_error(alice, lobby):
    lobby.read_only = True
    lobby.save()

    with pytest.raises(errors.ChatError, match="read-only") as refused:
        services.messages.message_post(room=Room.objects.get(pk=lobby.pk), author=alice, text="hello")

    assert refused.value.reason == "room_read_only"
    assert not Message.objects.exists()


def test_closing_a_room_tells_its_sockets_the_new_state_with_the_line_to_show(
    moderator, lobby, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[tuple[str, dict]] = []

    class Layer:
        async def group_send(self, group: str, event: dict) -> None:
            sent.append((group, event))

    monkeypatch.setattr(broadcasts, "get_channel_layer", Layer)

    with django_capture_on_commit_callbacks(execute=True):
        services.moderation.room_read_only_set(room=lobby, read_only=True, by=moderator)

    assert Room.objects.get(pk=lobby.pk).read_only
    [(group, event)] = sent
    assert group == lobby.group_name
    assert event["type"] == "room.status_changed"
    assert event["read_only"] is True
    assert "This room is read-only" in visible_text(event["html"])


def test_the_room_page_says_when_the_room_is_read_only(alice_client, lobby):
    assert "read-only" not in visible_text(alice_client.get("/chat/lobby/").content.decode())

    Room.objects.filter(pk=lobby.pk).update(read_only=True)

    page = alice_client.get("/chat/lobby/").content.decode()
    assert 'id="room-status"' in page
    assert "This room is read-only" in visible_text(page)


def room_form(**fields: str) -> dict[str, str]:
    """The room's change form as the admin posts it: its fields and its (empty) members formset."""
    return {"kind": "public", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0", **fields}


def test_the_change_form_and_the_actions_set_read_only_through_the_service(
    moderator_client, lobby, monkeypatch, django_capture_on_commit_callbacks
):
    published: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        broadcasts, "room_status_changed", lambda *, room: published.append((room.name, room.read_only))
    )
    other = Room.objects.create(name="other")

    with django_capture_on_commit_callbacks(execute=True):
        moderator_client.post(reverse("admin:chat_room_change", args=[lobby.pk]), room_form(read_only="on"))
    assert Room.objects.get(pk=lobby.pk).read_only
    assert published == [("lobby", True)]

    with django_capture_on_commit_callbacks(execute=True):
        moderator_client.post(
            reverse("admin:chat_room_changelist"),
            {"action": "open_for_posting", "_selected_action": [lobby.pk, other.pk]},
        )
    assert not Room.objects.get(pk=lobby.pk).read_only
    assert published == [("lobby", True), ("lobby", False)]  # "other" was open already


# --- through real sockets, on the in-memory and the Redis layer


def staff_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_a_message_deleted_in_the_admin_disappears_from_every_open_page_of_the_room(alice, bob, carol):
    moderator = await sync_to_async(User.objects.create_superuser)(username="mod", password="x-long-password-1")
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    carol_socket = await joined(carol, "elsewhere")
    await send_message(alice_socket, "something rude")
    await receive_until(bob_socket, lambda f: "something rude" in f)
    message = await sync_to_async(Message.objects.get)()
    removal = f'<article id="message-{message.pk}" hx-swap-oob="delete">'

    client = await sync_to_async(staff_client)(moderator)
    response = await sync_to_async(client.post)(
        reverse("admin:chat_message_delete", args=[message.pk]), {"post": "yes"}
    )
    assert response.status_code == 302

    for socket in (alice_socket, bob_socket):
        frame = await receive_until(socket, lambda f: removal in f)
        assert "something rude" not in frame
    assert await hears_only_presence(carol_socket, quiet=0.3)
    for socket in (alice_socket, bob_socket, carol_socket):
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_a_private_message_deleted_in_the_admin_disappears_from_both_people_only(alice, bob, carol):
    moderator = await sync_to_async(User.objects.create_superuser)(username="mod", password="x-long-password-1")
    alice_socket, bob_elsewhere, carol_socket = (
        await joined(alice),
        await joined(bob, "elsewhere"),
        await joined(carol),
    )
    await send_message(alice_socket, "/pm bob a secret")
    await receive_until(bob_elsewhere, lambda f: "a secret" in f)
    message = await sync_to_async(Message.objects.get)()
    removal = f'<article id="message-{message.pk}" hx-swap-oob="delete">'

    client = await sync_to_async(staff_client)(moderator)
    await sync_to_async(client.post)(reverse("admin:chat_privatemessage_delete", args=[message.pk]), {"post": "yes"})

    for socket in (alice_socket, bob_elsewhere):
        await receive_until(socket, lambda f: removal in f)
    # carol shares alice's room but never saw the private message: she gets no removal either.
    assert not await _received(carol_socket, removal)
    for socket in (alice_socket, bob_elsewhere, carol_socket):
        await socket.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_a_room_made_read_only_in_the_admin_says_so_live_and_refuses_posts(alice):
    moderator = await sync_to_async(User.objects.create_superuser)(username="mod", password="x-long-password-1")
    socket = await joined(alice)
    room = await sync_to_async(Room.objects.get)(name="lobby")

    client = await sync_to_async(staff_client)(moderator)
    await sync_to_async(client.post)(reverse("admin:chat_room_change", args=[room.pk]), room_form(read_only="on"))

    status = await receive_until(socket, lambda f: 'id="room-status"' in f)
    assert "This room is read-only" in visible_text(status)
    await send_message(socket, "can I still talk?")
    error = await receive_until(socket, lambda f: 'id="chat-error"' in f)
    assert "#lobby is read-only" in visible_text(error)
    assert 'value="can I still talk?"' in error  # the text stays in the box
    assert await sync_to_async(Message.objects.count)() == 0

    await sync_to_async(client.post)(reverse("admin:chat_room_change", args=[room.pk]), room_form())
    status = await receive_until(socket, lambda f: 'id="room-status"' in f)
    assert "read-only" not in visible_text(status)
    await send_message(socket, "back again")
    await receive_until(socket, lambda f: "back again" in f and "message-body" in f)
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_socket_opening_a_read_only_room_is_told_with_its_log(alice):
    await sync_to_async(Room.objects.create)(name="closed", read_only=True)

    socket = await open_socket(alice, "closed")
    log = await receive_until(socket, lambda f: 'id="messages"' in f)
    assert 'id="room-status"' in log
    assert "This room is read-only" in visible_text(log)
    await socket.disconnect()


async def _received(socket, marker: str, quiet: float = 0.3) -> bool:
    """Whether any frame holding the marker arrives before the socket is quiet for a moment."""
    while not await socket.receive_nothing(timeout=quiet):
        if marker in await socket.receive_from():
            return True
    return False

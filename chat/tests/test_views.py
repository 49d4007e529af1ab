"""The pages: directory, room, and the private-message form swap."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from chat import fragments, presence, services
from chat.models import Message, Room
from chat.tests.conftest import direct_message
from tests.support.html import element_ids, element_tags, visible_text

pytestmark = pytest.mark.django_db


def test_the_root_redirects_to_the_directory(alice_client: Client):
    assert alice_client.get("/").url == "/chat/"


@pytest.mark.parametrize("path", ["/chat/", "/chat/lobby/"])
def test_anonymous_visitors_are_sent_to_login(client: Client, path: str):
    response = client.get(path)
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/?next=")


def test_the_directory_lists_every_room_with_people_online_latest_message_first(alice_client, alice, bob, carol):
    quiet, busy, _empty = (Room.objects.create(name=n) for n in ("quiet", "Busy", "empty"))
    services.messages.message_create(room=quiet, author=bob, body="first")
    services.messages.message_create(room=busy, author=bob, body="later")
    for user in (bob, bob, carol):  # bob in two tabs
        async_to_sync(presence.store().add)(room_id=busy.pk, user_id=user.pk)

    html = alice_client.get("/chat/").content.decode()

    room_list = html.split('id="room-list"')[1]
    ids = [i for i in element_ids(room_list) if i.startswith("room-")]
    assert ids == ["room-busy", "room-quiet", "room-empty"]
    busy_item = html.split('id="room-busy"')[1].split(">", 1)[1].split("</li>")[0]
    assert 'class="online-count"' in busy_item
    assert visible_text(busy_item).startswith("#Busy 2 online")
    assert "0 online" in visible_text(html.split('id="room-empty"')[1].split(">", 1)[1].split("</li>")[0])


def test_the_directory_form_opens_a_room_by_name(alice_client):
    response = alice_client.get("/chat/", {"name": " new-room "})
    assert response.url == "/chat/new-room/"


@pytest.mark.parametrize("name", ["", "has space", "x" * 51, "<script>"])
def test_the_directory_form_refuses_an_invalid_name_with_a_clear_error(alice_client, name):
    response = alice_client.get("/chat/", {"name": name})
    assert response.status_code == 400
    assert "Room names are 1 to 50 letters, digits, hyphens or underscores." in response.content.decode()
    assert "script" not in element_tags(response.content.decode().split("<main")[1])


def test_opening_a_new_valid_name_creates_the_room_once_in_any_casing(alice_client):
    assert alice_client.get("/chat/Lobby/").status_code == 200
    assert alice_client.get("/chat/LOBBY/").status_code == 200
    assert list(Room.objects.values_list("name", flat=True)) == ["Lobby"]


@pytest.mark.parametrize("name", ["has%20space", "x" * 51, "semi;colon", "%3Cb%3Ebold%3C%2Fb%3E"])
def test_an_invalid_room_page_is_a_clear_400_never_a_500(alice_client, name):
    response = alice_client.get(f"/chat/{name}/")
    assert response.status_code == 400
    assert "Room names are 1 to 50" in response.content.decode()
    assert not Room.objects.exists()


def test_the_room_page_shows_the_newest_50_messages_with_author_and_time(alice_client, bob):
    room = Room.objects.create(name="lobby")
    for i in range(55):
        Message.objects.create(room=room, author=bob, body=f"note {i}")

    html = alice_client.get("/chat/lobby/").content.decode()

    message_ids = [i for i in element_ids(html) if i.startswith("message-") and i[8:].isdigit()]
    assert len(message_ids) == 50
    assert "note 5" in html
    assert "note 4<" not in html
    last = html.split(message_ids[-1])[1].split("</article>")[0]
    assert "bob" in visible_text(last)
    assert "<time datetime=" in last
    assert "note 54" in visible_text(last)


def test_the_room_page_holds_the_contract_elements(alice_client):
    html = alice_client.get("/chat/lobby/").content.decode()
    for element_id in ("messages", "online-users", "message-form", "chat-error"):
        assert f'id="{element_id}"' in html
    assert 'ws-connect="/ws/chat/lobby/"' in html
    assert 'hx-ext="ws"' in html
    assert '<form id="message-form" class="composer" ws-send' in html
    assert 'name="message"' in html
    assert 'role="alert"' in html
    assert 'aria-live="polite"' in html
    assert "https://" not in html  # nothing from a CDN


def test_message_text_on_the_page_is_escaped(alice_client, bob):
    room = Room.objects.create(name="lobby")
    Message.objects.create(room=room, author=bob, body="<script>alert(1)</script><b>x</b>")
    html = alice_client.get("/chat/lobby/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;" in html
    assert "b" not in element_tags(html.split('id="messages"')[1].split("</div>")[0])


def test_private_messages_show_only_on_the_pages_of_their_two_people(alice, bob, carol):
    direct_message(alice, bob, "just for bob")
    for user, sees in ((alice, True), (bob, True), (carol, False)):
        client = Client()
        client.force_login(user)
        assert ("just for bob" in client.get("/chat/somewhere-else/").content.decode()) is sees


def test_clicking_a_name_swaps_in_a_form_prefilled_for_a_private_message(alice_client, bob):
    url = reverse("chat:private_form", args=["lobby"])
    response = alice_client.get(url, {"to": "BOB"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert element_ids(html)[0] == "message-form"
    assert 'value="/pm bob "' in html
    assert "hx-swap-oob" not in html
    assert alice_client.get(url, {"to": "bob"}).url == "/chat/lobby/"


def _message_ids(html: str) -> list[int]:
    return [int(i[8:]) for i in element_ids(html) if i.startswith("message-") and i[8:].isdigit()]


def test_scrolling_up_loads_older_pages_by_keyset_until_the_beginning(alice_client, bob):
    room = Room.objects.create(name="lobby")
    Message.objects.bulk_create(Message(room=room, author=bob, body=f"m{i}") for i in range(120))
    ids = list(Message.objects.order_by("id").values_list("id", flat=True))

    page = alice_client.get("/chat/lobby/").content.decode()
    assert _message_ids(page) == ids[-50:]
    # Relative to the page (/chat/lobby/): the same log serves every page of the conversation.
    assert f'hx-get="history/?before={ids[-50]}"' in page

    older = alice_client.get(f"/chat/lobby/history/?before={ids[-50]}").content.decode()
    assert _message_ids(older) == ids[-100:-50]
    assert f"?before={ids[-100]}" in older

    oldest = alice_client.get(f"/chat/lobby/history/?before={ids[-100]}").content.decode()
    assert _message_ids(oldest) == ids[:20]
    assert "This is the beginning of #lobby." in visible_text(oldest)
    assert "intersect once" not in oldest


def test_scroll_back_includes_the_readers_private_messages_and_no_one_elses(alice_client, alice, bob, carol):
    room = Room.objects.create(name="lobby")
    mine = direct_message(bob, alice, "for alice")
    direct_message(bob, carol, "for carol")
    newest = services.messages.message_create(room=room, author=bob, body="public")
    older = alice_client.get(f"/chat/lobby/history/?before={newest.pk}").content.decode()
    assert _message_ids(older) == [mine.pk]


@pytest.mark.parametrize("before", ["", "abc", "-1"])
def test_scroll_back_refuses_a_malformed_cursor(alice_client, before):
    assert alice_client.get(f"/chat/lobby/history/?before={before}").status_code == 400


def test_a_room_of_100000_messages_opens_and_scrolls_back_in_a_constant_number_of_queries(
    alice_client, bob, django_assert_max_num_queries
):
    room = Room.objects.create(name="big")
    Message.objects.bulk_create(
        (Message(room=room, author=bob, body=f"message {i}") for i in range(100_000)), batch_size=5000
    )
    middle = Message.objects.filter(room=room).order_by("id").values_list("id", flat=True)[50_000]
    alice_client.get("/chat/big/")  # the first visit joins the room
    # session, user, room, log (room + private), read mark, online
    # users, sidebar (latest id, rooms, counts, followed threads)
    with django_assert_max_num_queries(10):
        assert alice_client.get("/chat/big/").status_code == 200
    with django_assert_max_num_queries(5):
        older = alice_client.get(f"/chat/big/history/?before={middle}").content.decode()
    assert _message_ids(older)[-1] == middle - 1
    assert len(_message_ids(older)) == 50


def test_search_finds_the_rooms_messages_by_every_word_and_links_each_to_its_place(alice_client, alice, bob):
    room, other = Room.objects.create(name="lobby"), Room.objects.create(name="other")
    hit = services.messages.message_create(room=room, author=bob, body="The deploy finished at noon")
    services.messages.message_create(room=room, author=bob, body="deploy failed")
    services.messages.message_create(room=other, author=bob, body="deploy finished elsewhere")
    direct_message(bob, alice, "deploy finished privately")

    html = alice_client.get("/chat/lobby/search/", {"q": "deploy finished"}).content.decode()

    results = html.split('id="search-results"')[1]
    assert _message_ids(results) == [hit.pk]
    assert f'href="/chat/lobby/messages/{hit.pk}/#message-{hit.pk}"' in results
    assert "1 message found" in visible_text(html)


def test_a_search_result_opens_the_message_among_its_neighbours(alice_client, bob):
    room = Room.objects.create(name="lobby")
    messages = [services.messages.message_create(room=room, author=bob, body=f"n{i}") for i in range(60)]
    target = messages[30]

    html = alice_client.get(f"/chat/lobby/messages/{target.pk}/").content.decode()

    assert _message_ids(html) == [m.pk for m in messages[5:56]]
    assert html.split('class="is-target"')[1].split("</article>")[0].count(f'id="message-{target.pk}"') == 1


def test_a_private_message_cannot_be_opened_through_the_context_page(alice_client, bob, carol):
    Room.objects.create(name="lobby")
    private = direct_message(bob, carol, "secret")
    assert alice_client.get(f"/chat/lobby/messages/{private.pk}/").status_code == 404
    assert alice_client.get(f"/dm/bob/messages/{private.pk}/").status_code == 404  # alice's own with bob


def test_search_escapes_the_query_and_the_results(alice_client, bob):
    room = Room.objects.create(name="lobby")
    services.messages.message_create(room=room, author=bob, body="<b>bold</b> move")
    html = alice_client.get("/chat/lobby/search/", {"q": "<b>bold</b>"}).content.decode()
    main = html.split("<main")[1]
    assert "b" not in element_tags(main)


def _directory_row(html: str, name: str) -> str:
    return html.split(f'id="room-{name}"')[1].split("</li>")[0]


def test_the_directory_counts_unread_messages_since_the_last_visit_and_flags_mentions(alice_client, alice, bob):
    lobby, quiet, never = (Room.objects.create(name=n) for n in ("lobby", "quiet", "never"))
    services.memberships.conversation_mark_read(room=lobby, user=alice, join=True)
    services.memberships.conversation_mark_read(room=quiet, user=alice, join=True)
    services.messages.message_create(room=lobby, author=bob, body="one")
    services.messages.message_create(room=lobby, author=bob, body="two @alice")
    services.messages.message_create(room=lobby, author=alice, body="my own")
    services.messages.message_create(room=never, author=bob, body="unvisited @alice")

    html = alice_client.get("/chat/").content.decode()

    lobby_row, quiet_row, never_row = (_directory_row(html, n) for n in ("lobby", "quiet", "never"))
    assert 'style="counter-reset: unread 2"' in lobby_row
    assert "you were mentioned" in visible_text(lobby_row)
    assert 'style="counter-reset: unread 0"' in quiet_row
    assert "you were mentioned" not in visible_text(quiet_row)
    assert 'class="unread"' not in never_row


def test_the_room_marks_where_the_new_messages_begin(alice_client, alice, bob):
    room = Room.objects.create(name="lobby")
    services.messages.message_create(room=room, author=bob, body="seen before")
    services.memberships.conversation_mark_read(room=room, user=alice, join=True)
    new = services.messages.message_create(room=room, author=bob, body="new one")

    html = alice_client.get("/chat/lobby/").content.decode()

    assert "New since your last visit" in visible_text(html)
    assert element_ids(html.split('id="unread-divider"')[1])[0] == f"message-{new.pk}"


def test_a_first_visit_has_no_new_messages_marker(alice_client, bob):
    services.messages.message_create(room=Room.objects.create(name="lobby"), author=bob, body="hello")
    assert 'id="unread-divider"' not in alice_client.get("/chat/lobby/").content.decode()


def test_the_author_edits_a_message_inline(alice_client, alice):
    message = services.messages.message_create(room=Room.objects.create(name="lobby"), author=alice, body="teh")
    form = alice_client.get(f"/chat/messages/{message.pk}/edit/", headers={"HX-Request": "true"}).content.decode()
    assert element_ids(form)[0] == f"message-{message.pk}"
    assert 'value="teh"' in form

    saved = alice_client.post(
        f"/chat/messages/{message.pk}/edit/", {"body": "the"}, headers={"HX-Request": "true"}
    ).content.decode()

    assert visible_text(saved.split('class="message-body">')[1].split("</div>")[0]) == "the"
    assert "(edited)" in visible_text(saved.split('class="message-body"')[0])


def test_an_edit_posted_before_htmx_takes_the_form_over_is_saved_and_returns_to_the_room(alice_client, alice):
    message = services.messages.message_create(room=Room.objects.create(name="lobby"), author=alice, body="teh")
    form = alice_client.get(f"/chat/messages/{message.pk}/edit/", headers={"HX-Request": "true"}).content.decode()
    assert f'method="post" action="/chat/messages/{message.pk}/edit/"' in form
    assert 'name="csrfmiddlewaretoken"' in form

    response = alice_client.post(f"/chat/messages/{message.pk}/edit/", {"body": "the"})

    assert response.url == "/chat/lobby/"
    message.refresh_from_db()
    assert message.body == "the"


def test_nobody_edits_or_deletes_another_users_message(alice_client, bob):
    message = services.messages.message_create(room=Room.objects.create(name="lobby"), author=bob, body="mine")
    assert alice_client.get(f"/chat/messages/{message.pk}/edit/").status_code == 403
    assert alice_client.post(f"/chat/messages/{message.pk}/edit/", {"body": "x"}).content.decode().count("own") == 1
    assert alice_client.post(f"/chat/messages/{message.pk}/delete/").status_code == 403
    message.refresh_from_db()
    assert (message.body, message.edited_at, message.retracted_at) == ("mine", None, None)


def test_an_edit_or_delete_after_the_window_is_answered_in_the_error_line_and_changes_nothing(alice_client, alice):
    message = services.messages.message_create(room=Room.objects.create(name="lobby"), author=alice, body="old")
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(minutes=16))
    htmx = {"HTTP_HX_REQUEST": "true"}

    for response in (
        alice_client.get(f"/chat/messages/{message.pk}/edit/", **htmx),
        alice_client.post(f"/chat/messages/{message.pk}/delete/", **htmx),
    ):
        assert response.status_code == 403
        assert response["HX-Reswap"] == "none"  # the message stays as the page shows it
        html = response.content.decode()
        assert element_ids(html) == ["chat-error"]
        assert 'hx-swap-oob="true"' in html
        assert visible_text(html) == "Messages can be changed for 15 minutes after sending."
    message.refresh_from_db()
    assert (message.body, message.retracted_at) == ("old", None)


@pytest.mark.parametrize(
    ("age_seconds", "css_class"), [(0, "edit-left-15"), (61, "edit-left-14"), (899, "edit-left-1")]
)
def test_a_message_carries_the_minutes_its_edit_window_has_left(alice, age_seconds, css_class):
    message = services.messages.message_create(room=Room.objects.create(name="lobby"), author=alice, body="hi")
    message.created_at = timezone.now() - timedelta(seconds=age_seconds)
    assert css_class in article_classes(fragments.message_appended(message=message), message.pk)


def test_a_message_past_its_edit_window_shows_no_edit_links_to_its_author(alice_client, alice):
    message = services.messages.message_create(room=Room.objects.create(name="lobby"), author=alice, body="old")
    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(minutes=20))
    assert "edit-left-0" in article_classes(alice_client.get("/chat/lobby/").content.decode(), message.pk)


def article_classes(html: str, message_id: int) -> set[str]:
    found = re.search(rf'<article id="message-{message_id}"[^>]* class="([^"]*)"', html)
    assert found is not None
    return set(found[1].split())


def test_nobody_reaches_a_private_message_of_others_through_edit(alice_client, bob, carol):
    message = direct_message(bob, carol, "psst")
    assert alice_client.get(f"/chat/messages/{message.pk}/edit/").status_code == 404


def test_the_author_deletes_a_message_and_a_placeholder_keeps_its_place(alice_client, alice):
    message = services.messages.message_create(room=Room.objects.create(name="lobby"), author=alice, body="regret")
    assert alice_client.get(f"/chat/messages/{message.pk}/delete/").status_code == 405
    placeholder = alice_client.post(f"/chat/messages/{message.pk}/delete/").content.decode()
    assert "message deleted" in visible_text(placeholder)
    page = alice_client.get("/chat/lobby/").content.decode()
    assert "regret" not in page
    assert f'id="message-{message.pk}"' in page


def test_the_log_says_where_each_day_starts_and_search_results_carry_their_date(alice_client, alice):
    room = Room.objects.create(name="lobby")
    now = timezone.localtime()
    for days_ago, body in ((9, "long ago"), (1, "yesterday's news"), (0, "fresh")):
        message = services.messages.message_create(room=room, author=alice, body=body)
        Message.objects.filter(pk=message.pk).update(created_at=now - timedelta(days=days_ago))

    page = alice_client.get("/chat/lobby/").content.decode()
    long_ago = now - timedelta(days=9)
    long_ago_label = long_ago.strftime("%A %-d %B" if long_ago.year == now.year else "%A %-d %B %Y")
    labels = re.findall(r'<h3 class="day-separator"><time datetime="[^"]+">([^<]+)</time></h3>', page)
    assert labels == [long_ago_label, "Yesterday", "Today"]
    text = visible_text(page)
    assert text.index("Yesterday") < text.index("yesterday's news") < text.index("Today") < text.index("fresh")

    results = alice_client.get("/chat/lobby/search/?q=news").content.decode()
    assert (now - timedelta(days=1)).strftime("%-d %b %Y") in visible_text(results)


def test_the_log_groups_an_authors_consecutive_messages_under_one_name(alice_client, alice, bob):
    room = Room.objects.create(name="lobby")
    sent = [
        services.messages.message_create(room=room, author=author, body=body)
        for author, body in ((alice, "one"), (alice, "two"), (bob, "three"), (alice, "four"))
    ]
    page = alice_client.get("/chat/lobby/").content.decode()
    continued = ["message--continued" in article_classes(page, message.pk) for message in sent]
    assert continued == [False, True, False, False]

"""Reactions: toggling, counts, who may react, and the live fragment reaching the other open pages."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError
from django.test import Client

from chat import errors, fragments, services
from chat.models import REACTION_EMOJI, Message, Reaction, Room
from chat.tests.conftest import direct_message, drain, hears_only_presence, joined, receive_until
from tests.support.html import parse, visible_text

THUMBS, HEART, EYES = REACTION_EMOJI[0], REACTION_EMOJI[1], REACTION_EMOJI[6]


def reaction_buttons(html: str) -> list[dict[str, str | None]]:
    return [
        attrs for tag, attrs in parse(html).tags if tag == "button" and "reaction" in str(attrs.get("class")).split()
    ]


def reactions_of(message: Message):
    """Matches the frame that replaces the message's reactions (and nothing else)."""
    return lambda frame: frame.strip().startswith(f'<div id="reactions-{message.pk}"')


@pytest.fixture
def room(db) -> Room:
    return services.rooms.room_get_or_create(name="lobby")


@pytest.fixture
def message(room, alice) -> Message:
    return services.messages.message_create(room=room, author=alice, body="lunch?")


def post(client: Client, message: Message, emoji: str, **headers: str):
    return client.post(f"/chat/messages/{message.pk}/reactions/", {"emoji": emoji}, headers=headers)


# --- Services -----------------------------------------------------------------------------------------------------


def test_a_reaction_toggles_on_and_off_and_counts_people(message, alice, bob):
    services.reactions.reaction_toggle(message=message, user=bob, emoji=THUMBS)
    services.reactions.reaction_toggle(message=message, user=alice, emoji=THUMBS)
    services.reactions.reaction_toggle(message=message, user=alice, emoji=EYES)
    message.refresh_from_db()
    assert [(r["emoji"], r["count"], r["user_ids"]) for r in message.reaction_list()] == [
        (THUMBS, 2, [bob.pk, alice.pk]),
        (EYES, 1, [alice.pk]),
    ]
    services.reactions.reaction_toggle(message=message, user=bob, emoji=THUMBS)
    message.refresh_from_db()
    assert [(r["emoji"], r["count"]) for r in message.reaction_list()] == [(THUMBS, 1), (EYES, 1)]
    assert Reaction.objects.count() == 2


def test_reactions_show_in_the_fixed_order_whatever_the_order_given(message, bob):
    for emoji in reversed(REACTION_EMOJI):
        services.reactions.reaction_toggle(message=message, user=bob, emoji=emoji)
    assert [r["emoji"] for r in message.reaction_list()] == list(REACTION_EMOJI)


def test_the_database_keeps_one_row_per_message_user_and_emoji(message, bob):
    Reaction.objects.create(message=message, user=bob, emoji=THUMBS)
    with pytest.raises(IntegrityError):
        Reaction.objects.create(message=message, user=bob, emoji=THUMBS)


@pytest.mark.parametrize("emoji", ["", "x", "👎", "<b>", "👍👍", "🎉 " * 3])
def test_only_the_eight_emoji_are_accepted(message, bob, emoji):
    with pytest.raises(errors.ChatError, match="React with one of"):
        services.reactions.reaction_toggle(message=message, user=bob, emoji=emoji)
    assert not Reaction.objects.exists()


def test_a_heart_without_its_variation_selector_is_the_same_heart(message, bob):
    services.reactions.reaction_toggle(message=message, user=bob, emoji=HEART.removesuffix("\ufe0f"))
    assert Reaction.objects.get().emoji == HEART


def test_a_retracted_message_loses_its_reactions_and_takes_no_more(message, alice, bob):
    services.reactions.reaction_toggle(message=message, user=bob, emoji=THUMBS)
    services.messages.message_retract(message=message, by=alice)
    message.refresh_from_db()
    assert not Reaction.objects.exists()
    assert message.reaction_list() == []
    assert "reaction" not in fragments.message_replaced(message=message)
    with pytest.raises(errors.ChatError, match="deleted"):
        services.reactions.reaction_toggle(message=message, user=bob, emoji=THUMBS)


def test_the_fragment_marks_who_reacted_once_for_everyone(message, alice, bob):
    services.reactions.reaction_toggle(message=message, user=bob, emoji=THUMBS)
    services.reactions.reaction_toggle(message=message, user=alice, emoji=THUMBS)
    html = fragments.reactions(message=message)
    (button,) = reaction_buttons(html)
    assert {f"reacted-u{bob.pk}", f"reacted-u{alice.pk}"} <= set(str(button["class"]).split())
    assert visible_text(html) == f"{THUMBS} 2"
    assert f'id="reactions-{message.pk}"' in html
    assert 'hx-swap-oob="true"' in html


# --- The view -----------------------------------------------------------------------------------------------------


def test_posting_an_emoji_toggles_and_answers_the_new_counts(message, bob):
    client = Client()
    client.force_login(bob)
    response = post(client, message, THUMBS, HX_Request="true")
    assert response.status_code == 200
    assert visible_text(response.content.decode()) == f"{THUMBS} 1"
    assert f"reacted-u{bob.pk}" in response.content.decode()
    response = post(client, message, THUMBS, HX_Request="true")
    assert visible_text(response.content.decode()) == ""
    assert not Reaction.objects.exists()


def test_a_post_without_htmx_goes_back_to_the_room(message, bob):
    client = Client()
    client.force_login(bob)
    response = post(client, message, EYES)
    assert response.status_code == 302
    assert response["Location"] == "/chat/lobby/"
    assert Reaction.objects.get().emoji == EYES


def test_reactions_need_a_login_a_post_and_a_csrf_token(message, bob):
    assert post(Client(), message, THUMBS).status_code == 302
    client = Client()
    client.force_login(bob)
    assert client.get(f"/chat/messages/{message.pk}/reactions/").status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(bob)
    assert post(strict, message, THUMBS).status_code == 403
    assert not Reaction.objects.exists()


def test_a_message_the_user_may_not_read_answers_404(room, alice, bob, carol):
    whisper = direct_message(alice, bob, "psst")
    client = Client()
    client.force_login(carol)
    assert post(client, whisper, THUMBS).status_code == 404
    assert client.post("/chat/messages/999999/reactions/", {"emoji": THUMBS}).status_code == 404
    client.force_login(bob)
    assert post(client, whisper, THUMBS, HX_Request="true").status_code == 200


def test_an_unknown_emoji_is_a_400_and_stores_nothing(message, bob):
    client = Client()
    client.force_login(bob)
    assert post(client, message, "💩").status_code == 400
    assert not Reaction.objects.exists()


def test_the_room_page_shows_the_reactions_and_presses_the_readers_own(message, alice, bob):
    services.reactions.reaction_toggle(message=message, user=bob, emoji=THUMBS)
    client = Client()
    client.force_login(bob)
    html = client.get("/chat/lobby/").content.decode()
    assert f".reactions .reacted-u{bob.pk} {{" in html
    (button,) = reaction_buttons(html)
    assert f"reacted-u{bob.pk}" in str(button["class"])


# --- Live ---------------------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
async def test_when_bob_reacts_then_alices_open_page_gets_the_new_counts_live(alice, bob, carol):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    elsewhere = await joined(carol, "elsewhere")
    room = await sync_to_async(Room.objects.get)(name="lobby")
    message = await sync_to_async(services.messages.message_create)(room=room, author=alice, body="ship it?")
    for socket in (alice_socket, bob_socket, elsewhere):
        await drain(socket)

    await sync_to_async(services.reactions.reaction_toggle)(message=message, user=bob, emoji=THUMBS)

    for socket in (alice_socket, bob_socket):
        frame = await receive_until(socket, reactions_of(message))
        assert 'hx-swap-oob="true"' in frame
        assert visible_text(frame) == f"{THUMBS} 1"
        assert f"reacted-u{bob.pk}" in frame
    assert await hears_only_presence(elsewhere, quiet=0.3)

    await sync_to_async(services.reactions.reaction_toggle)(message=message, user=bob, emoji=THUMBS)
    frame = await receive_until(alice_socket, reactions_of(message))
    assert visible_text(frame) == ""
    for socket in (alice_socket, bob_socket, elsewhere):
        await socket.disconnect()


def test_reactions_inside_a_message_or_the_log_are_never_swapped_on_their_own(room, message, bob):
    # htmx swaps nested hx-swap-oob elements separately: only the reactions fragment itself may carry one.
    services.reactions.reaction_toggle(message=message, user=bob, emoji=THUMBS)
    for html in (
        fragments.message_log(room=room, messages=[message]),
        fragments.message_appended(message=message),
        fragments.message_replaced(message=message),
    ):
        (block,) = [attrs for tag, attrs in parse(html).tags if attrs.get("class") == "reactions"]
        assert "hx-swap-oob" not in block

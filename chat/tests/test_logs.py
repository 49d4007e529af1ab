"""A log assembled from each message's fragment rendered once (chat.logs): what a reader sees stays current."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import fragments, logs, selectors, services
from chat.logs import SharedRenders
from chat.models import REACTION_EMOJI, Message, Room
from chat.tests.conftest import direct_message, joined, open_socket, receive_until
from tests.support.html import visible_text


@pytest.fixture(autouse=True)
def fresh_fragments(monkeypatch):
    """Each test starts with no rendered message kept."""
    monkeypatch.setattr(logs, "_cache", None)


def lobby() -> Room:
    return Room.objects.get_or_create(name="lobby")[0]


def post(room: Room, author, body: str, **fields) -> Message:
    message = services.messages.message_create(room=room, author=author, body=body)
    if fields:
        Message.objects.filter(pk=message.pk).update(**fields)
        message.refresh_from_db()
    return message


ARTICLE = re.compile(
    r'<article id="(?P<id>[^"]+)"[^>]*? class="(?P<classes>[^"]*)"[^>]*>(?P<inner>.*?)</article>', re.S
)


@dataclass
class Shown:
    """A message as a log shows it: its classes, its words and its inner HTML."""

    classes: list[str]
    inner: str

    @property
    def text(self) -> str:
        return visible_text(self.inner)


def articles(html: str) -> dict[str, Shown]:
    return {m["id"]: Shown(m["classes"].split(), m["inner"]) for m in ARTICLE.finditer(html)}


def day_names(html: str) -> list[str]:
    return re.findall(r'class="day-separator"><time datetime="[^"]*">([^<]*)</time>', html)


def log_of(room: Room, user, divider_id: int | None = None) -> str:
    messages = selectors.message_list_recent(room=room, user=user)
    return fragments.message_log(room=room, messages=messages, divider_id=divider_id)


@pytest.mark.django_db(transaction=True)
async def test_an_edit_a_reaction_a_reply_and_a_deletion_each_show_in_the_next_joiners_log(alice, bob, carol):
    room = await sync_to_async(lobby)()
    edited = await sync_to_async(post)(room, alice, "first words")
    reacted = await sync_to_async(post)(room, bob, "react to me")
    parent = await sync_to_async(post)(room, bob, "start a thread")
    retracted = await sync_to_async(post)(room, alice, "a slip")
    first, second = await joined(alice), await joined(bob)  # their logs rendered the fragments, and keep them
    assert len(logs.fragments_cache().entries) == 4

    await sync_to_async(services.messages.message_edit)(message=edited, by=alice, body="better words")
    await sync_to_async(services.reactions.reaction_toggle)(message=reacted, user=carol, emoji=REACTION_EMOJI[1])
    await sync_to_async(services.messages.message_post)(room=room, author=carol, text="a reply", thread=parent.pk)
    await sync_to_async(services.messages.message_retract)(message=retracted, by=alice)
    await receive_until(first, lambda frame: f'id="message-{retracted.pk}"' in frame)  # the changes went out

    socket = await open_socket(carol, "lobby")
    log = articles(await receive_until(socket, lambda frame: 'id="messages"' in frame))
    assert "better words" in log[f"message-{edited.pk}"].text
    assert "(edited)" in log[f"message-{edited.pk}"].text
    assert re.search(f'class="reaction reacted-u{carol.pk}"', log[f"message-{reacted.pk}"].inner)
    assert "1 reply from carol" in log[f"message-{parent.pk}"].text
    assert "message deleted" in log[f"message-{retracted.pk}"].text
    assert "a slip" not in log[f"message-{retracted.pk}"].text
    for open_page in (first, second, socket):
        await open_page.disconnect()


@pytest.mark.django_db
def test_whispers_and_the_unread_divider_take_their_places_and_blocks_break_at_them(alice, bob, carol):
    room = lobby()
    start = (timezone.localtime() - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)  # one span
    first = post(room, bob, "one", created_at=start)
    second = post(room, bob, "two", created_at=start + timedelta(minutes=1))
    whisper = direct_message(carol, alice, "psst")
    Message.objects.filter(pk=whisper.pk).update(created_at=start + timedelta(minutes=2))
    third = post(room, bob, "three", created_at=start + timedelta(minutes=3))
    fourth = post(room, bob, "four", created_at=start + timedelta(minutes=4))
    log_of(room, alice)  # every fragment rendered once, then assembled again from them
    html = log_of(room, alice, divider_id=third.pk)

    order = [f"message-{first.pk}", f"message-{second.pk}", f"message-{whisper.pk}", "unread-divider"]
    order += [f"message-{third.pk}", f"message-{fourth.pk}"]
    positions = [html.index(f'id="{element_id}"') for element_id in order]
    assert positions == sorted(positions)
    assert html.count('id="unread-divider"') == 1
    found = articles(html)
    classes = {element_id: shown.classes for element_id, shown in found.items()}
    assert "message--private" in classes[f"message-{whisper.pk}"]
    assert "private to" in found[f"message-{whisper.pk}"].text
    assert "thread-link" not in found[f"message-{whisper.pk}"].inner  # as the live whisper shows it
    assert "message--continued" not in classes[f"message-{first.pk}"]
    assert "message--continued" in classes[f"message-{second.pk}"]
    assert "message--continued" not in classes[f"message-{third.pk}"]  # the first unread starts a block
    assert "message--continued" in classes[f"message-{fourth.pk}"]
    assert all("message--private" not in classes[f"message-{m.pk}"] for m in (first, second, third, fourth))

    page = log_of(room, bob)  # bob has no whispers: the same fragments, without them
    assert f'id="message-{whisper.pk}"' not in page
    assert "message--continued" in articles(page)[f"message-{third.pk}"].classes


@pytest.mark.django_db
def test_the_minutes_left_to_edit_and_the_days_names_are_those_of_the_moment_the_log_is_assembled(alice):
    room = lobby()
    message = post(room, alice, "just now")
    html = log_of(room, alice)
    assert "edit-left-15" in articles(html)[f"message-{message.pk}"].classes
    assert day_names(html) == ["Today"]

    [item] = logs.log_items([message], room=room)  # the kept fragment
    later = item.html(continued=False, now=message.created_at + timedelta(minutes=10, seconds=1))
    assert f'class="message by-u{alice.pk} edit-left-5' in later.decode()
    past = item.html(continued=True, now=message.created_at + timedelta(hours=1)).decode()
    assert f'class="message by-u{alice.pk} message--continued edit-left-0' in past

    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(days=1))
    html = log_of(room, alice)
    assert day_names(html) == ["Yesterday"]
    assert "edit-left-0" in articles(html)[f"message-{message.pk}"].classes


@pytest.mark.django_db
def test_scroll_back_and_the_room_page_show_the_same_fragments(alice, alice_client, settings):
    settings.CHAT_HISTORY_LENGTH = 3
    room = lobby()
    messages = [post(room, alice, f"message {number}") for number in range(5)]
    Message.objects.filter(pk=messages[1].pk).update(reactions_summary={REACTION_EMOJI[0]: [alice.pk]})

    page = alice_client.get("/chat/lobby/").content.decode()
    older = alice_client.get(f"/chat/lobby/history/?before={messages[2].pk}").content.decode()
    assert set(articles(page)) == {f"message-{m.pk}" for m in messages[2:]}
    assert set(articles(older)) == {f"message-{m.pk}" for m in messages[:2]}
    assert f"reacted-u{alice.pk}" in older
    assert "This is the beginning of #lobby." in older
    assert older.count('class="reaction-choice"') == 2 * len(REACTION_EMOJI)
    assert f'hx-post="/chat/messages/{messages[0].pk}/reactions/"' in older


@pytest.mark.django_db
def test_the_rendered_messages_are_kept_within_their_byte_budget(alice, monkeypatch):
    room = lobby()
    messages = [post(room, alice, f"message {number} " + "x" * 200) for number in range(10)]
    budget = sum(item.nbytes() for item in logs.log_items(messages[-4:], room=room))
    monkeypatch.setattr(logs, "_cache", SharedRenders(budget))

    html = fragments.message_log(room=room, messages=messages)
    assert len(articles(html)) == 10  # every message shown, however few are kept
    cache = logs.fragments_cache()
    assert cache.bytes <= budget
    assert [key for key, _ in cache.entries.items()] == [(m.pk, False) for m in messages[-4:]]


@pytest.mark.django_db
def test_a_message_is_rendered_once_and_again_only_when_what_it_shows_changes(alice, bob, monkeypatch):
    room = lobby()
    message = post(room, alice, "hello")
    renders = []
    render = fragments.message_in_log
    monkeypatch.setattr(fragments, "message_in_log", lambda **kwargs: renders.append(1) or render(**kwargs))
    log_of(room, alice)
    log_of(room, bob)
    assert len(renders) == 1

    services.reactions.reaction_toggle(message=message, user=bob, emoji=REACTION_EMOJI[0])
    html = log_of(room, alice)
    assert len(renders) == 2
    assert f"reacted-u{bob.pk}" in html

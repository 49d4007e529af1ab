"""A message form carries a key, fresh in every form the server renders: the same frame sent again (its answer lost
with a dropped connection, or Enter pressed twice before the fresh form came) is stored and shown once."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import sync_to_async

from chat.models import Message
from chat.tests.conftest import drain, joined, receive_until, send_message
from tests.support.html import visible_text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

KEY_RE = re.compile(r'<form id="message-form"[^>]*>\s*<input type="hidden" name="key" value="([0-9a-f]{32})">')


def form_key(frame: str) -> str:
    match = KEY_RE.search(frame)
    assert match, "the message form carries no key"
    return match[1]


def bodies() -> list[str]:
    return list(Message.objects.order_by("pk").values_list("body", flat=True))


async def shown(socket, text: str) -> int:
    return sum(visible_text(frame).count(text) for frame in await drain(socket, quiet=0.4))


async def test_a_frame_sent_twice_from_one_form_is_stored_once_and_each_answer_is_a_fresh_form(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    await send_message(alice_socket, "first")
    key = form_key(await receive_until(alice_socket, lambda f: 'id="message-form"' in f))

    await send_message(alice_socket, "said once", key=key)
    answer = await receive_until(alice_socket, lambda f: 'id="message-form"' in f)
    await send_message(alice_socket, "said once", key=key)
    again = await receive_until(alice_socket, lambda f: 'id="message-form"' in f)

    assert await sync_to_async(bodies)() == ["first", "said once"]
    assert visible_text(again.split("<form")[0]) == "", "sent again is not an error: it is stored"
    assert len({key, form_key(answer), form_key(again)}) == 3
    assert await shown(bob_socket, "said once") == 1
    await alice_socket.disconnect()
    await bob_socket.disconnect()


async def test_another_text_under_a_used_key_is_stored_too(alice):
    socket = await joined(alice)
    await send_message(socket, "typed first", key="a" * 32)
    await receive_until(socket, lambda f: 'id="message-form"' in f)
    await send_message(socket, "typed over before the fresh form came", key="a" * 32)
    await receive_until(socket, lambda f: 'id="message-form"' in f)

    assert await sync_to_async(bodies)() == ["typed first", "typed over before the fresh form came"]
    await socket.disconnect()


@pytest.mark.parametrize("key", ["", "not-a-key", "A" * 32, "a" * 33, 7])
async def test_a_frame_with_a_key_no_form_renders_is_stored_as_without_one(alice, key):
    socket = await joined(alice)
    for _ in range(2):
        await send_message(socket, "again and again", key=key)
        await receive_until(socket, lambda f: 'id="message-form"' in f)

    assert await sync_to_async(bodies)() == ["again and again", "again and again"]
    await socket.disconnect()


async def test_one_key_is_one_authors_another_person_may_send_under_it(alice, bob):
    alice_socket, bob_socket = await joined(alice), await joined(bob)
    for socket in (alice_socket, bob_socket):
        await send_message(socket, "same words", key="b" * 32)
        await receive_until(socket, lambda f: 'id="message-form"' in f)

    assert await sync_to_async(bodies)() == ["same words", "same words"]
    await alice_socket.disconnect()
    await bob_socket.disconnect()


def test_each_box_of_the_page_carries_a_key_of_its_own_fresh_at_each_render(alice_client):
    first, second = (alice_client.get("/chat/lobby/").content.decode() for _ in range(2))
    keys = re.findall(r'<input type="hidden" name="key" value="([0-9a-f]{32})">', first)
    assert len(keys) == 2  # the one-line box and the multi-line one
    assert form_key(first) != form_key(second)

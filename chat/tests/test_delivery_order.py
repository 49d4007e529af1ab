"""A socket's post hands its publishes to the event loop (chat.broadcasts.deliveries_handed_over): each room's messages
still go out in the order they were stored, and a room never waits for another's."""

from __future__ import annotations

import asyncio
import concurrent.futures

from chat import broadcasts
from chat.events import MessageAppended


def hand_over(room_id: int, message_id: int) -> concurrent.futures.Future:
    done = concurrent.futures.Future()
    step = (MessageAppended(html=f"<p>{message_id}</p>", message_id=message_id), f"chat_{room_id}")
    broadcasts.deliver_in_room_order(room_id, [step], [], done)
    return done


async def test_a_rooms_messages_go_out_in_the_order_they_were_stored_even_when_one_is_slow(monkeypatch):
    sent = []

    async def send(event, *groups):
        if event.message_id == 1:
            await asyncio.sleep(0.05)  # the layer is slow for the first: the next ones wait for it
        sent.append((groups[0], event.message_id))
        return True

    monkeypatch.setattr(broadcasts, "send", send)
    handed = [hand_over(7, 1), hand_over(7, 2), hand_over(8, 3), hand_over(7, 4)]
    assert await asyncio.gather(*(asyncio.wrap_future(done) for done in handed)) == [True, True, True, True]
    # Room 8's message did not wait for room 7's slow one; room 7's kept their order.
    assert sent == [("chat_8", 3), ("chat_7", 1), ("chat_7", 2), ("chat_7", 4)]


async def test_a_message_the_layer_did_not_take_says_so_and_the_next_one_is_still_tried(monkeypatch):
    async def send(event, *groups):
        return event.message_id != 1

    monkeypatch.setattr(broadcasts, "send", send)
    handed = [hand_over(7, 1), hand_over(7, 2)]
    assert await asyncio.gather(*(asyncio.wrap_future(done) for done in handed)) == [False, True]


async def test_a_message_whose_socket_went_away_is_still_published(monkeypatch):
    sent = []

    async def send(event, *groups):
        await asyncio.sleep(0.01)
        sent.append(event.message_id)
        return True

    monkeypatch.setattr(broadcasts, "send", send)
    gone, kept = hand_over(7, 1), hand_over(7, 2)
    asyncio.wrap_future(gone).cancel()  # the socket's task was cancelled while it waited
    assert await asyncio.wrap_future(kept) is True
    assert sent == [1, 2]


def test_without_a_loop_nothing_is_handed_over():
    with broadcasts.deliveries_handed_over(None) as handed:
        assert getattr(broadcasts._handover, "value", None) is None
    assert handed == []

"""Where a join's time goes in this process, step by step (docs/performance.md, "Where a join's time goes").

    .venv/bin/python tools/bench_join.py [--rooms 40] [--messages 50] [--member-of 20]

A throwaway SQLite database holds `rooms` public rooms of `messages` messages each; the reader is a member of
`member-of` of them (their sidebar) and has a direct conversation of ten messages (whispers in every room's log). The
reader's socket joins each room in turn through the real ASGI application (its session cookie, the in-memory layer),
and waits for the log: a first round, in which every message's fragment is rendered for the first time ("cold"),
then a second round over the same rooms ("warm": every fragment kept, as on a process that has shown them).

Each step a join takes on the database thread is timed by wrapping the function that does it (`--no-steps` leaves
them alone): the sidebar's queries and its render, the room's recent messages, the reader's whispers, the read mark,
the log's assembly. `join_ms` is the whole join as the page sees it (handshake to log), `cpu_ms` this process's CPU
per join, both averaged over a round. Prints one JSON line, with the machine's speed (`python_loop_ms`, as the load
benchmarks print it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
from collections import defaultdict

from bench_log import django_setup

ORIGIN = "http://localhost"


def seed(rooms: int, messages: int, member_of: int) -> object:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from chat.formatting import render_message
    from chat.models import Membership, Message, Room, direct_room_name

    people = [User.objects.create(username=f"person{number}") for number in range(6)]
    reader, peer = people[0], people[1]
    body = "A message of an ordinary length, with a link to https://example.com/page and a few words more"
    for number in range(rooms):
        room = Room.objects.create(name=f"room{number}")
        if number < member_of:
            Membership.objects.create(room=room, user=reader)
        Message.objects.bulk_create(
            Message(room=room, author=people[index % 6], body=f"{body} {index}", body_html=render_message(body))
            for index in range(messages)
        )
    direct = Room.objects.create(name=direct_room_name(reader.pk, peer.pk), kind=Room.Kind.DIRECT)
    for member in (reader, peer):
        Membership.objects.create(room=direct, user=member)
    for index in range(10):
        author, recipient = (reader, peer) if index % 2 else (peer, reader)
        message = Message.objects.create(room=direct, author=author, recipient=recipient, body=f"whisper {index}")
    Room.objects.filter(pk=direct.pk).update(last_message_at=message.created_at)  # as storing a message does
    return reader


def steps_timed(spent: dict[str, float]) -> None:
    """Wrap each step of a join so that its time adds to `spent`, under the step's name."""
    from chat import fragments, selectors
    from chat.consumers import room

    def wrap(owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - started

        setattr(owner, name, timed)

    wrap(room.ChatRoomConsumer, "log_render", "database thread: log_render, in all")
    wrap(selectors, "sidebar", "sidebar: queries")
    wrap(selectors, "threads_followed", "sidebar: queries: followed threads")
    wrap(selectors, "unread_mark", "sidebar: queries: unread counts")
    wrap(fragments, "sidebar", "sidebar: render")
    wrap(selectors, "room_messages_recent", "the room's recent messages (query)")
    wrap(selectors, "private_messages_recent", "the reader's whispers (query)")
    wrap(room, "conversation_mark_read", "the read mark")
    wrap(fragments, "message_log", "the log's assembly")
    wrap(room, "conversation_open", "the conversation (query)")


async def join_round(reader: object, rooms: int) -> None:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from config.asgi import application

    def cookie() -> str:
        client = Client()
        client.force_login(reader)
        return f"sessionid={client.cookies['sessionid'].value}"

    headers = [(b"origin", ORIGIN.encode()), (b"cookie", (await sync_to_async(cookie)()).encode())]
    sockets = []
    for number in range(rooms):
        socket = WebsocketCommunicator(application, f"/ws/chat/room{number}/", headers=headers)
        connected, _ = await socket.connect(timeout=30)
        assert connected
        while 'id="messages"' not in await socket.receive_from(timeout=30):
            pass
        sockets.append(socket)
    for socket in sockets:
        await socket.disconnect()


def run(rooms: int, messages: int, member_of: int, steps: bool) -> dict:
    reader = seed(rooms, messages, member_of)
    spent: dict[str, float] = defaultdict(float)
    if steps:
        steps_timed(spent)
    figures = {"rooms": rooms, "messages_each": messages, "reader_member_of": member_of}
    for label in ("cold", "warm"):
        spent.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(join_round(reader, rooms))
        figures[label] = {
            "join_ms": round((time.perf_counter() - wall) * 1000 / rooms, 2),
            "cpu_ms": round((time.process_time() - cpu) * 1000 / rooms, 2),
            "steps_ms": {name: round(seconds * 1000 / rooms, 2) for name, seconds in sorted(spent.items())},
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=40)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--member-of", type=int, default=20, help="rooms in the reader's sidebar (default: 20)")
    parser.add_argument("--no-steps", action="store_true", help="time the joins only")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        django_setup(DATABASE_URL=f"sqlite:///{folder}/bench.sqlite3", SECRET_KEY="bench", LOG_LEVEL="WARNING")
        from loadtest.bench import machine_speed_ms

        figures = run(arguments.rooms, arguments.messages, arguments.member_of, not arguments.no_steps)
        figures["python_loop_ms"] = machine_speed_ms()
        figures["load_average"] = os.getloadavg()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

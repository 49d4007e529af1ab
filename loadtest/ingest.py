"""Where a posted message's time goes, in-process: the socket's path for one message, timed and its queries counted.

    python -m loadtest.ingest [--messages 2000] [--rooms 50] [--members 5] [--profile FILE]

Starts a fresh PostgreSQL database and a private Redis (as `loadtest.bench` does), seeds `--rooms` public rooms of
`--members` members each (every one with a login session), then posts `--messages` messages round robin over the
rooms' members as a room page's socket does (`post_checked` on channels' database thread: the socket's grant, then
`message_post`; its publishes handed to the event loop on commit, in each room's order, to the core Redis layer).
Prints one JSON line: messages per second, CPU and wall milliseconds per message, queries per message and the wall
time of each kind of query. `--profile` writes a cProfile of the database thread's work (`python -m pstats`).
Figures, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from contextlib import ExitStack


def query_kind(sql: str) -> str:
    """A short name for a statement: its verb and first table."""
    verb = sql.split(None, 1)[0].upper() if sql.strip() else "?"
    table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql, re.IGNORECASE)
    return f"{verb} {table[1] if table else ''}".strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--show-sql", action="store_true", help="print the statements of one message (stderr)")
    parser.add_argument("--profile", default="", help="write a cProfile of the posting loop here")
    args = parser.parse_args(argv)

    from tests.support.servers import RedisServer, migrate, postgres_database

    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        redis = stack.enter_context(RedisServer())
        env = {
            "DATABASE_URL": database_url,
            "SECRET_KEY": "benchmark-only-key",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "REDIS_URL": redis.url,
            "REDIS_CHANNEL_LAYER": "core",
            "CHAT_RATE_LIMIT_MESSAGES": "100000",
        }
        migrate(env)
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import django

        django.setup()
        print(json.dumps(run(args)), flush=True)
    return 0


def run(args: argparse.Namespace) -> dict:
    from channels.db import database_sync_to_async
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection

    from accounts.models import User
    from chat.consumers.room import ChatRoomConsumer
    from chat.grants import SocketGrant
    from chat.services.rooms import conversation_open

    sockets = []
    for room_index in range(args.rooms):
        for member in range(args.members):
            user = User.objects.create_user(username=f"ingest{room_index}x{member}", password=None)
            room = conversation_open(user=user, room_name=f"ingestroom{room_index}")
            session = SessionStore()
            session[SESSION_KEY], session[HASH_SESSION_KEY] = str(user.pk), user.get_session_auth_hash()
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session.create()
            socket = ChatRoomConsumer()
            socket.room, socket.user, socket.parent = room, user, None
            socket.grant = SocketGrant(session_key=session.session_key, user_id=user.pk, room_id=room.pk)
            socket.peer_name = f"ingest{room_index}x{(member + 1) % args.members}"  # mentioned in its messages
            sockets.append(socket)

    counts: Counter[str] = Counter()
    seconds: defaultdict[str, float] = defaultdict(float)

    def timed(execute, sql, params, many, context):
        kind = query_kind(sql)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seconds[kind] += time.perf_counter() - started
            counts[kind] += 1

    order = [sockets[(index * args.members + index // args.rooms) % len(sockets)] for index in range(args.messages)]
    profiler = cProfile.Profile() if args.profile else None

    samples: list[str] = []

    def sample(execute, sql, params, many, context):
        samples.append(sql[:300])
        return execute(sql, params, many, context)

    def post(index: int, socket: ChatRoomConsumer, loop: asyncio.AbstractEventLoop) -> list:
        if index == 0 and args.show_sql:
            with connection.execute_wrapper(sample):
                socket.post_checked("the first, for @" + socket.peer_name)
            print("\n".join(samples), file=sys.stderr)
        if profiler is not None:
            profiler.enable()
        with connection.execute_wrapper(timed):
            _, handed = socket.post_checked(f"message {index} for @{socket.peer_name} and **everyone**", None, loop)
        if profiler is not None:
            profiler.disable()
        return handed

    async def loop() -> tuple[float, float]:
        # As a socket posts: on channels' database thread, publishing through this loop's layer.
        for socket in sockets:  # one message each first: once per socket or room stays out of the figures
            await database_sync_to_async(socket.post_checked)("warming up")
        counts.clear()
        seconds.clear()
        cpu, wall = time.process_time(), time.perf_counter()
        loop, deliveries = asyncio.get_running_loop(), []
        for index, socket in enumerate(order):
            deliveries += await database_sync_to_async(post)(index, socket, loop)
        # Published from this loop in each room's order (as a socket's post does), waited for at the end.
        delivered = await asyncio.gather(*(asyncio.wrap_future(delivery) for delivery in deliveries))
        assert all(delivered), "a message was not delivered"
        return time.process_time() - cpu, time.perf_counter() - wall

    cpu, wall = asyncio.run(loop())
    if profiler is not None:
        profiler.dump_stats(args.profile)
    per = 1000 / args.messages
    return {
        "messages": args.messages,
        "messages_per_s": round(args.messages / wall, 1),
        "wall_ms_per_message": round(wall * per, 3),
        "cpu_ms_per_message": round(cpu * per, 3),
        "queries_per_message": round(sum(counts.values()) / args.messages, 2),
        "query_wall_ms_per_message": round(sum(seconds.values()) * per, 3),
        "queries": {
            kind: {
                "per_message": round(counts[kind] / args.messages, 2),
                "ms_per_message": round(seconds[kind] * per, 3),
            }
            for kind in sorted(counts, key=lambda kind: -seconds[kind])
        },
        "load_average": os.getloadavg()[0],
    }


if __name__ == "__main__":
    sys.exit(main())

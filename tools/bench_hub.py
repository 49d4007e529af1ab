"""What a process's hub costs in the background and keeps in memory, measured (docs/performance.md, "The hub's
background work and memory").

    .venv/bin/python tools/bench_hub.py heartbeat [--rooms 10000]
        A hub with a page in each of `rooms` rooms, four groups a page (40,000 groups for 10,000 rooms), each page's
        user online, on a throwaway redis-server holding the channel layer and presence. Measures heartbeats: this
        process's CPU, the Redis server's CPU, the longest stall of the event loop (what the 0.2 s presence tick
        waits for) and the commands Redis ran. Runs against whichever code is on PYTHONPATH (a checkout of an
        earlier commit too: its heartbeat then also re-adds every group, as its tick did).

    .venv/bin/python tools/bench_hub.py memory
        A room of 50 messages (a throwaway SQLite database): the bytes a room's shared log holds, as the model
        instances and HTML the log used to keep, and as it keeps it now.

Each prints one JSON line; the human lines go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[1]


def django_setup(**environ: str) -> None:
    sys.path.insert(0, str(Path.cwd()))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.update(environ)
    import django

    django.setup()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Page:
    """A socket as the hub sees it; nothing is written to it."""

    session_ended = False
    grant = None
    held = None

    def __init__(self, user_id: int) -> None:
        from accounts.models import User

        self.user = User(pk=user_id, username=f"user{user_id}")

    def frame_for(self, event):
        return None

    def sidebar_frames(self, event):
        return []

    async def deliver(self, frame) -> None:
        pass

    async def hub_event(self, event) -> None:
        pass

    async def revoke(self, code: int) -> None:
        pass


async def stalls_while(work) -> tuple[float, float]:
    """Run `work`; its wall time and the longest the event loop went without running a 10 ms ticker."""
    longest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal longest
        while running:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            longest = max(longest, time.perf_counter() - before - 0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    await work()
    wall = time.perf_counter() - started
    running = False
    await task
    return wall, longest


async def heartbeat_run(rooms: int, repeats: int) -> dict:
    import redis
    from channels.layers import get_channel_layer
    from django.conf import settings

    from chat import presence
    from chat.hub import Hub
    from tests.support.servers import RedisServer

    with RedisServer() as server:
        settings.REDIS_URL = server.url
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": [server.url], "prefix": f"bench-{uuid.uuid4().hex[:6]}"},
            }
        }
        presence.store_reset()
        hub = Hub(get_channel_layer())
        hub.channel = await hub.layer.new_channel(prefix="hub")  # no background tasks: only what is measured runs
        say(f"joining {rooms} rooms x 4 groups ...")
        for user_id in range(1, rooms + 1):
            groups = [f"chat_{user_id}", f"user_{user_id}", f"session_{user_id}", f"sidebar_{user_id}"]
            await hub.join(Page(user_id), groups)
            hub.connections[(user_id, user_id)] += 1
        tracked = hasattr(hub, "group_added_at")  # this code renews memberships only when due

        async def heartbeat() -> None:
            await hub.heartbeat()
            if not tracked:  # the earlier tick re-added every group after each heartbeat
                await hub.groups_add()

        server_redis = redis.Redis.from_url(server.url)

        async def measured(label: str) -> dict:
            cpu_redis = server_redis.info("cpu")
            commands = server_redis.info("stats")["total_commands_processed"]
            cpu = time.process_time()
            wall, stall = await stalls_while(heartbeat)
            cpu = time.process_time() - cpu
            after = server_redis.info("cpu")
            redis_cpu = sum(after[key] - cpu_redis[key] for key in ("used_cpu_user", "used_cpu_sys"))
            figures = {
                "label": label,
                "cpu_s": round(cpu, 4),
                "wall_s": round(wall, 4),
                "loop_stall_s": round(stall, 4),
                "redis_cpu_s": round(redis_cpu, 4),
                "redis_commands": server_redis.info("stats")["total_commands_processed"] - commands - 2,
                "share_of_a_core_per_heartbeat_period": round(cpu / settings.CHAT_PRESENCE_HEARTBEAT, 5),
            }
            say(json.dumps(figures))
            return figures

        await heartbeat()  # connections made, scripts cached
        runs = [await measured(f"heartbeat {number + 1}") for number in range(repeats)]
        due = None
        if tracked:  # the once-in-12-hours heartbeat that renews every membership
            hub.group_added_at = dict.fromkeys(hub.group_added_at, 0.0)
            due = await measured("heartbeat with every membership due")
        await hub.stop()
        return {
            "rooms": rooms,
            "groups": len(hub.members),
            "pairs": len(hub.connections),
            "memberships_tracked": tracked,
            "heartbeats": runs,
            "all_due": due,
        }


def memory_run() -> dict:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from chat import fragments, selectors
    from chat.models import Message, Room

    author = User.objects.create(username="author")
    others = [User.objects.create(username=f"reader{number}") for number in range(5)]
    room = Room.objects.create(name="bench")
    body = "A message of an ordinary length, with a link to https://example.com/page and a few words more."
    for number in range(50):
        Message.objects.create(room=room, author=[author, *others][number % 6], body=f"{body} {number}")

    def retained(make) -> int:
        kept = []
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(10):
            kept.append(make())
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        return sum(stat.size_diff for stat in after.compare_to(before, "filename")) // len(kept)

    def as_before():  # the model instances (with their authors, recipients, attachments, mentions) and the HTML
        messages = selectors.room_messages_recent(room=room)
        return messages, fragments.message_log(room=room, messages=messages)

    def as_now():  # each message's fragment, kept (shared with the process's fragment cache, chat.logs)
        from chat import logs
        from chat.hub.online import CachedLog

        logs.fragments_cache().clear()
        messages = selectors.room_messages_recent(room=room)
        return CachedLog(version=0, items=logs.log_items(messages, room=room))

    as_before(), as_now()  # templates compiled, caches warm
    before, now = retained(as_before), retained(as_now)
    html_bytes = len(as_before()[1].encode())
    figures = {
        "messages": 50,
        "html_bytes": html_bytes,
        "log_kept_before_bytes": before,
        "log_kept_now_bytes": now,
        "rooms_2000_one_socket_each_before_mib": round(2000 * before / 2**20, 1),
        "rooms_2000_one_socket_each_now_mib": 0,
    }
    say(json.dumps(figures))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    beat = commands.add_parser("heartbeat")
    beat.add_argument("--rooms", type=int, default=10_000)
    beat.add_argument("--repeats", type=int, default=3)
    commands.add_parser("memory")
    arguments = parser.parse_args()
    if arguments.command == "heartbeat":
        django_setup()
        result = asyncio.run(heartbeat_run(arguments.rooms, arguments.repeats))
    else:
        database = Path(tempfile.mkdtemp()) / "bench.sqlite3"
        django_setup(DATABASE_URL=f"sqlite:///{database}")
        result = memory_run()
    print(json.dumps({"command": arguments.command, "load_average": os.getloadavg(), **result}))


if __name__ == "__main__":
    main()

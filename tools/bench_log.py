"""What rendering a conversation's log costs this process, measured (docs/performance.md, "A join that does not
render history again").

    .venv/bin/python tools/bench_log.py [--messages 50] [--repeats 20]

A throwaway SQLite database holds a room of `messages` messages by six people (links, mentions, reactions, a thread
summary, an edited one) and a reader's direct conversation of ten. Times `fragments.message_log` (the log a joining
page gets), best and median of `repeats`: the room's log, and the reader's own (the whispers merged, an unread
divider); each first with every message rendered afresh ("cold": its fragment cache emptied, when the code has
one), then as a join finds it ("warm"). Runs against whichever code is in the current directory (a checkout of an
earlier commit too: it has no fragment cache, so cold and warm are the same there). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def django_setup(**environ: str) -> None:
    sys.path.insert(0, str(Path.cwd()))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.update(environ)
    import django

    django.setup()


def seed(count: int) -> tuple:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.utils import timezone

    from accounts.models import User
    from chat.formatting import render_message
    from chat.models import REACTION_EMOJI, Membership, Message, Room, direct_room_name

    people = [User.objects.create(username=f"person{number}") for number in range(6)]
    reader, peer = people[0], people[1]
    room = Room.objects.create(name="bench")
    direct = Room.objects.create(name=direct_room_name(reader.pk, peer.pk), kind=Room.Kind.DIRECT)
    for member in (reader, peer):
        Membership.objects.create(room=direct, user=member)
    body = "A message of an ordinary length, with a link to https://example.com/page and a few words more"
    start = timezone.now() - timezone.timedelta(hours=3)
    for number in range(count):
        text = f"{body} {number}" + (" @person2" if number % 7 == 0 else "")
        message = Message.objects.create(
            room=room,
            author=people[number % 6],
            body=text,
            body_html=render_message(text, mention_names=["person2"]),
            created_at=start + timezone.timedelta(minutes=3 * number),
            reactions_summary={REACTION_EMOJI[0]: [1, 2]} if number % 3 == 0 else {},
            reply_count=2 if number % 10 == 0 else 0,
            last_repliers=["person3", "person4"] if number % 10 == 0 else [],
            last_reply_at=timezone.now() if number % 10 == 0 else None,
            edited_at=timezone.now() if number % 11 == 0 else None,
        )
        if "@" in text:
            message.mentions.add(people[2])
        if number % 5 == 0:  # a whisper among them: one of ten of the reader's direct conversation
            Message.objects.create(
                room=direct,
                author=[reader, peer][number % 2],
                recipient=[peer, reader][number % 2],
                body=f"whisper {number}",
                created_at=start + timezone.timedelta(minutes=3 * number + 1),
            )
    return room, reader


def timed(work, repeats: int, before=None) -> dict:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return {"best_ms": round(min(times), 2), "median_ms": round(statistics.median(times), 2)}


def run(count: int, repeats: int, dump: str = "") -> dict:
    from chat import fragments, selectors

    room, reader = seed(count)
    room_messages = selectors.room_messages_recent(room=room)
    own = selectors.message_list_recent(room=room, user=reader)
    divider_id = own[len(own) // 2].pk
    try:
        from chat import logs
    except ImportError:  # an earlier checkout: every render is cold
        logs = None

    def cold() -> None:
        if logs is not None:
            logs.fragments_cache().clear()

    def shared() -> str:
        return fragments.message_log(room=room, messages=room_messages)

    def personal() -> str:
        return fragments.message_log(room=room, messages=own, divider_id=divider_id)

    shared(), personal()  # templates compiled
    figures = {
        "messages": count,
        "with_whispers": len(own),
        "shared_cold": timed(shared, repeats, cold),
        "shared_warm": timed(shared, repeats),
        "own_cold": timed(personal, repeats, cold),
        "own_warm": timed(personal, repeats),
        "html_bytes": len(shared().encode()),
    }
    if dump:
        Path(dump).write_text(shared() + "\n<!-- own -->\n" + personal())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dump", default="", help="write both logs' HTML to this file (to compare two checkouts)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        django_setup(DATABASE_URL=f"sqlite:///{folder}/bench.sqlite3", SECRET_KEY="bench")
        from loadtest.bench import machine_speed_ms  # the speed figure the load benchmarks print

        figures = run(arguments.messages, arguments.repeats, arguments.dump)
        figures["python_loop_ms"] = machine_speed_ms()
        figures["load_average"] = os.getloadavg()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

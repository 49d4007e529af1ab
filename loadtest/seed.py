"""Seed a server's database with an organisation (or many rooms) in seconds, and log its users in.

    python -m loadtest.seed org --out PLAN [--users 2000] [--rooms 2000] [--conversations 20] [--history 10]
    python -m loadtest.seed rooms --out PLAN [--rooms 2000] [--messages 50] [--users 50]

Run it in the server's environment (DATABASE_URL, SECRET_KEY, REDIS_URL...: the settings the server runs with),
against a fresh database. Signing 2,000 users up through allauth's form costs the server one password hash each,
one at a time (about 0.4 s here: a quarter of an hour); instead the users, rooms, direct conversations,
memberships and earlier messages go in with bulk inserts (every user gets the same password hash, computed once),
and each user is logged in as the login view does (django.contrib.auth.login, so the project's login receivers
run), without hashing. The plan file (mode 0600: it holds the session keys of a throwaway server) tells
`python -m loadtest org` / `many-rooms` who is where. Prints one JSON line on stdout and one human line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import timedelta

from loadtest.client import DEFAULT_PASSWORD
from loadtest.plan import Plan, many_rooms, organisation

BATCH = 2000


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def seed(plan: Plan, *, history: int, sessions: bool, password: str, spread_authors: int = 0) -> dict:
    """Write the plan's users, conversations, memberships and `history` messages per conversation; log users in."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import login
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.db.models import Max, OuterRef, Subquery
    from django.test import RequestFactory
    from django.utils import timezone

    from accounts.models import User
    from chat.formatting import render_message
    from chat.models import Membership, Message, Room, direct_room_name

    started = time.monotonic()
    if User.objects.filter(username=plan.users[0]).exists():
        raise SystemExit(f"loadtest.seed: {plan.users[0]} exists already; seed a fresh database")
    rng = random.Random(plan.params.get("seed", 1))
    hashed = make_password(password)
    with transaction.atomic():
        users = User.objects.bulk_create(
            [User(username=name, password=hashed, email="") for name in plan.users], batch_size=BATCH
        )
        if users[0].pk is None:  # a backend that does not return ids
            by_name = dict(User.objects.filter(username__in=plan.users).values_list("username", "pk"))
            for user in users:
                user.pk = by_name[user.username]
        ids = [user.pk for user in users]
        rooms = []
        for conversation in plan.conversations:
            if conversation.is_direct:
                low, high = conversation.members
                rooms.append(Room(name=direct_room_name(ids[low], ids[high]), kind=Room.Kind.DIRECT))
            else:
                creator = ids[conversation.members[0]] if conversation.members else ids[0]
                rooms.append(Room(name=conversation.name, kind=conversation.kind, created_by_id=creator))
        rooms = Room.objects.bulk_create(rooms, batch_size=BATCH)
        if rooms and rooms[0].pk is None:
            by_name = dict(Room.objects.values_list("name", "pk"))
            for room in rooms:
                room.pk = by_name[room.name]
        memberships = [
            Membership(user_id=ids[member], room_id=room.pk, level=Membership.level_default(room))
            for room, conversation in zip(rooms, plan.conversations, strict=True)
            for member in conversation.members
        ]
        Membership.objects.bulk_create(memberships, batch_size=BATCH)
        # Earlier messages, yesterday (out of the edit window, one day separator), a few bodies rendered once.
        bodies = [f"Earlier message {index}" for index in range(history)]
        rendered = [render_message(body) for body in bodies]
        since = timezone.now() - timedelta(days=1)
        messages = []
        for room, conversation in zip(rooms, plan.conversations, strict=True):
            authors = conversation.members or range(min(len(ids), spread_authors or len(ids)))
            for index in range(history):
                author = rng.choice(authors)
                recipient = None
                if conversation.is_direct:
                    recipient = ids[conversation.members[1] if author == conversation.members[0] else author]
                messages.append(
                    Message(
                        room_id=room.pk,
                        author_id=ids[author],
                        recipient_id=recipient,
                        body=bodies[index],
                        body_html=rendered[index],
                        created_at=since + timedelta(seconds=index * 60),
                    )
                )
            if len(messages) >= 20 * BATCH:
                Message.objects.bulk_create(messages, batch_size=BATCH)
                messages = []
        Message.objects.bulk_create(messages, batch_size=BATCH)
        if history:
            newest = Message.objects.filter(room_id=OuterRef("room_id")).values("room_id").annotate(top=Max("id"))
            Membership.objects.update(last_read_id=Subquery(newest.values("top")))
            last = Message.objects.filter(room_id=OuterRef("pk")).values("room_id").annotate(at=Max("created_at"))
            Room.objects.update(last_message_at=Subquery(last.values("at")))
    seeded_s = time.monotonic() - started

    keys: dict[str, str] = {}
    if sessions:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        factory = RequestFactory()
        backend = settings.AUTHENTICATION_BACKENDS[0]
        for user in users:
            request = factory.post("/accounts/login/")
            request.session = store()
            login(request, user, backend=backend)
            request.session.save()
            keys[user.username] = request.session.session_key
    plan.sessions = keys
    plan.password = password
    return {
        "users": len(users),
        "conversations": len(rooms),
        "memberships": len(memberships),
        "messages": len(rooms) * history,
        "sessions": len(keys),
        "seed_s": round(seeded_s, 2),
        "sessions_s": round(time.monotonic() - started - seeded_s, 2),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest.seed", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    org = sub.add_parser("org", help="an organisation: users, power-law rooms, direct conversations")
    org_options(org)
    org.add_argument("--out", required=True, help="the plan file to write")
    rooms = sub.add_parser("rooms", help="N public rooms of M messages each")
    rooms_options(rooms)
    rooms.add_argument("--out", required=True, help="the plan file to write")
    return parser


def org_options(parser: argparse.ArgumentParser) -> None:
    """The organisation's shape (shared with loadtest.bench, which seeds before an org run)."""
    group = parser.add_argument_group("the organisation (seeded)")
    group.add_argument("--users", type=int, default=2000, help="people (default: 2000)")
    group.add_argument("--rooms", type=int, default=2000, help="rooms, sizes by a power law (default: 2000)")
    group.add_argument(
        "--conversations", type=int, default=20, help="conversations per user, rooms and direct ones (default: 20)"
    )
    group.add_argument("--largest-room", type=int, default=500, help="members of the largest rooms (default: 500)")
    group.add_argument("--smallest-room", type=int, default=3, help="members of the smallest rooms (default: 3)")
    group.add_argument("--rooms-at-largest", type=int, default=3, help="rooms at the largest size (default: 3)")
    group.add_argument("--private-share", type=float, default=0.2, help="share of private rooms (default: 0.2)")
    group.add_argument("--history", type=int, default=10, help="earlier messages per conversation (default: 10)")
    group.add_argument("--plan-seed", type=int, default=1, help="seed of the organisation's shape (default: 1)")
    group.add_argument(
        "--form-sign-in",
        action="store_true",
        help="log nobody in: the scenario signs every user in through the login form (one hash each)",
    )


def rooms_options(parser: argparse.ArgumentParser) -> None:
    """The many-rooms shape (shared with loadtest.bench)."""
    group = parser.add_argument_group("the rooms (seeded)")
    group.add_argument("--rooms", type=int, default=2000, help="public rooms (default: 2000)")
    group.add_argument("--messages", type=int, default=50, help="messages in each (default: 50)")
    group.add_argument("--users", type=int, default=50, help="their authors and socket holders (default: 50)")
    group.add_argument(
        "--form-sign-in", action="store_true", help="log nobody in: the scenario signs users in through the form"
    )


def make_plan(kind: str, args: dict) -> tuple[Plan, int, bool]:
    """The plan of the options, the history per conversation, and whether to log the users in."""
    if kind == "org":
        plan = organisation(
            users=args["users"],
            rooms=args["rooms"],
            conversations=args["conversations"],
            largest=args["largest_room"],
            smallest=args["smallest_room"],
            at_cap=args["rooms_at_largest"],
            private_share=args["private_share"],
            seed=args["plan_seed"],
        )
        plan.params["history"] = args["history"]
        return plan, args["history"], not args["form_sign_in"]
    plan = many_rooms(rooms=args["rooms"], users=args["users"])
    plan.params["messages"] = args["messages"]
    return plan, args["messages"], not args["form_sign_in"]


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    kind, out = args.pop("kind"), args.pop("out")
    plan, history, sessions = make_plan(kind, args)
    if plan.kind == "org" and len(plan.users) < 2:
        raise SystemExit("loadtest.seed: an organisation needs at least 2 users")
    setup_django()
    figures = seed(plan, history=history, sessions=sessions, password=DEFAULT_PASSWORD)
    plan.save(out)
    record = {"plan": out, "kind": kind, **figures, "organisation": plan.figures()}
    print(json.dumps(record))
    print(
        f"seed {kind}: {figures['users']} users, {figures['conversations']} conversations, "
        f"{figures['memberships']} memberships, {figures['messages']} messages in {figures['seed_s']:.1f} s; "
        f"{figures['sessions']} sessions in {figures['sessions_s']:.1f} s -> {out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

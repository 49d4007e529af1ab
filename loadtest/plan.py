"""The shape of an organisation (who is in which conversation), made once from a few numbers; no Django here.

`organisation(...)` gives users, rooms whose sizes follow a power law (the largest few at the cap, most of 3-20
members) and direct conversations filling each user's count up to about `conversations` in all. The same numbers
and seed always give the same organisation. `loadtest.seed` writes it to the server's database and to a plan file,
which `python -m loadtest org` and `many-rooms` read.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The exponent of the room sizes' Pareto tail: with 2,000 rooms of at least 3, about 95% have 3-20 members.
SIZE_EXPONENT = 1.6


@dataclass
class Conversation:
    """A room (public or private) or two people's direct conversation, and its members (user indices)."""

    kind: str  # "public", "private" or "direct"
    name: str  # a room's name; for a direct conversation, a label of the generator's own (never sent)
    members: list[int]

    @property
    def is_direct(self) -> bool:
        return self.kind == "direct"


@dataclass
class Plan:
    """What the seed wrote: the users, the conversations, and the sessions it logged the users in with."""

    kind: str  # "org" or "rooms"
    params: dict
    users: list[str]
    conversations: list[Conversation]
    # username -> session key, when the seed logged the users in (else the scenario signs in through the form).
    sessions: dict[str, str] = field(default_factory=dict)
    password: str = ""

    def by_user(self) -> list[list[int]]:
        """Each user's conversations (indices)."""
        result: list[list[int]] = [[] for _ in self.users]
        for index, conversation in enumerate(self.conversations):
            for member in conversation.members:
                result[member].append(index)
        return result

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "params": self.params,
            "users": self.users,
            "conversations": [[c.kind, c.name, c.members] for c in self.conversations],
            "sessions": self.sessions,
            "password": self.password,
        }

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        conversations = [Conversation(kind, name, list(members)) for kind, name, members in data["conversations"]]
        return cls(
            kind=data["kind"],
            params=data["params"],
            users=list(data["users"]),
            conversations=conversations,
            sessions=dict(data.get("sessions") or {}),
            password=data.get("password", ""),
        )

    def save(self, path: str | Path) -> None:
        """Write the plan, readable by its owner only: it holds the users' session keys (a throwaway server's)."""
        path = Path(path)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(self.to_json(), file)

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return cls.from_json(json.loads(Path(path).read_text()))

    def figures(self) -> dict:
        """The organisation in a few numbers, for the summary."""
        if self.kind != "org":
            return {"users": len(self.users), "rooms": len(self.conversations), **self.params}
        sizes = sorted((len(c.members) for c in self.conversations if not c.is_direct), reverse=True)
        per_user = [len(conversations) for conversations in self.by_user()]
        return {
            "users": len(self.users),
            "rooms": len(sizes),
            "private_rooms": sum(1 for c in self.conversations if c.kind == "private"),
            "direct": sum(1 for c in self.conversations if c.is_direct),
            "largest_rooms": sizes[:5],
            "rooms_3_to_20": sum(1 for size in sizes if 3 <= size <= 20),
            "room_memberships": sum(sizes),
            "conversations_per_user": round(sum(per_user) / len(per_user), 2) if per_user else None,
            "conversations_per_user_max": max(per_user, default=None),
        }


def room_sizes(rooms: int, users: int, largest: int = 500, smallest: int = 3, at_cap: int = 3) -> list[int]:
    """Sizes of `rooms` rooms, largest first: `at_cap` at the cap, the rest by quantiles of a Pareto tail."""
    cap = max(1, min(largest, users))
    floor = min(smallest, cap)
    sizes = []
    tail = max(1, rooms - at_cap)
    for index in range(rooms):
        if index < at_cap:
            sizes.append(cap)
            continue
        share = (index - at_cap + 0.5) / tail
        sizes.append(max(floor, min(cap, int(floor * share ** (-1 / SIZE_EXPONENT)))))
    return sizes


def organisation(
    *,
    users: int = 2000,
    rooms: int = 2000,
    conversations: int = 20,
    largest: int = 500,
    smallest: int = 3,
    at_cap: int = 3,
    private_share: float = 0.2,
    seed: int = 1,
    user_prefix: str = "org",
    room_prefix: str = "orgroom",
) -> Plan:
    """The organisation: rooms of power-law sizes with random members, then direct conversations filling each
    user's count up to `conversations` (pairs drawn at random, no one twice with the same person)."""
    rng = random.Random(seed)
    names = [f"{user_prefix}{index}" for index in range(users)]
    result: list[Conversation] = []
    count = [0] * users
    for index, size in enumerate(room_sizes(rooms, users, largest, smallest, at_cap)):
        members = rng.sample(range(users), size)
        # The largest rooms are the organisation's open ones (#general); a share of the others is private.
        kind = "private" if index >= at_cap and rng.random() < private_share else "public"
        result.append(Conversation(kind, f"{room_prefix}{index}", members))
        for member in members:
            count[member] += 1
    stubs = [user for user in range(users) for _ in range(max(0, conversations - count[user]))]
    rng.shuffle(stubs)
    pairs: set[tuple[int, int]] = set()
    waiting: list[int] = []
    for user in stubs:
        # Pair with the first one waiting who is someone else and not yet this user's correspondent.
        for position, other in enumerate(waiting):
            pair = (min(user, other), max(user, other))
            if other != user and pair not in pairs:
                pairs.add(pair)
                del waiting[position]
                break
        else:
            if len(waiting) < 50:  # a few stubs may stay unpaired: a user then has one or two fewer
                waiting.append(user)
    for low, high in sorted(pairs):
        result.append(Conversation("direct", f"dm-{low}-{high}", [low, high]))
    params = {
        "users": users,
        "rooms": rooms,
        "conversations": conversations,
        "largest": largest,
        "smallest": smallest,
        "at_cap": at_cap,
        "private_share": private_share,
        "seed": seed,
    }
    return Plan(kind="org", params=params, users=names, conversations=result)


def many_rooms(
    *, rooms: int = 2000, users: int = 50, user_prefix: str = "many", room_prefix: str = "manyroom"
) -> Plan:
    """N public rooms (their messages are the seed's), and the users whose sockets open them."""
    names = [f"{user_prefix}{index}" for index in range(users)]
    result = [Conversation("public", f"{room_prefix}{index}", []) for index in range(rooms)]
    return Plan(kind="rooms", params={"rooms": rooms, "users": users}, users=names, conversations=result)


def weighted_index(cumulative: Sequence[int], rng: random.Random) -> int:
    """An index drawn with probability proportional to its weight, given the running totals of the weights."""
    import bisect

    return bisect.bisect_right(cumulative, rng.random() * cumulative[-1])

"""The load scenarios (fanout, ramp, churn; org and many-rooms are in loadtest.org) and the entry point `run`."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

from loadtest.client import (
    DEFAULT_PASSWORD,
    Account,
    GeneratorWatch,
    LoadTestError,
    ProcWatch,
    SignInReport,
    Target,
    close_all,
    describe_error,
    htmx_frame,
    loopback_target,
    new_session,
    open_socket,
    percentiles_ms,
    raise_fd_limit,
    sign_in_many,
)

MAX_MESSAGE_CHARS = 2000
# A churn loop waits this long after a failed join, so a server that refuses at once is not hammered.
ERROR_BACKOFF_S = 0.1
# Sockets silent this long after the joins mean the server has sent every join broadcast.
QUIET_S = 0.5
ONLINE_MARK = 'id="online-users"'
ARTICLE_MARK = 'id="message-'
ERROR_MARK = 'id="chat-error"'
# The online list as the page's htmx would keep it: the whole list, entries appended, entries deleted.
ONLINE_LIST_RE = re.compile(r'<ul id="online-users"[^>]*>(.*?)</ul>', re.DOTALL)
ONLINE_ENTRY_RE = re.compile(r'<li id="online-user-(\d+)"><button')
ONLINE_DELETE_RE = re.compile(r'<li id="online-user-(\d+)" hx-swap-oob="delete">')
_ERROR_TEXT_RE = re.compile(r'id="chat-error"[^>]*>(.*?)</', re.DOTALL)
_TAG_RE = re.compile(r"<[^>]+>")
_SPACE_RE = re.compile(r"\s+")
# Words of the server's refusal of a message over the per-user rate limit (anything else is an error).
_REFUSAL_WORDS = ("too many", "too fast", "slow down", "rate limit", "wait")
# Frame exceptions worth recording rather than crashing a run.
_NET_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ConnectionError)


@dataclass
class CommonOptions:
    """Options every scenario takes."""

    # One server URL, or several (processes of one site): sockets are spread over them round robin.
    url: str | list[str] = "http://127.0.0.1:8000"
    prefix: str = "load"
    password: str = DEFAULT_PASSWORD
    room_prefix: str = "loadroom"
    server_pids: list[int] = field(default_factory=list)
    redis_pids: list[int] = field(default_factory=list)
    login_concurrency: int = 20
    connect_concurrency: int = 50
    connect_timeout: float = 15.0
    http_timeout: float = 120.0
    session_cookie: str = "sessionid"
    timeout: float | None = None
    seed: int | None = None
    # The target is loadtest.reference, the bare broadcast server: nobody signs in, no room page is loaded.
    bare: bool = False

    def validate(self) -> None:
        """Refuse options that cannot make a sensible run."""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", self.room_prefix):
            raise LoadTestError("room prefix must be 1-40 of A-Z a-z 0-9 _ - (room names allow 50)")
        if not re.fullmatch(r"[A-Za-z0-9_.@+-]{1,100}", self.prefix):
            raise LoadTestError("user prefix must be letters, digits or _.@+-")
        if self.login_concurrency < 1 or self.connect_concurrency < 1:
            raise LoadTestError("concurrency options must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise LoadTestError("--timeout must be positive")

    def setup_allowance(self, users: int) -> float:
        """Seconds to allow for signing in users: password hashing costs the server up to ~1 s each."""
        return 60.0 + 1.0 * users


@dataclass
class FanoutOptions(CommonOptions):
    """R rooms x C clients, S senders per room each sending `rate` messages/s for `duration` s."""

    rooms: int = 1
    clients: int = 50
    senders: int = 5
    rate: float = 0.5
    duration: float = 10.0
    drain: float = 10.0
    settle: float = 1.0
    settle_max: float = 60.0
    users: int | None = None
    padding: int = 0

    def validate(self) -> None:
        """Refuse impossible shapes."""
        super().validate()
        if self.rooms < 1 or self.clients < 1:
            raise LoadTestError("--rooms and --clients must be at least 1")
        if not 1 <= self.senders <= self.clients:
            raise LoadTestError("--senders must be between 1 and --clients")
        if self.rate <= 0 or self.duration <= 0 or self.drain < 0 or self.settle < 0:
            raise LoadTestError("--rate and --duration must be positive, --drain and --settle not negative")
        if self.users is not None and not self.rooms * self.senders <= self.users:
            raise LoadTestError("--users must be at least rooms x senders: every sender is a distinct user")
        if not 0 <= self.padding <= MAX_MESSAGE_CHARS - 100:
            raise LoadTestError(f"--padding must be between 0 and {MAX_MESSAGE_CHARS - 100}")

    def user_count(self) -> int:
        """Users to sign in: one per client unless --users says fewer."""
        return self.users if self.users is not None else self.rooms * self.clients

    def default_timeout(self) -> float:
        """A hard bound: sign-ins, connects, settle, the send phase, the drain and a margin."""
        return (
            self.setup_allowance(self.user_count())
            + 0.05 * self.rooms * self.clients
            + self.connect_timeout
            + max(self.settle, self.settle_max)
            + self.duration
            + self.drain
            + 30.0
        )


@dataclass
class RampOptions(CommonOptions):
    """Open idle sockets up to `sockets` at `connect_rate`/s over `rooms` rooms, then hold them `hold` s."""

    sockets: int = 1000
    connect_rate: float = 100.0
    hold: float = 10.0
    rooms: int = 50
    users: int | None = None

    def validate(self) -> None:
        """Refuse impossible shapes."""
        super().validate()
        if self.sockets < 1 or self.rooms < 1 or self.connect_rate <= 0 or self.hold < 0:
            raise LoadTestError("--sockets, --rooms and --connect-rate must be positive, --hold not negative")
        if self.users is not None and self.users < 1:
            raise LoadTestError("--users must be at least 1")

    def user_count(self) -> int:
        """Users to sign in; sockets are spread over them round robin (a user may hold many, like tabs)."""
        return self.users if self.users is not None else min(self.sockets, 100)

    def default_timeout(self) -> float:
        """A hard bound: sign-ins, the ramp (at half the asked rate), the hold and a margin."""
        return (
            self.setup_allowance(self.user_count())
            + 2.0 * self.sockets / self.connect_rate
            + self.connect_timeout
            + self.hold
            + 30.0
        )


@dataclass
class ChurnOptions(CommonOptions):
    """`clients` concurrent loops of: connect to a room, wait for the online list, close; for `duration` s."""

    clients: int = 10
    duration: float = 10.0
    rooms: int = 1
    pause: float = 0.0

    def validate(self) -> None:
        """Refuse impossible shapes."""
        super().validate()
        if self.clients < 1 or self.rooms < 1 or self.duration <= 0 or self.pause < 0:
            raise LoadTestError("--clients, --rooms and --duration must be positive, --pause not negative")

    def user_count(self) -> int:
        """One user per loop."""
        return self.clients

    def default_timeout(self) -> float:
        """A hard bound: sign-ins, the churn phase, one last join and a margin."""
        return self.setup_allowance(self.user_count()) + self.duration + 2 * self.connect_timeout + 30.0


def error_text(frame: str) -> str:
    """The human text of a frame's #chat-error element ('' when it is empty, i.e. cleared)."""
    match = _ERROR_TEXT_RE.search(frame)
    if match is None:
        return ""
    return _SPACE_RE.sub(" ", _TAG_RE.sub(" ", match.group(1))).strip()


class Scenario:
    """What every scenario shares: target, options, one HTTP session, sign-ins, process watches, cleanup."""

    name: ClassVar[str] = ""
    options_class: ClassVar[type[CommonOptions]] = CommonOptions

    def __init__(self, options: CommonOptions) -> None:
        options.validate()
        self.options = options
        urls = [options.url] if isinstance(options.url, str) else list(options.url)
        if not urls:
            raise LoadTestError("give at least one --url")
        self.targets: list[Target] = [loopback_target(url) for url in urls]
        self.target: Target = self.targets[0]
        self.server = ProcWatch(options.server_pids)
        self.redis = ProcWatch(options.redis_pids)
        self.generator = GeneratorWatch()
        self.random = random.Random(options.seed)
        self.run_id = secrets.token_hex(3)
        self.session: aiohttp.ClientSession | None = None
        self.sign_ins: SignInReport | None = None
        self.sockets: set[aiohttp.ClientWebSocketResponse] = set()
        self.closing = False
        self.tasks: set[asyncio.Task] = set()
        self.started = time.monotonic()
        self.phase = "setup"
        self.room_pages: dict[str, int] = {}
        # Called with "before", "after" (and "at_cap" in ramp) as the measurement starts and ends: a profiler's cue.
        self.observer: Callable[[str], None] | None = None

    def mark(self, name: str) -> None:
        """Sample the server and Redis processes at a moment of the run, and tell the observer."""
        self.server.mark(name)
        self.redis.mark(name)
        if self.observer is not None:
            self.observer(name)

    def rooms(self, count: int) -> list[str]:
        """Room names used by this run."""
        return [f"{self.options.room_prefix}{index}" for index in range(count)]

    def usernames(self, count: int) -> list[str]:
        """User names used by this run."""
        return [f"{self.options.prefix}{index}" for index in range(count)]

    async def sign_in_users(self, count: int) -> list[Account | None]:
        """Sign in users 0..count-1 with bounded concurrency; failed ones are None."""
        assert self.session is not None
        names = self.usernames(count)
        if self.options.bare:
            return [Account(username=name) for name in names]
        self.sign_ins = await sign_in_many(
            self.session,
            self.target,
            names,
            self.options.password,
            self.options.login_concurrency,
            self.options.session_cookie,
            self.options.http_timeout,
        )
        if not self.sign_ins.accounts:
            raise LoadTestError(f"no user could sign in: {self.sign_ins.summary(count)['failure_samples']}")
        return [self.sign_ins.accounts.get(name) for name in names]

    async def open_rooms(self, rooms: list[str], account: Account) -> None:
        """GET each room page once as a browser would before its socket (this also creates a new room)."""
        assert self.session is not None
        if self.options.bare:
            return
        for room in rooms:
            async with self.session.get(
                self.target.room_page(room),
                headers={"Cookie": account.cookie_header()},
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.options.http_timeout),
            ) as response:
                self.room_pages[room] = response.status
                if response.status != 200:
                    raise LoadTestError(
                        f"GET /chat/{room}/ as {account.username} answered {response.status} "
                        f"{response.headers.get('Location', '')}".strip()
                    )

    def spawn(self, coroutine: Any) -> asyncio.Task:
        """Start a task that cleanup will cancel if it still runs."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def execute(self) -> dict:
        """Set up, measure and return the summary."""
        raise NotImplementedError

    async def cleanup(self) -> None:
        """Cancel leftover tasks, close sockets and the HTTP session."""
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        await close_all(list(self.sockets))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def summary(self) -> dict:
        """The run's figures so far (complete after execute, partial after a timeout)."""
        raise NotImplementedError

    def base_summary(self) -> dict:
        """Fields every summary starts with."""
        params = dataclasses.asdict(self.options)
        params.pop("password")
        return {
            "scenario": self.name,
            "status": "ok",
            "phase": self.phase,
            "url": self.target.base,
            "urls": [target.base for target in self.targets],
            "run_id": self.run_id,
            "params": params,
            "users": self.sign_ins.summary(self.options.user_count()) if self.sign_ins else None,
            "room_pages": self.room_pages,
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }


class FanoutStats:
    """Counters shared by every fanout client (kept flat: one object, touched once per frame)."""

    def __init__(self, run_id: str, sender_rooms: list[int], room_sizes: list[int]) -> None:
        # A token in a message article: lt:<run>:<sender>:<seq>:<send monotonic ns>. Not inside value="..."
        # (a refused message comes back in the form's input, which is not a delivery).
        self.token_re = re.compile(rf'(?<!value=")lt:{run_id}:(\d+):(\d+):(\d+)')
        self.sender_rooms = sender_rooms
        self.room_sizes = room_sizes
        self.refused_expected = 0
        self.latencies: list[int] = []
        self.sent_at: list[int] = []
        self.delivered = 0
        self.duplicates = 0
        self.misrouted = 0
        self.frames = 0
        self.bytes = 0
        self.errors = 0
        self.refusals = 0
        self.error_samples: Counter[str] = Counter()
        self.first_send_ns = 0
        self.last_frame_ns = 0
        self.last_delivery_ns = 0

    def note_error(self, frame: str, room_index: int) -> None:
        """Count a non-empty #chat-error, as a refusal (rate limit: its deliveries are not owed) or an error."""
        text = error_text(frame)
        if not text:
            return
        lowered = text.lower()
        if any(word in lowered for word in _REFUSAL_WORDS):
            self.refusals += 1
            self.refused_expected += self.room_sizes[room_index]
        else:
            self.errors += 1
        if len(self.error_samples) < 10 or text in self.error_samples:
            self.error_samples[text[:200]] += 1


def latency_timeline(sent_at: list[int], latencies: list[int], origin_ns: int, max_buckets: int = 60) -> list[dict]:
    """Latency by send time (buckets of whole seconds, at most `max_buckets`): shows a queue building up."""
    if not latencies:
        return []
    span_s = (max(sent_at) - origin_ns) / 1e9
    width = max(1, math.ceil((span_s + 1e-9) / max_buckets))
    buckets: dict[int, list[int]] = {}
    for sent, latency in zip(sent_at, latencies, strict=True):
        buckets.setdefault(int((sent - origin_ns) / 1e9 // width) * width, []).append(latency)
    return [{"s": start, **percentiles_ms(values)} for start, values in sorted(buckets.items())]


class FanoutClient:
    """One browser tab in a room: its socket, the tokens it received, whether it saw the online list."""

    def __init__(
        self, stats: FanoutStats, room_index: int, room: str, account: Account | None, target: Target
    ) -> None:
        self.stats = stats
        self.target = target
        self.room_index = room_index
        self.room = room
        self.account = account
        self.seen: set[int] = set()
        self.online = asyncio.Event()
        # The user ids this tab's online list shows, kept as htmx applies the frames.
        self.online_ids: set[int] = set()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.close_code: int | None = None
        self.connected = False
        self.closed_early = False

    def on_text(self, data: str) -> None:
        """Handle one text frame: count tokens delivered (once per receiver), errors and the online list."""
        now = time.monotonic_ns()
        stats = self.stats
        stats.frames += 1
        stats.bytes += len(data)
        stats.last_frame_ns = now
        if ARTICLE_MARK in data:
            in_frame: set[int] = set()
            for match in stats.token_re.finditer(data):
                sender, seq = int(match[1]), int(match[2])
                key = sender * 1_000_000 + seq
                if key in in_frame:
                    continue
                in_frame.add(key)
                if sender >= len(stats.sender_rooms) or stats.sender_rooms[sender] != self.room_index:
                    stats.misrouted += 1
                elif key in self.seen:
                    stats.duplicates += 1
                else:
                    self.seen.add(key)
                    stats.delivered += 1
                    sent_ns = int(match[3])
                    stats.latencies.append(now - sent_ns)
                    stats.sent_at.append(sent_ns)
                    stats.last_delivery_ns = now
        if ERROR_MARK in data:
            stats.note_error(data, self.room_index)
        if "online-user" in data:
            self.apply_online(data)
        if ONLINE_MARK in data:
            self.online.set()

    def apply_online(self, data: str) -> None:
        """Keep the online list as the page shows it: replaced whole, entries deleted, then entries appended."""
        whole = ONLINE_LIST_RE.search(data)
        if whole is not None:
            self.online_ids = {int(user_id) for user_id in ONLINE_ENTRY_RE.findall(whole[1])}
            data = data[: whole.start()] + data[whole.end() :]
        self.online_ids -= {int(user_id) for user_id in ONLINE_DELETE_RE.findall(data)}
        self.online_ids |= {int(user_id) for user_id in ONLINE_ENTRY_RE.findall(data)}

    async def read(self, scenario: Fanout) -> None:
        """Read frames until the socket closes."""
        ws = self.ws
        assert ws is not None
        try:
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.on_text(message.data)
        except _NET_ERRORS:
            pass
        self.close_code = ws.close_code
        if self.connected and not scenario.closing:
            self.closed_early = True


class Fanout(Scenario):
    """Every message of S senders per room reaches every client of its room; measure latency and completeness."""

    name = "fanout"
    options_class = FanoutOptions

    def __init__(self, options: FanoutOptions) -> None:
        super().__init__(options)
        self.options: FanoutOptions = options
        self.room_names = self.rooms(options.rooms)
        self.connected_per_room = [0] * options.rooms
        sender_rooms = [room for room in range(options.rooms) for _ in range(options.senders)]
        self.stats = FanoutStats(self.run_id, sender_rooms, self.connected_per_room)
        self.clients: list[FanoutClient] = []
        self.connect_ns: list[int] = []
        self.connect_failures: Counter[str] = Counter()
        self.sent = 0
        self.send_failures = 0
        self.expected = 0
        self.send_lag_max = 0.0
        self.window_s = 0.0
        self.settle_s = 0.0
        self.connect_frames = self.settle_frames = self.online_right = 0

    def user_index(self, room: int, slot: int) -> int:
        """Which user a client uses: senders are distinct users, receivers fill the rest round robin."""
        options = self.options
        if slot < options.senders:
            return room * options.senders + slot
        receiver = room * (options.clients - options.senders) + (slot - options.senders)
        return (options.rooms * options.senders + receiver) % options.user_count()

    async def connect(self, client: FanoutClient, gate: asyncio.Semaphore) -> None:
        """Open one client's socket and wait for its online list (bounded concurrency)."""
        if client.account is None:
            self.connect_failures["user could not sign in"] += 1
            return
        async with gate:
            started = time.monotonic_ns()
            try:
                client.ws = await open_socket(
                    self.session, client.target, client.room, client.account, self.options.connect_timeout
                )
            except _NET_ERRORS as error:
                self.connect_failures["handshake: " + describe_error(error)] += 1
                return
            self.sockets.add(client.ws)
            self.connect_ns.append(time.monotonic_ns() - started)
            self.spawn(client.read(self))
            try:
                async with asyncio.timeout(self.options.connect_timeout):
                    await client.online.wait()
            except TimeoutError:
                code = client.ws.close_code
                reason = f"closed with {code}" if client.ws.closed else "no online list"
                self.connect_failures[f"after handshake: {reason}"] += 1
                await client.ws.close()
                return
        client.connected = True
        self.connected_per_room[client.room_index] += 1

    def online_lists_right(self) -> int:
        """How many connected tabs show exactly as many people online as there are users connected to their room."""
        users = [set() for _ in self.room_names]
        for client in self.clients:
            if client.connected and client.account is not None:
                users[client.room_index].add(client.account.username)
        return sum(
            1
            for client in self.clients
            if client.connected and len(client.online_ids) == len(users[client.room_index])
        )

    async def settle_down(self) -> None:
        """Wait --settle s, then until no frame came for QUIET_S (join broadcasts drained), at most --settle-max s."""
        self.phase = "settle"
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(self.options.settle)
        deadline = started + max(self.options.settle, self.options.settle_max)
        while loop.time() < deadline:
            quiet_s = (time.monotonic_ns() - self.stats.last_frame_ns) / 1e9
            if quiet_s >= QUIET_S:
                break
            await asyncio.sleep(min(QUIET_S - quiet_s, deadline - loop.time()) + 0.001)
        self.settle_s = loop.time() - started

    async def send_loop(self, client: FanoutClient, sender: int, t0: float) -> None:
        """Send this sender's messages on a fixed schedule (open loop) at the asked rate."""
        options = self.options
        loop = asyncio.get_running_loop()
        period = 1.0 / options.rate
        count = max(1, int(options.duration * options.rate))
        phase = self.random.random() * period
        padding = " " + "x" * options.padding if options.padding else ""
        for seq in range(count):
            due = t0 + phase + seq * period
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.send_lag_max = max(self.send_lag_max, -delay)
            ws = client.ws
            if ws is None or ws.closed:
                self.send_failures += 1
                continue
            sent_ns = time.monotonic_ns()
            text = f"lt:{self.run_id}:{sender}:{seq}:{sent_ns}{padding}"
            try:
                await ws.send_str(htmx_frame(text, client.target, client.room))
            except _NET_ERRORS:
                self.send_failures += 1
                continue
            if not self.stats.first_send_ns:
                self.stats.first_send_ns = sent_ns
            self.sent += 1
            self.expected += self.connected_per_room[client.room_index]

    async def execute(self) -> dict:
        """Sign in, connect everyone, send for the duration, drain, and summarise."""
        options = self.options
        self.session = self.session or new_session()
        accounts = await self.sign_in_users(options.user_count())
        first = next(account for account in accounts if account is not None)
        await self.open_rooms(self.room_names, first)

        self.phase = "connect"
        for room_index, room in enumerate(self.room_names):
            for slot in range(options.clients):
                account = accounts[self.user_index(room_index, slot)]
                # A room's members spread over the servers, so a room spans every process.
                target = self.targets[slot % len(self.targets)]
                self.clients.append(FanoutClient(self.stats, room_index, room, account, target))
        gate = asyncio.Semaphore(options.connect_concurrency)
        await asyncio.gather(*(self.connect(client, gate) for client in self.clients))
        self.connect_frames = self.stats.frames
        await self.settle_down()
        self.settle_frames = self.stats.frames
        self.online_right = self.online_lists_right()

        self.phase = "send"
        loop = asyncio.get_running_loop()
        self.mark("before")
        self.generator.restart()
        t0 = loop.time() + 0.05
        started_ns = time.monotonic_ns()
        senders = []
        for room_index in range(options.rooms):
            for slot in range(options.senders):
                client = self.clients[room_index * options.clients + slot]
                senders.append(self.send_loop(client, room_index * options.senders + slot, t0))
        await asyncio.gather(*senders)

        self.phase = "drain"
        deadline = loop.time() + options.drain
        while self.stats.delivered < self.expected - self.stats.refused_expected and loop.time() < deadline:
            await asyncio.sleep(0.02)
        end_ns = self.stats.last_delivery_ns or time.monotonic_ns()
        self.window_s = max(1e-9, (end_ns - (self.stats.first_send_ns or started_ns)) / 1e9)
        self.mark("after")
        self.generator.stop()
        self.phase = "done"
        self.closing = True
        return self.summary()

    def summary(self) -> dict:
        """Fanout figures: deliveries, latency, errors, server and generator cost."""
        stats, options = self.stats, self.options
        attempted = options.rooms * options.clients
        connected = sum(self.connected_per_room)
        summary = self.base_summary()
        summary["connect"] = {
            "attempted": attempted,
            "connected": connected,
            "failed": sum(self.connect_failures.values()),
            "failure_reasons": dict(self.connect_failures.most_common(5)),
            "latency_ms": percentiles_ms(self.connect_ns),
            "closed_during_run": sum(1 for client in self.clients if client.closed_early),
            "close_codes": dict(Counter(c.close_code for c in self.clients if c.closed_early and c.close_code)),
        }
        summary["connect"]["settle_s"] = round(self.settle_s, 2)
        # Presence traffic of the joins: frames received until the online lists went quiet, per join.
        summary["connect"]["frames_per_join"] = round(self.settle_frames / connected, 2) if connected else None
        # Only meaningful against the chat (the bare reference server keeps no online list).
        summary["connect"]["online_lists_right"] = self.online_right
        summary["messages"] = {
            "sent": self.sent,
            "send_failures": self.send_failures,
            "per_sender": max(1, int(options.duration * options.rate)),
            "send_lag_max_ms": round(self.send_lag_max * 1000, 1),
        }
        window = self.window_s or None
        summary["deliveries"] = {
            "expected": self.expected,
            "delivered": stats.delivered,
            "ratio": round(stats.delivered / self.expected, 4) if self.expected else None,
            "missing": max(0, self.expected - stats.delivered),
            "expected_accepted": self.expected - stats.refused_expected,
            "ratio_accepted": round(stats.delivered / (self.expected - stats.refused_expected), 4)
            if self.expected > stats.refused_expected
            else None,
            "duplicates": stats.duplicates,
            "misrouted": stats.misrouted,
            "window_s": round(self.window_s, 3),
            "frames_per_s": round(stats.delivered / window, 1) if window else None,
        }
        summary["latency_ms"] = percentiles_ms(stats.latencies)
        summary["latency_timeline"] = latency_timeline(stats.sent_at, stats.latencies, stats.first_send_ns)
        summary["errors"] = {
            "errors": stats.errors,
            "refusals": stats.refusals,
            "samples": dict(stats.error_samples.most_common(5)),
        }
        summary["frames"] = {"received": stats.frames, "bytes": stats.bytes}
        summary["server"] = self.server.summary(per=stats.delivered)
        summary["redis"] = self.redis.summary(per=stats.delivered)
        summary["generator"] = self.generator.summary()
        return summary


class Ramp(Scenario):
    """Open idle authenticated sockets up to a cap at a given rate, hold them, report who stayed and the memory."""

    name = "ramp"
    options_class = RampOptions

    def __init__(self, options: RampOptions) -> None:
        super().__init__(options)
        self.options: RampOptions = options
        self.room_names = self.rooms(options.rooms)
        self.connect_ns: list[int] = []
        self.first_frame_ns: list[int] = []
        self.failures: Counter[str] = Counter()
        self.open = 0
        self.peak_open = 0
        self.attempts_done = 0
        self.all_attempted = asyncio.Event()
        self.frames = 0
        self.ramp_s = 0.0
        self.open_at_cap: int | None = None
        self.open_after_hold: int | None = None
        self.early_closes: Counter[int | None] = Counter()
        self.hold_generator: dict | None = None
        self.frames_during_hold: int | None = None

    def attempt_done(self) -> None:
        """Count one finished connect attempt (success or failure)."""
        self.attempts_done += 1
        if self.attempts_done >= self.options.sockets:
            self.all_attempted.set()

    async def hold_one(self, index: int, account: Account | None) -> None:
        """Open one socket, wait for its first frame, then read until it is closed."""
        if account is None:
            self.failures["user could not sign in"] += 1
            self.attempt_done()
            return
        room = self.room_names[index % len(self.room_names)]
        started = time.monotonic_ns()
        try:
            target = self.targets[index % len(self.targets)]
            ws = await open_socket(self.session, target, room, account, self.options.connect_timeout)
        except _NET_ERRORS as error:
            self.failures["handshake: " + describe_error(error)] += 1
            self.attempt_done()
            return
        self.sockets.add(ws)
        self.connect_ns.append(time.monotonic_ns() - started)
        counted = False
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                self.failures[f"closed before any frame ({ws.close_code})"] += 1
                self.attempt_done()
                return
            self.first_frame_ns.append(time.monotonic_ns() - started)
            self.frames += 1
            self.open += 1
            self.peak_open = max(self.peak_open, self.open)
            counted = True
            self.attempt_done()
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.frames += 1
        except TimeoutError:
            if not counted:
                self.failures["no frame within the connect timeout"] += 1
                self.attempt_done()
        except _NET_ERRORS:
            if not counted:
                self.failures["socket error before any frame"] += 1
                self.attempt_done()
        finally:
            if counted:
                self.open -= 1
                if not self.closing:
                    self.early_closes[ws.close_code] += 1

    async def execute(self) -> dict:
        """Sign in, ramp up, hold, summarise."""
        options = self.options
        self.session = self.session or new_session()
        accounts = await self.sign_in_users(options.user_count())
        first = next(account for account in accounts if account is not None)
        await self.open_rooms(self.room_names, first)

        self.phase = "ramp"
        loop = asyncio.get_running_loop()
        self.mark("before")
        self.generator.restart()
        t0 = loop.time()
        for index in range(options.sockets):
            delay = t0 + index / options.connect_rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.spawn(self.hold_one(index, accounts[index % len(accounts)]))
        await self.all_attempted.wait()
        self.ramp_s = loop.time() - t0
        self.open_at_cap = self.open
        self.mark("at_cap")
        ramp_generator = self.generator.stop()

        self.phase = "hold"
        self.generator.restart()
        frames_at_cap = self.frames
        await asyncio.sleep(options.hold)
        self.frames_during_hold = self.frames - frames_at_cap
        self.open_after_hold = self.open
        self.mark("after")
        self.hold_generator = self.generator.stop()
        self.generator.result = ramp_generator
        self.phase = "done"
        self.closing = True
        return self.summary()

    def summary(self) -> dict:
        """Ramp figures: sockets open at the cap and after the hold, connect latency, server memory and CPU."""
        options = self.options
        summary = self.base_summary()
        at_cap, before = self.server.rss_kb("at_cap"), self.server.rss_kb("before")
        opened = len(self.first_frame_ns)
        summary["sockets"] = {
            "attempted": options.sockets,
            "opened": opened,
            "failed": sum(self.failures.values()),
            "failure_reasons": dict(self.failures.most_common(5)),
            "open_at_cap": self.open_at_cap if self.open_at_cap is not None else self.open,
            "open_after_hold": self.open_after_hold,
            "peak_open": self.peak_open,
            "closed_early": sum(self.early_closes.values()),
            "close_codes": {str(code): n for code, n in self.early_closes.items()},
            "ramp_s": round(self.ramp_s, 2),
            "achieved_rate": round(opened / self.ramp_s, 1) if self.ramp_s else None,
            "frames_received": self.frames,
            "frames_during_hold": self.frames_during_hold,
        }
        summary["connect_ms"] = percentiles_ms(self.connect_ns)
        summary["first_frame_ms"] = percentiles_ms(self.first_frame_ns)
        server = self.server.summary("before", "at_cap", per=opened, per_name="us_per_socket_opened")
        server["rss_kb_at_cap"] = at_cap
        server["rss_kb_before"] = before
        server["rss_kb_after_hold"] = self.server.rss_kb("after")
        server["kb_per_socket"] = round((at_cap - before) / opened, 1) if at_cap and before and opened else None
        server["hold_cpu_s"] = self.server.cpu_s("at_cap", "after")
        summary["server"] = server
        summary["redis"] = self.redis.summary("before", "after", per_name="")
        summary["generator"] = self.generator.summary()
        summary["generator_hold"] = self.hold_generator
        return summary


class Churn(Scenario):
    """Clients join and leave a room over and over; measure joins per second and join latency."""

    name = "churn"
    options_class = ChurnOptions

    def __init__(self, options: ChurnOptions) -> None:
        super().__init__(options)
        self.options: ChurnOptions = options
        self.room_names = self.rooms(options.rooms)
        self.joins = 0
        self.errors: Counter[str] = Counter()
        self.connect_ns: list[int] = []
        self.online_ns: list[int] = []
        self.frames = 0
        self.churn_s = 0.0

    async def join_leave(self, worker: int, account: Account | None, deadline: float) -> None:
        """Repeat connect, wait for the online list, close, until the deadline."""
        if account is None:
            self.errors["user could not sign in"] += 1
            return
        loop = asyncio.get_running_loop()
        room = self.room_names[worker % len(self.room_names)]
        while loop.time() < deadline:
            started = time.monotonic_ns()
            try:
                target = self.targets[worker % len(self.targets)]
                ws = await open_socket(self.session, target, room, account, self.options.connect_timeout)
            except _NET_ERRORS as error:
                self.errors["handshake: " + describe_error(error)] += 1
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            self.sockets.add(ws)
            self.connect_ns.append(time.monotonic_ns() - started)
            try:
                async with asyncio.timeout(self.options.connect_timeout):
                    while True:
                        message = await ws.receive()
                        if message.type is not aiohttp.WSMsgType.TEXT:
                            self.errors[f"closed before the online list ({ws.close_code})"] += 1
                            break
                        self.frames += 1
                        if ONLINE_MARK in message.data:
                            self.online_ns.append(time.monotonic_ns() - started)
                            self.joins += 1
                            break
            except TimeoutError:
                self.errors["no online list within the connect timeout"] += 1
            except _NET_ERRORS as error:
                self.errors[f"socket: {type(error).__name__}"] += 1
            await ws.close()
            self.sockets.discard(ws)
            if self.options.pause:
                await asyncio.sleep(self.options.pause)

    async def execute(self) -> dict:
        """Sign in, churn for the duration, summarise."""
        options = self.options
        self.session = self.session or new_session()
        accounts = await self.sign_in_users(options.user_count())
        first = next(account for account in accounts if account is not None)
        await self.open_rooms(self.room_names, first)

        self.phase = "churn"
        loop = asyncio.get_running_loop()
        self.mark("before")
        self.generator.restart()
        t0 = loop.time()
        await asyncio.gather(
            *(self.join_leave(worker, accounts[worker], t0 + options.duration) for worker in range(options.clients))
        )
        self.churn_s = loop.time() - t0
        self.mark("after")
        self.generator.stop()
        self.phase = "done"
        return self.summary()

    def summary(self) -> dict:
        """Churn figures: joins, joins per second, errors, connect and online-list latency, server CPU per join."""
        summary = self.base_summary()
        summary["joins"] = {
            "joins": self.joins,
            "seconds": round(self.churn_s, 2),
            "per_s": round(self.joins / self.churn_s, 1) if self.churn_s else None,
            "errors": sum(self.errors.values()),
            "error_reasons": dict(self.errors.most_common(5)),
            "frames_received": self.frames,
        }
        summary["connect_ms"] = percentiles_ms(self.connect_ns)
        summary["online_list_ms"] = percentiles_ms(self.online_ns)
        summary["server"] = self.server.summary(per=self.joins, per_name="us_per_join")
        summary["redis"] = self.redis.summary(per=self.joins, per_name="us_per_join")
        summary["generator"] = self.generator.summary()
        return summary


SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in (Fanout, Ramp, Churn)}
# The human lines of scenarios defined elsewhere (loadtest.org adds its own, and itself to SCENARIOS).
HUMAN_LINES: dict[str, Callable[[dict], str]] = {}


def make_options(scenario: str, **options: Any) -> CommonOptions:
    """Build a scenario's options from keyword arguments, refusing unknown ones."""
    if scenario not in SCENARIOS:
        raise LoadTestError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    options_class = SCENARIOS[scenario].options_class
    known = {f.name for f in dataclasses.fields(options_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise LoadTestError(f"{scenario} takes no option {', '.join(unknown)}")
    return options_class(**options)


async def run(scenario: str, *, observer: Callable[[str], None] | None = None, **options: Any) -> dict:
    """Run one scenario within its hard timeout and return its summary (status 'ok', 'timeout' or 'error').

    `observer`, if given, is called with the name of each measurement mark ("before", "after", ...) as it is taken.
    """
    opts = make_options(scenario, **options)
    instance = SCENARIOS[scenario](opts)
    instance.observer = observer
    raise_fd_limit()
    if getattr(opts, "rate", 0) >= 1.0:
        print(
            f"warning: --rate {opts.rate} msgs/s per sender may hit the server's limit of 10 messages per 10 s",
            file=sys.stderr,
        )
    timeout = opts.timeout if opts.timeout is not None else opts.default_timeout()
    status, detail = "ok", None
    try:
        async with asyncio.timeout(timeout):
            await instance.execute()
    except TimeoutError:
        status, detail = "timeout", f"stopped by the hard timeout of {timeout:.0f} s during {instance.phase}"
    except (LoadTestError, aiohttp.ClientError, OSError) as error:
        status, detail = "error", f"{type(error).__name__}: {error}"
    finally:
        try:
            async with asyncio.timeout(30):
                await instance.cleanup()
        except TimeoutError:
            pass
    summary = instance.summary()
    summary["status"] = status
    summary["timeout_s"] = round(timeout, 1)
    if detail:
        summary["detail"] = detail
    return summary


def _ms(value: float | None) -> str:
    """A latency for the human line."""
    return "-" if value is None else f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _share(generator: dict | None) -> str:
    """The generator's CPU share of one core for the human line."""
    return "-" if not generator else f"{generator['utilization']:.0%}"


def human_line(summary: dict) -> str:
    """A one-line human reading of a summary."""
    name, status = summary["scenario"], summary["status"]
    prefix = f"{name}: " if status == "ok" else f"{name} ({status}: {summary.get('detail', '')}): "
    if name in HUMAN_LINES:
        return prefix + HUMAN_LINES[name](summary)
    if name == "fanout":
        d, lat, err = summary["deliveries"], summary["latency_ms"], summary["errors"]
        ratio = "-" if d["ratio"] is None else f"{d['ratio']:.3f}"
        us = summary["server"].get("us_per_frame")
        return prefix + (
            f"{d['delivered']}/{d['expected']} delivered ({ratio}), {d['frames_per_s'] or 0:.0f} frames/s, "
            f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} max {_ms(lat['max'])}, {d['duplicates']} dup, "
            f"{err['errors']} errors, {err['refusals']} refused, {summary['connect']['failed']} connect failures, "
            f"server {'-' if us is None else f'{us:.0f}'} us/frame, generator cpu {_share(summary['generator'])}"
        )
    if name == "ramp":
        s, c, server = summary["sockets"], summary["connect_ms"], summary["server"]
        rss = server.get("rss_kb_at_cap")
        per = server.get("kb_per_socket")
        return prefix + (
            f"{s['open_at_cap']}/{s['attempted']} open at cap, {s['open_after_hold']} after "
            f"{summary['params']['hold']:.0f} s hold, {s['failed']} failed, {s['achieved_rate'] or 0:.0f} opens/s, "
            f"connect p50 {_ms(c['p50'])} p99 {_ms(c['p99'])}, server rss "
            f"{'-' if rss is None else f'{rss / 1024:.0f} MiB'} ({'-' if per is None else f'{per:.0f}'} KiB/socket), "
            f"generator cpu {_share(summary['generator'])}"
        )
    j, c, o = summary["joins"], summary["connect_ms"], summary["online_list_ms"]
    us = summary["server"].get("us_per_join")
    return prefix + (
        f"{j['joins']} joins in {j['seconds']:.1f} s ({j['per_s'] or 0:.1f}/s), {j['errors']} errors, "
        f"connect p50 {_ms(c['p50'])} p99 {_ms(c['p99'])}, online list p50 {_ms(o['p50'])} p99 {_ms(o['p99'])}, "
        f"server {'-' if us is None else f'{us:.0f}'} us/join"
    )

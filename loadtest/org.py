"""The organisation workload (`org`) and the many-rooms measurement (`many-rooms`), over a plan `loadtest.seed` wrote.

org: the plan's users hold about 2.5 tabs each (room pages, direct conversations, a share of directories), tabs close
and open at a steady rate, and messages go to conversations in proportion to their members, from a member's open
tab, for the duration. Every message is owed to every tab open in its conversation when it was sent.

many-rooms: one socket in each of N rooms that already hold M messages, opened 50 at a time; memory before, at the
peak and after, the idle background CPU, and what a join costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from loadtest.client import (
    LOOPBACK_HOSTS,
    Account,
    LoadTestError,
    Target,
    describe_error,
    htmx_frame_at,
    new_session,
    open_socket_at,
    percentiles_ms,
    read_proc,
)
from loadtest.plan import Plan
from loadtest.scenarios import (
    _NET_ERRORS,
    _REFUSAL_WORDS,
    ARTICLE_MARK,
    ERROR_MARK,
    HUMAN_LINES,
    QUIET_S,
    SCENARIOS,
    CommonOptions,
    Scenario,
    _ms,
    _share,
    error_text,
    latency_timeline,
)

# A message still owed to a tab the generator closes is forgiven (it was in flight); one sent longer ago than this
# is counted apart as well: a sign of a delivery that was late or lost, not of one in flight.
CLOSE_GRACE_S = 5.0
# The header a proxy in front of several processes may add to a socket's 101 answer, naming the process that took it
# (loadtest.stack's nginx does): joins and deliveries are then counted per process too.
UPSTREAM_HEADER = "X-Chat-Upstream"


def upstream_of(ws: aiohttp.ClientWebSocketResponse) -> str | None:
    """The process that took the socket, as the proxy named it: the last one it tried (nginx lists every process it
    tried, "a, b", when it passed the handshake on to the next one)."""
    response = getattr(ws, "_response", None)  # aiohttp keeps the 101 answer there
    named = response.headers.get(UPSTREAM_HEADER) if response is not None else None
    return named.rsplit(",", 1)[-1].strip() if named else None


# The server's default write limit for messages (CHAT_RATE_LIMIT_MESSAGES per CHAT_RATE_LIMIT_SECONDS): the generator
# keeps each user under it, so refusals are the server's doing only if its limit is lower.
USER_WINDOW_S = 10.0
WHISPER_MARK = "message--private"
SAMPLE_EVERY_S = 1.0


def redis_commands(url: str | None) -> int | None:
    """Redis's total_commands_processed (INFO stats), or None without a Redis or when it does not answer."""
    if not url:
        return None
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            return int(client.info("stats")["total_commands_processed"])
        finally:
            client.close()
    except redis.RedisError:
        return None


def check_redis_url(url: str | None) -> None:
    if url and (urlsplit(url).hostname or "").lower() not in LOOPBACK_HOSTS:
        raise LoadTestError("--redis-url must name a loopback host (127.0.0.1, localhost, ::1)")


@dataclass
class PlanOptions(CommonOptions):
    """Options of the scenarios that run over a seeded plan."""

    plan: str = ""
    # Redis of the server's layer, for INFO's command count (loopback only).
    redis_url: str | None = None
    idle: float = 30.0
    settle: float = 1.0
    settle_max: float = 120.0

    def validate(self) -> None:
        super().validate()
        if not self.plan:
            raise LoadTestError("give --plan FILE (python -m loadtest.seed writes it)")
        if not Path(self.plan).is_file():
            raise LoadTestError(f"no plan file {self.plan}")
        check_redis_url(self.redis_url)
        if self.idle < 0 or self.settle < 0:
            raise LoadTestError("--idle and --settle must not be negative")
        self.loaded = Plan.load(self.plan)

    def user_count(self) -> int:
        return len(self.loaded.users)

    def sign_in_allowance(self) -> float:
        """Seconds for signing in: nothing when the seed logged the users in, else a hash per user."""
        return 0.0 if self.loaded.sessions or self.bare else self.setup_allowance(self.user_count())


@dataclass
class OrgOptions(PlanOptions):
    """The organisation: tabs, churn and messages over the plan's users and conversations."""

    sockets: int = 5000
    directory_share: float = 0.1
    churn: float = 20.0
    message_rate: float = 50.0
    duration: float = 300.0
    drain: float = 15.0
    user_limit: int = 10

    def validate(self) -> None:
        super().validate()
        if self.loaded.kind != "org":
            raise LoadTestError(f"{self.plan} is a plan of {self.loaded.kind}, not of an organisation")
        if self.sockets < 1 or self.duration <= 0 or self.message_rate < 0 or self.churn < 0 or self.drain < 0:
            raise LoadTestError("--sockets and --duration must be positive; rates and --drain not negative")
        if not 0 <= self.directory_share <= 1:
            raise LoadTestError("--directory-share must be between 0 and 1")

    def default_timeout(self) -> float:
        return (
            self.sign_in_allowance()
            + 60.0
            + 0.1 * self.sockets
            + self.settle_max
            + self.idle
            + self.duration
            + self.drain
            + 60.0
        )


@dataclass
class ManyRoomsOptions(PlanOptions):
    """One socket in each of the plan's rooms."""

    after_wait: float = 5.0

    def validate(self) -> None:
        super().validate()
        if self.loaded.kind != "rooms":
            raise LoadTestError(f"{self.plan} is a plan of {self.loaded.kind}, not of many rooms")

    def default_timeout(self) -> float:
        rooms = len(self.loaded.conversations)
        return self.sign_in_allowance() + 60.0 + 0.2 * rooms + self.settle_max + self.idle + self.after_wait + 60.0


class Tab:
    """One browser tab: a conversation's page or a directory, its socket, and the messages it is owed."""

    __slots__ = (
        "churned",
        "closing",
        "conversation",
        "got",
        "index",
        "opened",
        "owed",
        "page_url",
        "path",
        "ready",
        "target",
        "upstream",
        "user",
        "ws",
    )

    def __init__(self, index: int, user: int, conversation: int, target: Target, path: str, page_url: str) -> None:
        self.index, self.user, self.conversation = index, user, conversation
        self.target, self.path, self.page_url = target, path, page_url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.upstream: str | None = None  # the process behind a proxy that took the socket, when it says
        self.opened = self.closing = self.churned = False
        self.owed: set[int] = set()
        self.got: set[int] = set()
        self.ready = asyncio.Event()


class TabSet:
    """Tabs with O(1) add, remove and random choice."""

    def __init__(self) -> None:
        self.items: list[Tab] = []
        self.where: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, tab: Tab) -> None:
        if tab.index not in self.where:
            self.where[tab.index] = len(self.items)
            self.items.append(tab)

    def discard(self, tab: Tab) -> None:
        position = self.where.pop(tab.index, None)
        if position is None:
            return
        last = self.items.pop()
        if last is not tab:
            self.items[position] = last
            self.where[last.index] = position

    def choice(self, rng: random.Random) -> Tab:
        return self.items[rng.randrange(len(self.items))]


class PlanScenario(Scenario):
    """What org and many-rooms share: the plan's accounts, tabs that open and read, memory samples, Redis counts."""

    def __init__(self, options: PlanOptions) -> None:
        super().__init__(options)
        self.options: PlanOptions = options
        self.plan: Plan = options.loaded
        self.accounts: list[Account | None] = []
        self.tabs: list[Tab] = []
        self.failures: Counter[str] = Counter()
        self.close_codes: Counter[int | None] = Counter()
        self.closed_by_server = 0
        self.frames = self.bytes = 0
        self.last_frame_ns = 0
        # Per phase ("initial", "churn"): handshake, request to first frame, handshake done to first frame.
        self.connect_ns: dict[str, list[int]] = {"initial": [], "churn": []}
        self.first_frame_ns: dict[str, list[int]] = {"initial": [], "churn": []}
        self.join_ns: dict[str, list[int]] = {"initial": [], "churn": []}
        self.open_now = 0
        self.peak_open = 0
        self.rss_samples: list[tuple[float, int]] = []
        self.rss_peak_by_pid: dict[int, int] = {}
        # Per process behind a proxy (its address, from UPSTREAM_HEADER): joins by phase, deliveries, frames.
        self.first_frame_by: dict[str, dict[str, list[int]]] = {}
        self.delivered_by: Counter[str] = Counter()
        self.frames_by: Counter[str] = Counter()
        self.redis_counts: dict[str, tuple[float, int | None]] = {}
        self.mark_times: dict[str, float] = {}
        self.settle_s = 0.0

    def mark(self, name: str) -> None:
        """Sample the processes, Redis's command count and the time under a name."""
        self.mark_times[name] = time.monotonic()
        self.redis_counts[name] = (time.monotonic(), redis_commands(self.options.redis_url))
        super().mark(name)

    async def sample_memory(self) -> None:
        """The servers' summed RSS every second: the peak between marks."""
        while True:
            values = [read_proc(pid) for pid in self.options.server_pids]
            for pid, sample in zip(self.options.server_pids, values, strict=True):
                if sample and sample["rss_kb"]:
                    self.rss_peak_by_pid[pid] = max(self.rss_peak_by_pid.get(pid, 0), sample["rss_kb"])
            total = sum(sample["rss_kb"] or 0 for sample in values if sample)
            if total:
                self.rss_samples.append((time.monotonic(), total))
            await asyncio.sleep(SAMPLE_EVERY_S)

    def rss_peak(self, start: str | None = None, end: str | None = None) -> int | None:
        lower = self.mark_times.get(start, float("-inf")) if start else float("-inf")
        upper = self.mark_times.get(end, float("inf")) if end else float("inf")
        values = [rss for at, rss in self.rss_samples if lower <= at <= upper]
        # The marks' own samples too: a peak may fall between two of the sampler's.
        values += [
            rss
            for name, at in self.mark_times.items()
            if lower <= at <= upper and (rss := self.server.rss_kb(name)) is not None
        ]
        return max(values) if values else None

    def hwm_kb(self) -> int | None:
        values = [read_proc(pid) for pid in self.options.server_pids]
        peaks = [sample["hwm_kb"] for sample in values if sample and sample["hwm_kb"]]
        return sum(peaks) if peaks else None

    def per_process(self, *, run: tuple[str, str] | None = ("before", "after")) -> list[dict]:
        """Each server process's own figures: background duty, CPU over the connects and the run, RSS."""
        samples = self.server.samples
        idle_wall = self.mark_times.get("idle_end", 0) - self.mark_times.get("idle_start", 0)
        result = []
        for pid in self.options.server_pids:

            def cpu(start: str, end: str, pid: int = pid) -> float | None:
                first, last = samples.get(start, {}).get(pid), samples.get(end, {}).get(pid)
                return round(last["cpu_s"] - first["cpu_s"], 3) if first and last else None

            def rss(name: str, pid: int = pid) -> int | None:
                sample = samples.get(name, {}).get(pid)
                return sample["rss_kb"] if sample else None

            idle = cpu("idle_start", "idle_end")
            entry = {
                "pid": pid,
                "connect_cpu_s": cpu("connect_start", "connected"),
                "idle_cpu_s": idle,
                "idle_cpu_pct": round(100 * idle / idle_wall, 2) if idle is not None and idle_wall > 0 else None,
                "rss_kb_connected": rss("connected"),
                "rss_kb_peak": self.rss_peak_by_pid.get(pid),
                "rss_kb_end": rss(run[1]) if run else None,
            }
            if run:
                entry["run_cpu_s"] = cpu(*run)
            result.append(entry)
        return result

    def by_upstream(self) -> dict[str, dict]:
        """Per process behind the proxy (by its address): tabs opened, their joins, what they were delivered."""
        result = {}
        for upstream in sorted(self.first_frame_by):
            phases = self.first_frame_by[upstream]
            result[upstream] = {
                "initial_opened": len(phases.get("initial", [])),
                "churn_opened": len(phases.get("churn", [])),
                "initial_first_frame_ms": percentiles_ms(phases.get("initial", [])),
                "churn_first_frame_ms": percentiles_ms(phases.get("churn", [])),
                "delivered": self.delivered_by[upstream],
                "frames": self.frames_by[upstream],
            }
        return result

    def redis_per_s(self, start: str, end: str) -> float | None:
        (t0, first), (t1, last) = self.redis_counts.get(start, (0, None)), self.redis_counts.get(end, (0, None))
        if first is None or last is None or t1 <= t0:
            return None
        # INFO itself is one command at each end.
        return round((last - first - 1) / (t1 - t0), 1)

    def cpu_pct(self, start: str, end: str) -> float | None:
        cpu = self.server.cpu_s(start, end)
        wall = self.mark_times.get(end, 0) - self.mark_times.get(start, 0)
        return round(100 * cpu / wall, 2) if cpu is not None and wall > 0 else None

    async def accounts_ready(self) -> None:
        """The plan's users as browsers: the seed's sessions, or a sign-in through the login form each."""
        names = self.plan.users
        if self.options.bare:
            self.accounts = [Account(username=name) for name in names]
        elif self.plan.sessions:
            cookie = self.options.session_cookie
            self.accounts = [
                Account(name, {cookie: self.plan.sessions[name]}, "seeded") if name in self.plan.sessions else None
                for name in names
            ]
        else:
            self.options.password = self.plan.password or self.options.password
            self.accounts = await self.sign_in_users(len(names))

    def sign_in_names(self, count: int) -> list[str]:
        return self.plan.users[:count]

    def usernames(self, count: int) -> list[str]:
        return self.plan.users[:count]

    def conversation_path(self, conversation: int, user: int) -> tuple[str, str]:
        """The socket path and the page's path of a conversation as `user` opens it."""
        if conversation < 0:
            return "/ws/directory/", "/"
        item = self.plan.conversations[conversation]
        if self.options.bare:  # the reference server's rooms: one path per conversation
            return f"/ws/chat/{item.name}/", f"/chat/{item.name}/"
        if item.is_direct:
            peer = self.plan.users[item.members[1] if item.members[0] == user else item.members[0]]
            return f"/ws/dm/{peer}/", f"/dm/{peer}/"
        return f"/ws/chat/{item.name}/", f"/chat/{item.name}/"

    def new_tab(self, user: int, conversation: int) -> Tab:
        index = len(self.tabs)
        target = self.targets[index % len(self.targets)]
        path, page = self.conversation_path(conversation, user)
        tab = Tab(index, user, conversation, target, path, target.base + page)
        self.tabs.append(tab)
        return tab

    def on_open(self, tab: Tab) -> None:
        """A tab has its first frame (its page's state): from now on it is owed its conversation's messages."""

    def on_frame(self, tab: Tab, data: str, now: int) -> None:
        """A later frame of an open tab."""

    def on_gone(self, tab: Tab) -> None:
        """The tab's socket ended (closed by us or by the server)."""

    async def run_tab(self, tab: Tab, gate: asyncio.Semaphore | None, phase: str) -> None:
        """Open the tab's socket (within the gate, if any), wait for its first frame, then read until it ends."""
        account = self.accounts[tab.user] if tab.user < len(self.accounts) else None
        if account is None:
            self.failures["user could not sign in"] += 1
            tab.ready.set()
            return
        opened = False
        try:
            async with gate if gate is not None else _nothing():
                started = time.monotonic_ns()
                try:
                    ws = await open_socket_at(
                        self.session, tab.target, tab.path, account, self.options.connect_timeout
                    )
                except _NET_ERRORS as error:
                    self.failures["handshake: " + describe_error(error)] += 1
                    return
                tab.ws = ws
                self.sockets.add(ws)
                shaken = time.monotonic_ns()
                tab.upstream = upstream_of(ws)
                try:
                    async with asyncio.timeout(self.options.connect_timeout):
                        message = await ws.receive()
                except TimeoutError:
                    self.failures["no frame within the connect timeout"] += 1
                    await ws.close()
                    return
                if message.type is not aiohttp.WSMsgType.TEXT:
                    self.failures[f"closed before any frame ({ws.close_code})"] += 1
                    return
                now = time.monotonic_ns()
                self.connect_ns[phase].append(shaken - started)
                self.first_frame_ns[phase].append(now - started)
                if tab.upstream is not None:
                    self.first_frame_by.setdefault(tab.upstream, {}).setdefault(phase, []).append(now - started)
                self.join_ns[phase].append(now - shaken)
                self.frames += 1
                self.bytes += len(message.data)
                self.last_frame_ns = now
                opened = tab.opened = True
                self.open_now += 1
                self.peak_open = max(self.peak_open, self.open_now)
                if not tab.closing:
                    self.on_open(tab)
            tab.ready.set()
            async for message in ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    now = time.monotonic_ns()
                    self.frames += 1
                    self.bytes += len(message.data)
                    self.last_frame_ns = now
                    if tab.upstream is not None:
                        self.frames_by[tab.upstream] += 1
                    self.on_frame(tab, message.data, now)
        except _NET_ERRORS:
            if not opened:
                self.failures["socket error before any frame"] += 1
        finally:
            tab.ready.set()
            if opened:
                self.open_now -= 1
                if not tab.closing and not self.closing:
                    self.closed_by_server += 1
                    self.close_codes[tab.ws.close_code if tab.ws else None] += 1
                self.on_gone(tab)
            if tab.ws is not None:
                self.sockets.discard(tab.ws)

    async def settle_down(self) -> None:
        """Wait --settle s, then until no frame came for QUIET_S (join broadcasts are out), within --settle-max."""
        self.phase = "settle"
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.sleep(self.options.settle)
        deadline = started + max(self.options.settle, self.options.settle_max)
        while loop.time() < deadline:
            quiet_s = (time.monotonic_ns() - self.last_frame_ns) / 1e9
            if quiet_s >= QUIET_S:
                break
            await asyncio.sleep(min(QUIET_S - quiet_s, deadline - loop.time()) + 0.001)
        self.settle_s = loop.time() - started

    async def idle_phase(self) -> None:
        """All sockets open, nothing sent: the server's background duty over --idle s."""
        self.phase = "idle"
        frames = self.frames
        self.mark("idle_start")
        await asyncio.sleep(self.options.idle)
        self.mark("idle_end")
        self.idle_frames = self.frames - frames

    def idle_summary(self) -> dict:
        cpu = self.server.cpu_s("idle_start", "idle_end")
        return {
            "seconds": self.options.idle,
            "server_cpu_s": cpu,
            # Share of one core: the server's work with every socket idle (timers, presence, keep-alives).
            "server_cpu_pct": self.cpu_pct("idle_start", "idle_end"),
            "redis_cpu_s": self.redis.cpu_s("idle_start", "idle_end"),
            "redis_commands_per_s": self.redis_per_s("idle_start", "idle_end"),
            "frames": getattr(self, "idle_frames", None),
        }

    def tabs_summary(self) -> dict:
        return {
            "failed": sum(self.failures.values()),
            "failure_reasons": dict(self.failures.most_common(5)),
            "closed_by_server": self.closed_by_server,
            "close_codes": {str(code): n for code, n in self.close_codes.items()},
            "open_now": self.open_now,
            "peak_open": self.peak_open,
        }

    def joins(self, phase: str) -> dict:
        return {
            "count": len(self.first_frame_ns[phase]),
            "connect_ms": percentiles_ms(self.connect_ns[phase]),
            "first_frame_ms": percentiles_ms(self.first_frame_ns[phase]),
            "join_ms": percentiles_ms(self.join_ns[phase]),
        }


class _nothing:
    """An async context manager that does nothing (a tab opened without a gate)."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


class Org(PlanScenario):
    """An organisation at work: tabs open and close, messages flow by room size; every open tab gets its own."""

    name = "org"
    options_class = OrgOptions

    def __init__(self, options: OrgOptions) -> None:
        super().__init__(options)
        self.options: OrgOptions = options
        conversations = self.plan.conversations
        self.by_user = self.plan.by_user()
        self.open_by_conversation: list[TabSet] = [TabSet() for _ in conversations]
        self.live = TabSet()
        # Conversations drawn in proportion to their members: running totals for bisect.
        self.cumulative: list[int] = []
        total = 0
        for item in conversations:
            total += len(item.members)
            self.cumulative.append(total)
        self.token_re = re.compile(rf'(?<!value=")lt:{self.run_id}:(\d+):\d+')
        self.refused_re = re.compile(rf'value="lt:{self.run_id}:(\d+):')
        self.message_conversation: list[int] = []
        self.message_sent_ns: list[int] = []
        self.message_owed: list[list[Tab]] = []
        self.user_sends: dict[int, deque[float]] = {}
        self.sent = self.send_failures = self.skipped = 0
        self.send_lag_max = 0.0
        self.expected = self.delivered = self.outstanding = 0
        self.refused_expected = self.undelivered_at_close = self.undelivered_at_close_stale = 0
        self.duplicates = self.misrouted = self.whispers = self.late = self.in_snapshot = 0
        self.errors = self.refusals = 0
        self.error_samples: Counter[str] = Counter()
        self.latencies: list[int] = []
        self.sent_at: list[int] = []
        self.first_send_ns = 0
        self.message_frames = 0
        self.churn_closed = self.churn_opened = 0
        self.initial_tabs = 0
        self.run_frames = 0
        self.window_s = 0.0

    # Tabs

    def tab_choice(self, user: int) -> int:
        """What a new tab of `user` shows: a directory (a share of tabs), else one of their conversations."""
        conversations = self.by_user[user]
        if not conversations or self.random.random() < self.options.directory_share:
            return -1
        return self.random.choice(conversations)

    def on_open(self, tab: Tab) -> None:
        if tab.conversation >= 0:
            self.open_by_conversation[tab.conversation].add(tab)
        self.live.add(tab)

    def forget(self, tab: Tab) -> None:
        if tab.conversation >= 0:
            self.open_by_conversation[tab.conversation].discard(tab)
        self.live.discard(tab)

    def on_gone(self, tab: Tab) -> None:
        # Closed by the server: what it was owed stays owed (missing), unless the generator closed it.
        self.forget(tab)

    def close_tab(self, tab: Tab) -> None:
        """The user closes a tab: what it was still owed is forgiven (counted apart), and its socket closes."""
        tab.closing = True
        self.forget(tab)
        now = time.monotonic_ns()
        for seq in tab.owed:
            self.undelivered_at_close += 1
            if now - self.message_sent_ns[seq] > CLOSE_GRACE_S * 1e9:
                self.undelivered_at_close_stale += 1
        self.outstanding -= len(tab.owed)
        tab.owed.clear()
        if tab.ws is not None:
            self.spawn(tab.ws.close())

    def on_frame(self, tab: Tab, data: str, now: int) -> None:
        """Count the tokens of a message frame (delivered once per owed tab), errors and refusals."""
        if ARTICLE_MARK in data:
            self.message_frames += 1
            whisper = WHISPER_MARK in data
            seen: set[int] = set()
            for match in self.token_re.finditer(data):
                seq = int(match[1])
                if seq in seen:
                    continue
                seen.add(seq)
                if seq >= len(self.message_conversation):
                    self.misrouted += 1
                elif seq in tab.owed:
                    tab.owed.discard(seq)
                    tab.got.add(seq)
                    self.delivered += 1
                    if tab.upstream is not None:
                        self.delivered_by[tab.upstream] += 1
                    self.outstanding -= 1
                    sent_ns = self.message_sent_ns[seq]
                    self.latencies.append(now - sent_ns)
                    self.sent_at.append(sent_ns)
                elif seq in tab.got:
                    self.duplicates += 1
                else:
                    tab.got.add(seq)
                    conversation = self.message_conversation[seq]
                    item = self.plan.conversations[conversation]
                    if tab.conversation == conversation:
                        self.late += 1  # sent while this tab was opening: not owed, and it came
                    elif whisper and item.is_direct and tab.user in item.members:
                        self.whispers += 1  # a direct message shown on its people's other pages
                    else:
                        self.misrouted += 1
        if ERROR_MARK in data:
            self.note_error(data)

    def note_error(self, data: str) -> None:
        text = error_text(data)
        if not text:
            return
        if any(word in text.lower() for word in _REFUSAL_WORDS):
            self.refusals += 1
            refused = self.refused_re.search(data)
            if refused is not None and int(refused[1]) < len(self.message_owed):
                seq = int(refused[1])
                for tab in self.message_owed[seq]:
                    if seq in tab.owed:
                        tab.owed.discard(seq)
                        self.outstanding -= 1
                        self.refused_expected += 1
        else:
            self.errors += 1
        if len(self.error_samples) < 10 or text in self.error_samples:
            self.error_samples[text[:200]] += 1

    # Messages

    def pick_sender(self) -> Tab | None:
        """An open tab to send from: its conversation drawn by members, its user under the write limit."""
        if not self.cumulative or not self.cumulative[-1]:
            return None
        horizon = time.monotonic() - USER_WINDOW_S
        for _ in range(200):
            conversation = min(
                len(self.cumulative) - 1, int(_bisect(self.cumulative, self.random.random() * self.cumulative[-1]))
            )
            tabs = self.open_by_conversation[conversation]
            if not len(tabs):
                continue
            for _ in range(3):
                tab = tabs.choice(self.random)
                sends = self.user_sends.setdefault(tab.user, deque())
                while sends and sends[0] < horizon:
                    sends.popleft()
                if len(sends) < self.options.user_limit - 1:
                    return tab
        return None

    async def send_one(self) -> None:
        tab = self.pick_sender()
        if tab is None or tab.ws is None or tab.ws.closed:
            self.skipped += 1
            return
        seq = len(self.message_conversation)
        sent_ns = time.monotonic_ns()
        owed = list(self.open_by_conversation[tab.conversation].items)
        self.message_conversation.append(tab.conversation)
        self.message_sent_ns.append(sent_ns)
        self.message_owed.append(owed)
        for receiver in owed:
            receiver.owed.add(seq)
        self.expected += len(owed)
        self.outstanding += len(owed)
        self.user_sends.setdefault(tab.user, deque()).append(time.monotonic())
        if not self.first_send_ns:
            self.first_send_ns = sent_ns
        try:
            await tab.ws.send_str(htmx_frame_at(f"lt:{self.run_id}:{seq}:{sent_ns}", tab.page_url))
        except _NET_ERRORS:
            self.send_failures += 1
            for receiver in owed:
                if seq in receiver.owed:
                    receiver.owed.discard(seq)
                    self.outstanding -= 1
            self.expected -= len(owed)
            return
        self.sent += 1

    async def send_loop(self, t0: float, deadline: float) -> None:
        """--message-rate messages a second on a fixed schedule (open loop)."""
        if not self.options.message_rate:
            return
        loop = asyncio.get_running_loop()
        period = 1.0 / self.options.message_rate
        index = 0
        while (due := t0 + index * period) < deadline:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.send_lag_max = max(self.send_lag_max, -delay)
            await self.send_one()
            index += 1

    async def churn_loop(self, t0: float, deadline: float) -> None:
        """--churn times a second, a user closes a tab and opens another (a directory or a conversation of theirs)."""
        if not self.options.churn:
            return
        loop = asyncio.get_running_loop()
        period = 1.0 / self.options.churn
        index = 0
        while (due := t0 + period / 2 + index * period) < deadline:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            index += 1
            if not len(self.live):
                continue
            old = self.live.choice(self.random)
            self.close_tab(old)
            self.churn_closed += 1
            tab = self.new_tab(old.user, self.tab_choice(old.user))
            tab.churned = True
            self.churn_opened += 1
            self.spawn(self.run_tab(tab, None, "churn"))

    async def execute(self) -> dict:
        options = self.options
        self.session = self.session or new_session()
        self.spawn(self.sample_memory())
        await self.accounts_ready()

        # About sockets / users tabs each, the first ones a tab more.
        self.phase = "connect"
        users = len(self.plan.users)
        for index in range(options.sockets):
            user = index % users
            self.new_tab(user, self.tab_choice(user))
        self.initial_tabs = len(self.tabs)
        gate = asyncio.Semaphore(options.connect_concurrency)
        self.mark("connect_start")
        for tab in list(self.tabs):
            self.spawn(self.run_tab(tab, gate, "initial"))
        await asyncio.gather(*(tab.ready.wait() for tab in list(self.tabs)))
        self.mark("connected")
        await self.settle_down()
        await self.idle_phase()

        self.phase = "run"
        loop = asyncio.get_running_loop()
        frames = self.frames
        self.mark("before")
        self.generator.restart()
        t0 = loop.time() + 0.05
        deadline = t0 + options.duration
        await asyncio.gather(self.send_loop(t0, deadline), self.churn_loop(t0, deadline))
        self.phase = "drain"
        drain_until = loop.time() + options.drain
        # The last tabs opened are given their connect timeout to open, so that every attempt is counted.
        opening = [tab.ready.wait() for tab in self.tabs if not tab.ready.is_set()]
        if opening:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(options.connect_timeout):
                    await asyncio.gather(*opening)
        while self.outstanding > 0 and loop.time() < drain_until:
            await asyncio.sleep(0.05)
        self.window_s = max(1e-9, (time.monotonic_ns() - (self.first_send_ns or time.monotonic_ns())) / 1e9)
        self.mark("after")
        self.run_frames = self.frames - frames
        self.generator.stop()
        self.phase = "done"
        self.closing = True
        return self.summary()

    def summary(self) -> dict:
        options = self.options
        summary = self.base_summary()
        summary["organisation"] = self.plan.figures()
        directories = sum(1 for tab in self.tabs[: self.initial_tabs] if tab.conversation < 0)
        summary["tabs"] = {
            "initial": self.initial_tabs,
            "initial_directories": directories,
            "initial_opened": len(self.first_frame_ns["initial"]),
            "churn_closed": self.churn_closed,
            "churn_opened": len(self.first_frame_ns["churn"]),
            "churn_attempted": self.churn_opened,
            **self.tabs_summary(),
        }
        connect_cpu = self.server.cpu_s("connect_start", "connected")
        joined = len(self.first_frame_ns["initial"])
        summary["connect_phase"] = {
            "seconds": round(self.mark_times.get("connected", 0) - self.mark_times.get("connect_start", 0), 2),
            "settle_s": round(self.settle_s, 2),
            "server_cpu_s": connect_cpu,
            "us_per_join": round(connect_cpu * 1e6 / joined, 1) if connect_cpu is not None and joined else None,
            "rss_kb_before": self.server.rss_kb("connect_start"),
            "rss_kb_after": self.server.rss_kb("connected"),
            "redis_commands_per_s": self.redis_per_s("connect_start", "connected"),
            **self.joins("initial"),
        }
        summary["idle"] = self.idle_summary()
        summary["churn"] = self.joins("churn")
        summary["messages"] = {
            "sent": self.sent,
            "send_failures": self.send_failures,
            "skipped": self.skipped,
            "per_s": round(self.sent / options.duration, 2) if options.duration else None,
            "send_lag_max_ms": round(self.send_lag_max * 1000, 1),
        }
        accepted = self.expected - self.refused_expected - self.undelivered_at_close
        summary["deliveries"] = {
            "expected": self.expected,
            "delivered": self.delivered,
            "refused_expected": self.refused_expected,
            "undelivered_at_close": self.undelivered_at_close,
            "undelivered_at_close_stale": self.undelivered_at_close_stale,
            "expected_open": accepted,
            "ratio": round(self.delivered / accepted, 4) if accepted > 0 else None,
            "missing": max(0, self.outstanding),
            "duplicates": self.duplicates,
            "misrouted": self.misrouted,
            "whispers": self.whispers,
            "late_joiners": self.late,
            "window_s": round(self.window_s, 3),
            "frames_per_s": round(self.delivered / self.window_s, 1) if self.window_s else None,
        }
        summary["latency_ms"] = percentiles_ms(self.latencies)
        summary["latency_timeline"] = latency_timeline(self.sent_at, self.latencies, self.first_send_ns)
        summary["errors"] = {
            "errors": self.errors,
            "refusals": self.refusals,
            "samples": dict(self.error_samples.most_common(5)),
        }
        summary["frames"] = {
            "received": self.frames,
            "bytes": self.bytes,
            "message_frames": self.message_frames,
            "during_run": self.run_frames,
        }
        server = self.server.summary(per=self.delivered)
        cpu = server["cpu_s"]
        frames = self.run_frames
        server["us_per_frame_any"] = round(cpu * 1e6 / frames, 1) if cpu is not None and frames else None
        server["rss_kb_peak"] = self.rss_peak()
        server["rss_kb_peak_run"] = self.rss_peak("before", "after")
        server["rss_kb_end"] = self.server.rss_kb("after")
        server["hwm_kb"] = self.hwm_kb()
        summary["server"] = server
        redis = self.redis.summary(per=self.delivered)
        redis["commands_per_s"] = self.redis_per_s("before", "after")
        summary["redis"] = redis
        summary["generator"] = self.generator.summary()
        summary["per_process"] = self.per_process()
        summary["by_upstream"] = self.by_upstream()
        return summary


def _bisect(cumulative: list[int], value: float) -> int:
    import bisect

    return bisect.bisect_right(cumulative, value)


class ManyRooms(PlanScenario):
    """One socket in each of many rooms with a history: memory, idle CPU and the cost of a join."""

    name = "many-rooms"
    options_class = ManyRoomsOptions

    def __init__(self, options: ManyRoomsOptions) -> None:
        super().__init__(options)
        self.options: ManyRoomsOptions = options

    async def execute(self) -> dict:
        options = self.options
        self.session = self.session or new_session()
        self.spawn(self.sample_memory())
        await self.accounts_ready()
        self.phase = "join"
        users = len(self.plan.users)
        for index in range(len(self.plan.conversations)):
            self.new_tab(index % users, index)
        gate = asyncio.Semaphore(options.connect_concurrency)
        self.mark("before")
        self.generator.restart()
        for tab in list(self.tabs):
            self.spawn(self.run_tab(tab, gate, "initial"))
        await asyncio.gather(*(tab.ready.wait() for tab in self.tabs))
        self.mark("joined")
        self.generator.stop()
        await self.settle_down()
        await self.idle_phase()
        self.phase = "close"
        for tab in self.tabs:
            tab.closing = True
        self.closing = True
        await asyncio.gather(*(tab.ws.close() for tab in self.tabs if tab.ws is not None), return_exceptions=True)
        await asyncio.sleep(options.after_wait)
        self.mark("after")
        self.phase = "done"
        return self.summary()

    def summary(self) -> dict:
        summary = self.base_summary()
        opened = len(self.first_frame_ns["initial"])
        summary["rooms"] = {
            "rooms": len(self.plan.conversations),
            "messages_each": self.plan.params.get("messages"),
            "opened": opened,
            "settle_s": round(self.settle_s, 2),
            "seconds": round(self.mark_times.get("joined", 0) - self.mark_times.get("before", 0), 2),
            **self.tabs_summary(),
        }
        joins = self.joins("initial")
        summary["connect_ms"] = joins["connect_ms"]
        summary["first_frame_ms"] = joins["first_frame_ms"]
        summary["join_ms"] = joins["join_ms"]
        before, joined = self.server.rss_kb("before"), self.server.rss_kb("joined")
        server = self.server.summary("before", "joined", per=opened, per_name="us_per_join")
        server["rss_kb_before"] = before
        server["rss_kb_joined"] = joined
        server["rss_kb_peak"] = self.rss_peak("before", "after")
        server["rss_kb_after"] = self.server.rss_kb("after")
        server["hwm_kb"] = self.hwm_kb()
        server["kb_per_room"] = round((joined - before) / opened, 1) if joined and before and opened else None
        summary["server"] = server
        summary["idle"] = self.idle_summary()
        summary["redis"] = self.redis.summary("before", "joined", per_name="")
        summary["redis"]["commands_per_s_joining"] = self.redis_per_s("before", "joined")
        summary["generator"] = self.generator.summary()
        return summary


def _kib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:.0f} MiB"


def org_line(summary: dict) -> str:
    d, lat, server, idle = summary["deliveries"], summary["latency_ms"], summary["server"], summary["idle"]
    tabs, churn, connect = summary["tabs"], summary["churn"], summary["connect_phase"]
    ratio = "-" if d["ratio"] is None else f"{d['ratio']:.4f}"
    us = server.get("us_per_frame")
    redis = summary["redis"].get("commands_per_s")
    return (
        f"{tabs['initial_opened']}/{tabs['initial']} tabs, {churn['count']}/{tabs['churn_attempted']} reopened, "
        f"{summary['messages']['sent']} messages, {d['delivered']}/{d['expected_open']} delivered ({ratio}), "
        f"{d['misrouted']} misrouted, p99 {_ms(lat['p99'])}, server {'-' if us is None else f'{us:.0f}'} us/frame, "
        f"rss peak {_kib(server.get('rss_kb_peak'))} end {_kib(server.get('rss_kb_end'))}, "
        f"idle {idle['server_cpu_pct'] if idle['server_cpu_pct'] is not None else '-'}% of a core, "
        f"redis {'-' if redis is None else f'{redis:.0f}'} cmd/s, join p99 {_ms(churn['first_frame_ms']['p99'])} "
        f"(initial {_ms(connect['first_frame_ms']['p99'])}, {connect['us_per_join'] or '-'} us/join), "
        f"generator cpu {_share(summary['generator'])}"
    )


def many_rooms_line(summary: dict) -> str:
    rooms, server, first = summary["rooms"], summary["server"], summary["first_frame_ms"]
    return (
        f"{rooms['opened']}/{rooms['rooms']} rooms joined, rss before {_kib(server['rss_kb_before'])} "
        f"peak {_kib(server['rss_kb_peak'])} after {_kib(server['rss_kb_after'])}, idle "
        f"{summary['idle']['server_cpu_pct'] if summary['idle']['server_cpu_pct'] is not None else '-'}% of a core, "
        f"first frame p50 {_ms(first['p50'])} p99 {_ms(first['p99'])}, server {server['us_per_join'] or '-'} us/join"
    )


SCENARIOS.update({Org.name: Org, ManyRooms.name: ManyRooms})
HUMAN_LINES.update({Org.name: org_line, ManyRooms.name: many_rooms_line})

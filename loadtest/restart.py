"""A restart under load: SIGTERM a daphne holding many sockets of one room, start it again, count who comes back.

    python -m loadtest.restart [--sockets 1000] [--users 200] [--messages 20] [--layer core] [--database postgres]

On a throwaway stack (loadtest.stack). Each simulated tab reconnects as the htmx ws extension does: after close
code 1006, 1011, 1012 or 1013, with its full-jitter backoff (a random wait up to 1, 2, 4 ... 64 s). Messages sent
before the restart must be in every tab's log afterwards (nothing lost) exactly once (nothing twice); one sent
after it must reach every tab once. Prints one JSON line and a human line.

    python -m loadtest.restart --rolling [--processes 3] [--sockets 500] [--message-rate 10] [organisation's shape]

A rolling restart under an organisation's load: --processes daphne processes behind nginx, tabs of a seeded
organisation open through it (rooms, direct conversations, directories), messages flowing, and each process in turn
SIGTERMed, started again and waited for until it serves. Every message sent must be stored once or refused with an
error the page shows, and every stored one shown once in each tab of its conversation after the reconnects
(loadtest/README.md, "A rolling restart").
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import re
import secrets
import sys
import time
from collections import Counter

import aiohttp

from loadtest.client import (
    DEFAULT_PASSWORD,
    Account,
    Target,
    close_all,
    describe_error,
    htmx_frame,
    htmx_frame_at,
    loopback_target,
    new_session,
    open_socket,
    open_socket_at,
    percentiles_ms,
    raise_fd_limit,
    sign_in_many,
)
from loadtest.org import upstream_of
from loadtest.scenarios import error_text
from loadtest.seed import org_options
from loadtest.stack import Stack, running

RECONNECT_CODES = {1006, 1011, 1012, 1013}
MESSAGE_ID_RE = re.compile(r'<article id="message-(\d+)"')
ROOM = "restartroom"


class Tab:
    """One browser tab: a socket that reconnects like htmx's, and the messages its page shows."""

    def __init__(self, account: Account, target: Target, session: aiohttp.ClientSession) -> None:
        self.account, self.target, self.session = account, target, session
        self.shown: list[int] = []  # message ids of the last whole log, then the live ones after it
        self.logs = 0
        self.closes: list[int | None] = []
        self.logged = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.stopping = False

    async def run(self) -> None:
        retry = 0
        while not self.stopping:
            try:
                self.ws = await open_socket(self.session, self.target, ROOM, self.account, timeout=15)
            except (aiohttp.ClientError, TimeoutError, OSError):
                code = 1006  # a refused handshake, as the browser sees it
            else:
                retry = 0
                async for message in self.ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        self.on_text(message.data)
                code = self.ws.close_code
            self.closes.append(code)
            if self.stopping or code not in RECONNECT_CODES:
                return
            await asyncio.sleep(random.random() * 2 ** min(retry, 6))
            retry += 1

    def on_text(self, data: str) -> None:
        ids = [int(found) for found in MESSAGE_ID_RE.findall(data)]
        if 'id="messages"' in data:  # the whole recent log, replacing what the page showed
            self.shown = ids
            self.logs += 1
            self.logged.set()
        else:
            self.shown.extend(ids)


async def restart(args: argparse.Namespace) -> dict:
    raise_fd_limit()
    extra = dict(item.split("=", 1) for item in args.env)
    with running(1, args.layer, args.database, {"CHAT_RATE_LIMIT_MESSAGES": "100000", **extra}) as stack:
        server = stack.servers[0]
        target = loopback_target(stack.urls[0])
        async with new_session() as session:
            names = [f"restart{i}" for i in range(args.users)]
            report = await sign_in_many(session, target, names, DEFAULT_PASSWORD, concurrency=10)
            accounts = [report.accounts[name] for name in names if name in report.accounts]
            tabs = [Tab(accounts[i % len(accounts)], target, session) for i in range(args.sockets)]
            tasks = []
            for start in range(0, len(tabs), 100):  # 100 opening at a time
                batch = tabs[start : start + 100]
                tasks += [asyncio.create_task(tab.run()) for tab in batch]
                await asyncio.wait_for(asyncio.gather(*(tab.logged.wait() for tab in batch)), 60)
            sender = tabs[0]
            for i in range(args.messages):
                await sender.ws.send_str(htmx_frame(f"before the restart {i}", target, ROOM))
                await asyncio.sleep(0.05)
            await asyncio.sleep(2)
            before = [set(tab.shown) for tab in tabs]
            for tab in tabs:
                tab.logged.clear()

            stopped_at = time.monotonic()
            exit_code = server.stop()
            server.start()
            started_at = time.monotonic()
            back_ns: list[int] = []

            async def back(tab: Tab) -> None:
                await tab.logged.wait()
                back_ns.append(int((time.monotonic() - started_at) * 1e9))

            with contextlib.suppress(TimeoutError):  # who did not come back is counted below
                await asyncio.wait_for(asyncio.gather(*(back(tab) for tab in tabs)), args.wait)
            await asyncio.sleep(1)
            sent_before = set().union(*before)
            came_back = [(tab, seen) for tab, seen in zip(tabs, before, strict=True) if tab.logs > 1]
            lost = sum(1 for tab, seen in came_back if not seen <= set(tab.shown))
            twice = sum(1 for tab in tabs if len(tab.shown) != len(set(tab.shown)))
            live = next(tab for tab in tabs if tab.ws is not None and not tab.ws.closed)
            await live.ws.send_str(htmx_frame("after the restart", target, ROOM))
            await asyncio.sleep(3)
            newest = max((max(tab.shown, default=0) for tab in tabs), default=0)
            reached = sum(1 for tab in tabs if tab.shown.count(newest) == 1)
            for tab in tabs:
                tab.stopping = True
                if tab.ws is not None:
                    await tab.ws.close()
            for task in tasks:
                task.cancel()
            close_codes: dict[str, int] = {}
            for tab in tabs:
                for code in tab.closes[:1]:
                    close_codes[str(code)] = close_codes.get(str(code), 0) + 1
            return {
                "sockets": len(tabs),
                "users": len(accounts),
                "messages_before": len(sent_before),
                "sigterm_exit_code": exit_code,
                "stop_s": round(started_at - stopped_at, 2),
                "first_close_codes": close_codes,
                "reconnected": len(back_ns),
                "reconnect_ms": percentiles_ms(back_ns),
                "tabs_missing_a_message": lost,
                "tabs_showing_a_message_twice": twice,
                "message_after_restart_reached": reached,
            }


# A rolling restart of N processes behind nginx under an organisation's load (--rolling).

SNAPSHOT_MARK = 'id="messages"'
FORM_MARK = 'id="message-form"'
TOKEN_RE_TEXT = r"rr:{run}:(\d+)\b"


class OrgTab:
    """A browser tab of the organisation behind nginx: its page's log as htmx keeps it, its message box, and the
    connections it went through (reconnecting like htmx's ws extension)."""

    def __init__(self, index: int, user: int, conversation: int, path: str, page_url: str, account: Account) -> None:
        self.index, self.user, self.conversation = index, user, conversation
        self.path, self.page_url, self.account = path, page_url, account
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.view: list[int] = []  # message ids the page shows: the last whole log, then the live ones after it
        self.seen: set[int] = set()  # every message id this tab ever showed
        self.baseline: int | None = None  # the newest id of its first log: messages after it are owed
        self.upstream: str | None = None
        self.upstreams: list[str | None] = []
        self.ready = asyncio.Event()  # the current connection has its page's state
        self.closes: list[int | None] = []
        self.closed_at: float | None = None
        self.reconnect_ns: list[int] = []
        self.box: int | None = None  # the message (seq) in the box, sent and not yet answered, or waiting to go
        self.box_sent_on = -1  # the connection number it went out on (-1: not sent on the current one)
        self.connection = 0
        self.stopping = False

    @property
    def is_directory(self) -> bool:
        return self.conversation < 0


class Rolling:
    """Tabs of an organisation open through nginx, messages flowing, while each process is restarted in turn."""

    def __init__(self, args: argparse.Namespace, stack, plan, target: Target, session) -> None:
        self.args, self.stack, self.plan, self.target, self.session = args, stack, plan, target, session
        self.random = random.Random(args.seed)
        self.run_id = secrets.token_hex(3)
        self.token_re = re.compile(TOKEN_RE_TEXT.format(run=self.run_id))
        self.by_user = plan.by_user()
        self.tabs: list[OrgTab] = []
        self.by_conversation: dict[int, list[OrgTab]] = {}
        self.cumulative: list[int] = []
        total = 0
        for item in plan.conversations:
            total += len(item.members)
            self.cumulative.append(total)
        self.message_conversation: list[int] = []
        self.message_sender: list[int] = []
        self.message_owed: list[list[OrgTab]] = []
        self.sends = 0  # frames written, resends included
        self.started = time.monotonic()
        # Each message's frames: (s since the start, the process nginx named for the connection it went out on).
        self.writes: dict[int, list[tuple[float, str | None]]] = {}
        self.resent = 0
        self.acked: set[int] = set()
        self.refused: dict[int, str] = {}
        self.failures: Counter[str] = Counter()
        self.skipped = 0
        self.restarting = False

    # Tabs

    def path_of(self, conversation: int, user: int) -> tuple[str, str]:
        if conversation < 0:
            return "/ws/directory/", "/"
        item = self.plan.conversations[conversation]
        if item.is_direct:
            peer = self.plan.users[item.members[1] if item.members[0] == user else item.members[0]]
            return f"/ws/dm/{peer}/", f"/dm/{peer}/"
        return f"/ws/chat/{item.name}/", f"/chat/{item.name}/"

    def make_tabs(self, accounts: list[Account]) -> None:
        users = len(self.plan.users)
        for index in range(self.args.sockets):
            user = index % users
            conversations = self.by_user[user]
            if not conversations or self.random.random() < self.args.directory_share:
                conversation = -1
            else:
                conversation = self.random.choice(conversations)
            path, page = self.path_of(conversation, user)
            tab = OrgTab(index, user, conversation, path, self.target.base + page, accounts[user])
            self.tabs.append(tab)
            self.by_conversation.setdefault(conversation, []).append(tab)

    async def run_tab(self, tab: OrgTab, gate: asyncio.Semaphore) -> None:
        retry = 0
        first = True
        while not tab.stopping:
            code: int | None
            tab.ws = None
            try:
                async with gate if first else contextlib.nullcontext():
                    tab.ws = await open_socket_at(self.session, self.target, tab.path, tab.account, 15)
                    tab.upstream = upstream_of(tab.ws)
                    tab.connection += 1
                    # The page's state: the log (a conversation) or the first frame (a directory).
                    async with asyncio.timeout(self.args.connect_timeout):
                        while True:
                            message = await tab.ws.receive()
                            if message.type is not aiohttp.WSMsgType.TEXT:
                                raise ConnectionResetError("closed before the page's state")
                            if tab.is_directory or SNAPSHOT_MARK in message.data:
                                break
                    self.on_snapshot(tab, message.data)
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                self.failures[describe_error(error)] += 1
                code = tab.ws.close_code if tab.ws is not None and tab.ws.close_code else 1006
                if tab.ws is not None:
                    await tab.ws.close()
            else:
                first, retry = False, 0
                async for message in tab.ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        self.on_text(tab, message.data)
                code = tab.ws.close_code
            tab.ready.clear()
            if tab.stopping:
                return
            if tab.closed_at is None:
                tab.closed_at = time.monotonic()
            tab.closes.append(code)
            if code not in RECONNECT_CODES:
                return
            await asyncio.sleep(self.random.random() * 2 ** min(retry, 6))  # htmx's full-jitter backoff
            retry += 1

    def on_snapshot(self, tab: OrgTab, data: str) -> None:
        ids = [int(found) for found in MESSAGE_ID_RE.findall(data)]
        tab.view = ids
        tab.seen.update(ids)
        if tab.baseline is None:
            tab.baseline = max(ids, default=0)
        tab.upstreams.append(tab.upstream)
        if tab.closed_at is not None:
            tab.reconnect_ns.append(int((time.monotonic() - tab.closed_at) * 1e9))
            tab.closed_at = None
        tab.ready.set()
        if tab.box is not None and tab.box_sent_on != tab.connection:
            # Still in the box (not answered before the connection ended, or typed while it was down): the person
            # presses Send again now that the page is back.
            self.resent += 1
            self.write(tab, tab.box)

    def on_text(self, tab: OrgTab, data: str) -> None:
        if SNAPSHOT_MARK in data:  # a whole log again (after an outage of the layer): it replaces the page's
            tab.view = []
        ids = [int(found) for found in MESSAGE_ID_RE.findall(data)]
        tab.view.extend(ids)
        tab.seen.update(ids)
        if FORM_MARK in data and tab.box is not None and tab.box_sent_on == tab.connection:
            refused = self.token_re.search(data[data.index(FORM_MARK) :])
            if refused is not None and int(refused[1]) == tab.box:
                self.refused[tab.box] = error_text(data)
            else:
                self.acked.add(tab.box)
            tab.box = None

    def write(self, tab: OrgTab, seq: int) -> None:
        """Send the box's message on the tab's current connection (as htmx's ws-send does)."""
        tab.box_sent_on = tab.connection
        self.sends += 1
        self.writes.setdefault(seq, []).append((round(time.monotonic() - self.started, 2), tab.upstream))
        # The form's key stays with the text in the box: pressing Send again sends both again, as a page does.
        key = f"{self.run_id:0>16}{seq:016x}"
        frame = htmx_frame_at(f"rr:{self.run_id}:{seq} from tab {tab.index}", tab.page_url, key=key)

        async def send() -> None:
            try:
                await tab.ws.send_str(frame)
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                tab.box_sent_on = -1  # never left: goes again once the page is back

        asyncio.get_running_loop().create_task(send())

    # Messages

    def send_one(self) -> None:
        for _ in range(200):
            value = self.random.random() * self.cumulative[-1]
            conversation = min(len(self.cumulative) - 1, bisect.bisect_right(self.cumulative, value))
            open_tabs = [tab for tab in self.by_conversation.get(conversation, []) if tab.ready.is_set()]
            senders = [tab for tab in open_tabs if tab.box is None]
            if not senders:
                continue
            tab = self.random.choice(senders)
            seq = len(self.message_conversation)
            self.message_conversation.append(conversation)
            self.message_sender.append(tab.index)
            self.message_owed.append(open_tabs)
            tab.box = seq
            self.write(tab, seq)
            return
        self.skipped += 1

    async def send_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.args.message_rate
        t0 = loop.time()
        index = 0
        while not stop.is_set():
            delay = t0 + index * period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not stop.is_set():
                self.send_one()
            index += 1

    def tabs_on(self, upstream: str) -> int:
        return sum(1 for tab in self.tabs if tab.ready.is_set() and tab.upstream == upstream)

    async def execute(self) -> dict:
        args = self.args
        accounts = [Account(name, {"sessionid": self.plan.sessions[name]}, "seeded") for name in self.plan.users]
        self.make_tabs(accounts)
        gate = asyncio.Semaphore(args.connect_concurrency)
        tasks = [asyncio.create_task(self.run_tab(tab, gate)) for tab in self.tabs]
        opened_at = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(tab.ready.wait() for tab in self.tabs)), args.wait)
        initial_opened = sum(1 for tab in self.tabs if tab.ready.is_set())
        connect_s = time.monotonic() - opened_at
        upstreams = self.stack.upstreams()
        spread_before = {name: self.tabs_on(name) for name in upstreams}

        stop = asyncio.Event()
        sender = asyncio.create_task(self.send_loop(stop))
        await asyncio.sleep(args.warmup)
        restarts = []
        for index in range(len(self.stack.servers)):
            upstream = f"127.0.0.1:{self.stack.servers[index].port}"
            held = self.tabs_on(upstream)
            closes_before = sum(len(tab.closes) for tab in self.tabs)
            began = time.monotonic()
            record = await asyncio.to_thread(self.stack.restart, index)
            record.update(upstream=upstream, tabs_held=held, seconds=round(time.monotonic() - began, 2))
            record["sigterm_at_s"] = round(began - self.started, 2)
            record["closes"] = sum(len(tab.closes) for tab in self.tabs) - closes_before
            restarts.append(record)
            print(f"restart: process {index} ({upstream}) holding {held} tabs: {record}", file=sys.stderr)
            await asyncio.sleep(args.pause)
        await asyncio.sleep(args.after)
        stop.set()
        await sender
        sent_messages = len(self.message_conversation)

        # Every tab back and every box answered (or refused), within --wait.
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            if all(tab.ready.is_set() for tab in self.tabs) and all(tab.box is None for tab in self.tabs):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # the last live frames
        spread_after = {name: self.tabs_on(name) for name in upstreams}
        back = {tab.index for tab in self.tabs if tab.ready.is_set()}
        not_back = len(self.tabs) - len(back)
        for tab in self.tabs:
            tab.stopping = True
        await close_all([tab.ws for tab in self.tabs if tab.ws is not None])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        stored = self.stored_messages()
        return self.verdict(
            stored,
            back,
            sent_messages,
            {
                "initial_opened": initial_opened,
                "connect_s": round(connect_s, 2),
                "tabs_per_process_before": spread_before,
                "tabs_per_process_after": spread_after,
                "not_back": not_back,
                "restarts": restarts,
            },
        )

    def stored_messages(self) -> dict[int, list[int]]:
        """The messages of this run in the database: each token's message ids."""
        import psycopg

        stored: dict[int, list[int]] = {}
        with psycopg.connect(self.stack.database_url) as connection:
            rows = connection.execute(
                "SELECT id, body FROM chat_message WHERE body LIKE %s ORDER BY id", (f"rr:{self.run_id}:%",)
            ).fetchall()
        for message_id, body in rows:
            found = self.token_re.match(body)
            if found is not None:
                stored.setdefault(int(found[1]), []).append(message_id)
        return stored

    def verdict(self, stored: dict[int, list[int]], back: set[int], sent: int, extra: dict) -> dict:
        stored_once = sum(1 for seq in range(sent) if len(stored.get(seq, [])) == 1)
        stored_twice = sum(1 for seq in range(sent) if len(stored.get(seq, [])) > 1)
        refused = sum(1 for seq in range(sent) if seq in self.refused and not stored.get(seq))
        in_box = {tab.box for tab in self.tabs if tab.box is not None}
        # Neither stored nor refused, and no longer in its box: what nobody would ever know was not sent.
        dropped = sum(
            1 for seq in range(sent) if not stored.get(seq) and seq not in self.refused and seq not in in_box
        )
        # Each conversation's stored messages of this run, by id.
        by_conversation: dict[int, list[int]] = {}
        for seq in range(sent):
            for message_id in stored.get(seq, [])[:1]:
                by_conversation.setdefault(self.message_conversation[seq], []).append(message_id)
        lost = twice = beyond = checked = tabs_missing = tabs_twice = 0
        for tab in self.tabs:
            if tab.is_directory or tab.baseline is None or tab.index not in back:
                continue  # a tab that is not back is counted as such (not_back), its log not checked
            counts = Counter(tab.view)
            doubled = sum(1 for n in counts.values() if n > 1)
            twice += doubled
            tabs_twice += doubled > 0
            oldest = min(tab.view, default=0)
            missing = 0
            for message_id in by_conversation.get(tab.conversation, []):
                if message_id <= tab.baseline:
                    continue
                checked += 1
                if counts[message_id]:
                    continue
                if message_id < oldest:
                    beyond += 1  # scrolled out of the recent log: the page shows it on scrolling back
                else:
                    missing += 1
            lost += missing
            tabs_missing += missing > 0
        owed = delivered = 0
        for seq in range(sent):
            ids = stored.get(seq, [])
            if not ids:
                continue
            for tab in self.message_owed[seq]:
                owed += 1
                delivered += ids[0] in tab.seen
        reconnects = [ns for tab in self.tabs for ns in tab.reconnect_ns]
        close_codes: Counter[str] = Counter(str(code) for tab in self.tabs for code in tab.closes)
        return {
            "run_id": self.run_id,
            "tabs": len(self.tabs),
            "directories": sum(1 for tab in self.tabs if tab.is_directory),
            **extra,
            "close_codes": dict(close_codes),
            "closed_by_server": sum(1 for tab in self.tabs if tab.closes),
            "reconnected": len(reconnects),
            "reconnect_ms": percentiles_ms(reconnects),
            "open_failures": dict(self.failures.most_common(5)),
            "messages": {
                "sent": sent,
                "frames_written": self.sends,
                "sent_again_after_reconnect": self.resent,
                "skipped": self.skipped,
                "stored_once": stored_once,
                "stored_twice": stored_twice,
                "refused_with_an_error": refused,
                "refusals": dict(Counter(self.refused.values()).most_common(3)),
                "still_in_the_box": len(in_box),
                "silently_dropped": dropped,
                # What a message stored twice went through: its ids, and each frame's time and process.
                "stored_twice_detail": [
                    {"seq": seq, "ids": stored[seq], "frames": self.writes.get(seq, [])}
                    for seq in range(sent)
                    if len(stored.get(seq, [])) > 1
                ][:20],
            },
            "logs": {
                "checked": checked,
                "lost": lost,
                "shown_twice": twice,
                "tabs_missing_a_message": tabs_missing,
                "tabs_showing_a_message_twice": tabs_twice,
                "beyond_the_recent_log": beyond,
            },
            "deliveries": {
                "owed": owed,
                "delivered": delivered,
                "ratio": round(delivered / owed, 4) if owed else None,
            },
        }


async def rolling(args: argparse.Namespace, stack: Stack | None = None, plan_path: str | None = None) -> dict:
    """An organisation on --processes daphne processes behind nginx; each restarted in turn under its load.

    On a throwaway stack seeded here, or on `stack` (behind nginx, with messages not limited per user) seeded with the
    organisation at `plan_path`."""
    from loadtest.bench import seed_arguments, seed_stack

    raise_fd_limit()
    if stack is not None:
        return await rolling_on(args, stack, plan_path)
    extra = {"CHAT_RATE_LIMIT_MESSAGES": "100000", **dict(item.split("=", 1) for item in args.env)}
    with running(args.processes, args.layer, args.database, extra, nginx=True) as fresh:
        seeded = seed_stack(fresh, "org", seed_arguments(args.org))
        return await rolling_on(args, fresh, seeded["plan"])


async def rolling_on(args: argparse.Namespace, stack: Stack, plan_path: str) -> dict:
    from loadtest.bench import load_average, machine_speed_ms
    from loadtest.plan import Plan

    plan = Plan.load(plan_path)
    if not plan.sessions:
        raise SystemExit("loadtest.restart --rolling needs the seed's sessions (no --form-sign-in)")
    if stack.front_url is None:
        raise SystemExit("loadtest.restart --rolling needs nginx in front of the processes")
    target = loopback_target(stack.front_url)
    load_before = load_average()
    async with new_session() as session:
        summary = await Rolling(args, stack, plan, target, session).execute()
    return {
        "stack": {**stack.describe(), "processes": len(stack.servers)},
        "organisation": plan.figures(),
        "load_average": {"before": load_before, "after": load_average(), "cpus": os.cpu_count()},
        "machine": {"python_loop_ms": machine_speed_ms()},
        **summary,
    }


def rolling_line(summary: dict) -> str:
    m, logs, d, r = summary["messages"], summary["logs"], summary["deliveries"], summary["reconnect_ms"]
    return (
        f"rolling restart of {summary['stack']['processes']} processes: {summary['reconnected']} reconnects "
        f"(p50 {r['p50']} ms, p99 {r['p99']} ms), {summary['not_back']} tabs not back; {m['sent']} messages: "
        f"{m['stored_once']} stored once, {m['stored_twice']} twice, {m['refused_with_an_error']} refused with an "
        f"error, {m['silently_dropped']} silently dropped, {m['still_in_the_box']} still in a box "
        f"({m['sent_again_after_reconnect']} sent again after a reconnect); logs: {logs['lost']} lost, "
        f"{logs['shown_twice']} shown twice of {logs['checked']} checked; delivery ratio {d['ratio']}"
    )


def rolling_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.restart --rolling", description="A rolling restart under an organisation's load."
    )
    parser.add_argument("--rolling", action="store_true", required=True)
    parser.add_argument("--processes", type=int, default=3, help="daphne processes behind nginx (default: 3)")
    parser.add_argument("--sockets", type=int, default=500, help="tabs, users round robin (default: 500)")
    parser.add_argument("--directory-share", type=float, default=0.1, help="share of directory tabs (default: 0.1)")
    parser.add_argument("--message-rate", type=float, default=10.0, help="messages a second in all (default: 10)")
    parser.add_argument("--warmup", type=float, default=5.0, help="s of messages before the first restart")
    parser.add_argument("--pause", type=float, default=5.0, help="s after a process serves again before the next")
    parser.add_argument("--after", type=float, default=5.0, help="s of messages after the last restart")
    parser.add_argument("--connect-concurrency", type=int, default=10, help="first opens in flight (default: 10)")
    parser.add_argument("--connect-timeout", type=float, default=60.0, help="s for a tab's page state to come")
    parser.add_argument("--wait", type=float, default=300.0, help="s for every tab to open, and to come back")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--layer", choices=["core", "pubsub"], default="core")
    parser.add_argument("--database", choices=["postgres"], default="postgres")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    org_options(parser)
    return parser


def rolling_arguments(argv: list[str]) -> argparse.Namespace:
    """The options of --rolling; `org` holds the organisation's shape alone, for loadtest.seed."""
    args = rolling_parser().parse_args(argv)
    shape = argparse.ArgumentParser(add_help=False)
    org_options(shape)
    args.org, _ = shape.parse_known_args(argv)
    return args


def rolling_main(argv: list[str]) -> int:
    summary = asyncio.run(rolling(rolling_arguments(argv)))
    print(json.dumps({"command": "python -m loadtest.restart " + " ".join(argv), **summary}), flush=True)
    print(rolling_line(summary), file=sys.stderr)
    m, logs = summary["messages"], summary["logs"]
    bad = m["stored_twice"] + m["silently_dropped"] + m["still_in_the_box"] + logs["lost"] + logs["shown_twice"]
    return 0 if not bad and not summary["not_back"] else 3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--rolling" in argv:
        return rolling_main(argv)
    parser = argparse.ArgumentParser(prog="python -m loadtest.restart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20, help="messages sent before the restart")
    parser.add_argument("--wait", type=float, default=150.0, help="s to wait for every tab to come back")
    parser.add_argument("--layer", choices=["core", "pubsub", "memory"], default="core")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    summary = asyncio.run(restart(args))
    print(json.dumps({"command": "python -m loadtest.restart " + " ".join(argv), **summary}))
    print(
        f"restart: {summary['reconnected']}/{summary['sockets']} back (p50 {summary['reconnect_ms'].get('p50')} ms, "
        f"p99 {summary['reconnect_ms'].get('p99')} ms after the new process started), "
        f"{summary['tabs_missing_a_message']} tabs missing a message, {summary['tabs_showing_a_message_twice']} "
        f"showing one twice, the next message reached {summary['message_after_restart_reached']}",
        file=sys.stderr,
    )
    ok = summary["reconnected"] == summary["sockets"] and not summary["tabs_missing_a_message"]
    return 0 if ok and not summary["tabs_showing_a_message_twice"] else 3


if __name__ == "__main__":
    sys.exit(main())

"""A restart under load: SIGTERM a daphne holding many sockets of one room, start it again, count who comes back.

    python -m loadtest.restart [--sockets 1000] [--users 200] [--messages 20] [--layer core] [--database postgres]

On a throwaway stack (loadtest.stack). Each simulated tab reconnects as the htmx ws extension does: after close
code 1006, 1011, 1012 or 1013, with its full-jitter backoff (a random wait up to 1, 2, 4 ... 64 s). Messages sent
before the restart must be in every tab's log afterwards (nothing lost) exactly once (nothing twice); one sent
after it must reach every tab once. Prints one JSON line and a human line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import time

import aiohttp

from loadtest.client import (
    DEFAULT_PASSWORD,
    Account,
    Target,
    htmx_frame,
    loopback_target,
    new_session,
    open_socket,
    percentiles_ms,
    raise_fd_limit,
    sign_in_many,
)
from loadtest.stack import running

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


def main(argv: list[str] | None = None) -> int:
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
    print(json.dumps({"command": "python -m loadtest.restart " + " ".join(argv or sys.argv[1:]), **summary}))
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

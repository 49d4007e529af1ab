"""Command line: python -m loadtest {fanout,ramp,churn,org,many-rooms} [options]; JSON on stdout, a line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from loadtest.client import DEFAULT_PASSWORD, LoadTestError
from loadtest.scenarios import human_line, run


def _common(parser: argparse.ArgumentParser) -> None:
    """Options every scenario takes."""
    group = parser.add_argument_group("target and setup")
    group.add_argument(
        "--url",
        action="append",
        default=None,
        help="server base URL, loopback hosts only (default: http://127.0.0.1:8000); repeat for several server "
        "processes: sockets are spread over them round robin",
    )
    group.add_argument("--prefix", default="load", help="user names are PREFIX0, PREFIX1, ... (default: load)")
    group.add_argument("--password", default=DEFAULT_PASSWORD, help="password of every load user")
    group.add_argument("--room-prefix", default="loadroom", help="rooms are ROOM_PREFIX0, ... (default: loadroom)")
    group.add_argument(
        "--server-pid", dest="server_pids", type=int, action="append", default=[], help="server pid to sample (repeat)"
    )
    group.add_argument(
        "--redis-pid", dest="redis_pids", type=int, action="append", default=[], help="redis-server pid to sample"
    )
    group.add_argument("--login-concurrency", type=int, default=20, help="sign-ins in flight (default: 20)")
    group.add_argument("--connect-concurrency", type=int, default=50, help="socket opens in flight (default: 50)")
    group.add_argument(
        "--connect-timeout", type=float, default=15.0, help="s to open a socket and see its first frame"
    )
    group.add_argument("--http-timeout", type=float, default=120.0, help="s for one HTTP request (default: 120)")
    group.add_argument("--session-cookie", default="sessionid", help="the session cookie's name (default: sessionid)")
    group.add_argument("--timeout", type=float, default=None, help="hard bound on the whole run, s (default: derived)")
    group.add_argument("--seed", type=int, default=None, help="seed for the senders' random phases")
    group.add_argument(
        "--bare",
        action="store_true",
        help="the target is the bare reference server (python -m loadtest.reference): no sign-in, no room pages",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per scenario."""
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    sub = parser.add_subparsers(dest="scenario", required=True, metavar="{fanout,ramp,churn,org,many-rooms}")

    fanout = sub.add_parser("fanout", help="R rooms x C clients, S senders per room; delivery latency and ratio")
    fanout.add_argument("--rooms", type=int, default=1, help="rooms (default: 1)")
    fanout.add_argument("--clients", type=int, default=50, help="clients per room, senders included (default: 50)")
    fanout.add_argument("--senders", type=int, default=5, help="senders per room (default: 5)")
    fanout.add_argument("--rate", type=float, default=0.5, help="messages/s per sender; keep under 1 (default: 0.5)")
    fanout.add_argument("--duration", type=float, default=10.0, help="seconds of sending (default: 10)")
    fanout.add_argument("--drain", type=float, default=10.0, help="s to wait for late deliveries (default: 10)")
    fanout.add_argument("--settle", type=float, default=1.0, help="min s between the last join and the first send")
    fanout.add_argument(
        "--settle-max", type=float, default=60.0, help="max s to wait for the sockets to go quiet (default: 60)"
    )
    fanout.add_argument("--users", type=int, default=None, help="distinct users (default: one per client)")
    fanout.add_argument("--padding", type=int, default=0, help="extra characters per message (default: 0)")
    _common(fanout)

    ramp = sub.add_parser("ramp", help="open idle sockets up to a cap, hold them; connect latency and memory")
    ramp.add_argument("--sockets", type=int, default=1000, help="sockets to open (default: 1000)")
    ramp.add_argument("--connect-rate", type=float, default=100.0, help="socket opens started per s (default: 100)")
    ramp.add_argument("--hold", type=float, default=10.0, help="s to hold them open at the cap (default: 10)")
    ramp.add_argument("--rooms", type=int, default=50, help="rooms the sockets spread over (default: 50)")
    ramp.add_argument("--users", type=int, default=None, help="users holding the sockets (default: min(sockets, 100))")
    _common(ramp)

    churn = sub.add_parser("churn", help="clients join and leave rooms repeatedly; joins/s and join latency")
    churn.add_argument("--clients", type=int, default=10, help="concurrent join-leave loops (default: 10)")
    churn.add_argument("--duration", type=float, default=10.0, help="seconds of churn (default: 10)")
    churn.add_argument("--rooms", type=int, default=1, help="rooms the loops spread over (default: 1)")
    churn.add_argument("--pause", type=float, default=0.0, help="s each loop waits after leaving (default: 0)")
    _common(churn)

    org = sub.add_parser("org", help="an organisation over a seeded plan: tabs, churn, messages by room size")
    _plan_options(org)
    org.add_argument("--sockets", type=int, default=5000, help="tabs open at once (default: 5000)")
    org.add_argument(
        "--directory-share", type=float, default=0.1, help="share of tabs showing the directory (default: 0.1)"
    )
    org.add_argument("--churn", type=float, default=20.0, help="tabs closed and opened again per s (default: 20)")
    org.add_argument("--message-rate", type=float, default=50.0, help="messages per s in all (default: 50)")
    org.add_argument("--duration", type=float, default=300.0, help="seconds of messages and churn (default: 300)")
    org.add_argument("--drain", type=float, default=15.0, help="s to wait for late deliveries (default: 15)")
    org.add_argument(
        "--user-limit", type=int, default=10, help="the server's messages per user per 10 s, kept under (default: 10)"
    )
    _common(org)

    many = sub.add_parser("many-rooms", help="one socket in each of many seeded rooms: memory, idle CPU, joins")
    _plan_options(many)
    many.add_argument("--after-wait", type=float, default=5.0, help="s after closing before the last sample")
    _common(many)
    return parser


def _plan_options(parser: argparse.ArgumentParser) -> None:
    """Options of the scenarios over a plan of python -m loadtest.seed."""
    group = parser.add_argument_group("plan")
    group.add_argument("--plan", default="", help="the plan file python -m loadtest.seed wrote")
    group.add_argument("--redis-url", default=None, help="the server's Redis (loopback), for its command count")
    group.add_argument("--idle", type=float, default=30.0, help="s of idle sockets to measure (default: 30)")
    group.add_argument("--settle", type=float, default=1.0, help="min s between the last join and what follows")
    group.add_argument(
        "--settle-max", type=float, default=120.0, help="max s to wait for the sockets to go quiet (default: 120)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the scenario; exit 0 when it ran to the end, 2 on bad options or target, 3 on timeout or error."""
    args = vars(build_parser().parse_args(argv))
    scenario = args.pop("scenario")
    args["url"] = args["url"] or "http://127.0.0.1:8000"
    try:
        summary = asyncio.run(run(scenario, **args))
    except LoadTestError as error:
        print(f"loadtest: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return 130
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    print(human_line(summary), file=sys.stderr)
    return 0 if summary["status"] == "ok" else 3


if __name__ == "__main__":
    sys.exit(main())

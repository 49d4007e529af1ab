"""Benchmark: start a throwaway stack, run a load scenario against it, optionally profile the servers.

    python -m loadtest.bench [--processes N [--nginx]] [--layer core|pubsub|memory] [--database postgres|sqlite]
                             [--env NAME=VALUE] [--repeat K] [--profile DIR] [--reference]
                             SCENARIO [scenario options]

The scenario options are those of `python -m loadtest SCENARIO`, without --url, --server-pid and
--redis-pid, which the stack fills in. Each run prints one JSON line (the stack, the machine's load
average before and after, the summary) on stdout and the human line on stderr. With --profile, py-spy
samples every daphne process during the measurement window only (not the sign-ins or the connects)
and writes collapsed stacks (DIR/<scenario>-<run>-<pid>.txt, flamegraph.pl's input) and a summary of
the hottest functions (DIR/<scenario>-<run>-top.txt).

org and many-rooms run over a plan: the organisation's (or the rooms') shape options go to loadtest.seed, which
fills the stack's fresh database before the first run; --plan and --redis-url are the stack's.

With --reference, each run first drives the same scenario against the bare broadcast server of the same stack
(loadtest.reference: Twisted and autobahn, no Django) on this machine, and the record gives each figure of the
chat as a ratio to it, beside both absolute figures and a machine-speed reference (a fixed pure-Python loop),
so that a figure can be compared across machines that differ in speed.

With --nginx, the load goes through an nginx in front of the processes (deploy/nginx.conf's settings, least_conn), as
browsers reach a deployment; the org scenario then also gives figures per process (`per_process` in the record and a
line each on stderr): its CPU per delivered message frame, background duty, RSS, and the joins of the tabs nginx sent
to it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from loadtest.__main__ import build_parser
from loadtest.client import LoadTestError
from loadtest.scenarios import human_line, run
from loadtest.seed import org_options, rooms_options
from loadtest.stack import Stack, running
from tests.support.servers import BASE_DIR, free_port, wait_for_port

PROFILE_RATE = 50  # samples per second: py-spy falls behind at higher rates on a busy 2-core machine


def load_average() -> float:
    """The 1-minute load average: the machine is shared, so every figure carries it."""
    return float(Path("/proc/loadavg").read_text().split()[0])


class Profiler:
    """py-spy on every server process, started at the "before" mark and stopped at the next mark."""

    def __init__(self, stack: Stack, directory: Path, label: str) -> None:
        self.py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(self.py_spy).exists():
            raise LoadTestError("--profile needs py-spy (pip install -r requirements/dev.txt)")
        self.stack, self.directory, self.label = stack, directory, label
        self.processes: list[subprocess.Popen] = []
        self.outputs: list[Path] = []

    def __call__(self, mark: str) -> None:
        """The scenario's observer."""
        if mark == "before":
            self.start()
        elif self.processes:
            self.stop()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for pid in self.stack.daphne_pids:
            output = self.directory / f"{self.label}-{pid}.txt"
            self.outputs.append(output)
            command = [self.py_spy, "record", "-p", str(pid), "-r", str(PROFILE_RATE), "--nonblocking"]
            command += ["--format", "raw", "-o", str(output)]
            self.processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes = []
        top = self.directory / f"{self.label}-top.txt"
        top.write_text(hottest([path for path in self.outputs if path.exists()]))


_SITE_RE = re.compile(r" \((?:/\S*?site-packages/|/usr/lib/python3[.\d]*/|" + re.escape(str(Path.cwd())) + "/)")


def hottest(paths: list[Path], count: int = 40) -> str:
    """The functions holding the most samples, by own time and including callees, from collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            if not stack or not samples.isdigit():
                continue
            frames = [_SITE_RE.sub(" (", frame) for frame in stack.split(";")]
            total += int(samples)
            own[frames[-1]] += int(samples)
            for frame in set(frames):
                inclusive[frame] += int(samples)
    lines = [f"{total} samples from {', '.join(path.name for path in paths)}", "", "own time:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in own.most_common(count)] if total else []
    lines += ["", "including callees:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(count * 2)] if total else []
    return "\n".join(lines) + "\n"


def machine_speed_ms() -> float:
    """Milliseconds for a fixed pure-Python loop (best of 5): this machine's speed, beside every figure."""
    import time

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


@contextlib.contextmanager
def reference_server():
    """loadtest.reference on a free port: (its URL, its pid)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtest.reference", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


# The figures compared with the reference, where the scenario has them: (name, path in the summary).
COMPARED = [
    ("server_us_per_frame", ("server", "us_per_frame")),
    ("latency_p50_ms", ("latency_ms", "p50")),
    ("latency_p99_ms", ("latency_ms", "p99")),
    ("connect_p99_ms", ("connect", "latency_ms", "p99")),
    ("ramp_connect_p99_ms", ("connect_ms", "p99")),
    ("kb_per_socket", ("server", "kb_per_socket")),
    ("us_per_socket_opened", ("server", "us_per_socket_opened")),
    # org and many-rooms
    ("delivery_ratio", ("deliveries", "ratio")),
    ("rss_kb_peak", ("server", "rss_kb_peak")),
    ("rss_kb_end", ("server", "rss_kb_end")),
    ("idle_cpu_pct", ("idle", "server_cpu_pct")),
    ("initial_join_p99_ms", ("connect_phase", "first_frame_ms", "p99")),
    ("initial_us_per_join", ("connect_phase", "us_per_join")),
    ("churn_join_p99_ms", ("churn", "first_frame_ms", "p99")),
    ("first_frame_p50_ms", ("first_frame_ms", "p50")),
    ("first_frame_p99_ms", ("first_frame_ms", "p99")),
    ("us_per_join", ("server", "us_per_join")),
    ("rss_kb_after", ("server", "rss_kb_after")),
]
# Scenarios over a plan that loadtest.seed writes into the stack's database first: its sub-command.
SEEDED = {"org": "org", "many-rooms": "rooms"}


def figure(summary: dict, path: tuple[str, ...]) -> float | None:
    for key in path:
        summary = summary.get(key) if isinstance(summary, dict) else None
    return summary if isinstance(summary, int | float) else None


def compared(ours: dict, reference: dict) -> dict:
    """Each compared figure: the chat's, the reference's, and their ratio."""
    result = {}
    for name, path in COMPARED:
        mine, floor = figure(ours, path), figure(reference, path)
        if mine is None and floor is None:
            continue
        ratio = round(mine / floor, 2) if mine is not None and floor else None
        result[name] = {"chat": mine, "reference": floor, "ratio": ratio}
    return result


def build_bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=1, help="daphne processes (default: 1)")
    parser.add_argument("--layer", choices=["core", "pubsub", "memory"], default="core", help="channel layer")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres", help="database")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra server setting")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the scenario on the same stack")
    parser.add_argument(
        "--nginx", action="store_true", help="the load through nginx in front of the processes (one address)"
    )
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR", help="py-spy the measurement window")
    parser.add_argument(
        "--reference", action="store_true", help="also run the scenario against loadtest.reference; report ratios"
    )
    parser.add_argument("scenario", choices=["fanout", "ramp", "churn", "org", "many-rooms"])
    parser.add_argument("options", nargs=argparse.REMAINDER, help="options of the scenario")
    return parser


def per_process(stack: Stack, summary: dict) -> list[dict]:
    """The scenario's figures per server process, joined with what nginx said of each socket (its upstream)."""
    processes = summary.get("per_process") or []
    by_upstream = summary.get("by_upstream") or {}
    index_of = stack.upstreams()
    rows = []
    for index, entry in enumerate(processes):
        upstream = next((name for name, at in index_of.items() if at == index), None)
        seen = by_upstream.get(upstream, {}) if upstream else {}
        delivered = seen.get("delivered")
        run_cpu = entry.get("run_cpu_s")
        rows.append(
            {
                "index": index,
                "upstream": upstream,
                **entry,
                "initial_opened": seen.get("initial_opened"),
                "churn_opened": seen.get("churn_opened"),
                "initial_join_p99_ms": (seen.get("initial_first_frame_ms") or {}).get("p99"),
                "churn_join_p99_ms": (seen.get("churn_first_frame_ms") or {}).get("p99"),
                "delivered": delivered,
                "us_per_delivered_frame": round(run_cpu * 1e6 / delivered, 1) if run_cpu and delivered else None,
            }
        )
    return rows


def per_process_line(row: dict) -> str:
    def mib(value: int | None) -> str:
        return "-" if value is None else f"{value / 1024:.0f} MiB"

    return (
        f"process {row['index']} (pid {row['pid']}, {row['upstream'] or '-'}): {row['initial_opened']} tabs at first "
        f"+ {row['churn_opened']} reopened, join p99 {row['initial_join_p99_ms']} ms (reopened "
        f"{row['churn_join_p99_ms']} ms), {row['delivered']} delivered, {row['us_per_delivered_frame']} us/frame "
        f"(cpu {row.get('run_cpu_s')} s), idle {row['idle_cpu_pct']}% of a core, rss {mib(row['rss_kb_connected'])} "
        f"connected, peak {mib(row['rss_kb_peak'])}, end {mib(row['rss_kb_end'])}"
    )


def seed_stack(stack: Stack, kind: str, seed_argv: list[str]) -> dict:
    """Seed the stack's database (loadtest.seed in the servers' environment); its JSON line, with the plan's path."""
    plan = str(Path(stack.log_dir) / "plan.json")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **stack.env}
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.seed", kind, *seed_argv, "--out", plan],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise LoadTestError(f"loadtest.seed failed: {result.stderr[-2000:]}")
    print(result.stderr.strip(), file=sys.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def seed_arguments(namespace: argparse.Namespace) -> list[str]:
    """The seed's options back as a command line."""
    argv = []
    for name, value in vars(namespace).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


async def bench(args: argparse.Namespace, stack: Stack, options: dict, seed_argv: list[str] | None = None) -> int:
    failures = 0
    seeded = None
    if args.scenario in SEEDED:
        seeded = seed_stack(stack, SEEDED[args.scenario], seed_argv or [])
        options = {**options, "plan": seeded["plan"]}
    for index in range(args.repeat):
        label = f"{args.scenario}-{index}"
        profiler = Profiler(stack, args.profile, label) if args.profile else None
        reference = None
        if args.reference:
            with reference_server() as (url, pid):
                reference = await run(args.scenario, url=url, server_pids=[pid], **{**options, "bare": True})
        load_before = load_average()
        extra = {"redis_url": stack.env["REDIS_URL"] or None} if seeded is not None else {}
        summary = await run(
            args.scenario,
            observer=profiler,
            url=stack.client_urls,
            server_pids=stack.daphne_pids,
            redis_pids=[stack.redis_pid] if stack.redis_pid else [],
            **options,
            **extra,
        )
        if profiler is not None and profiler.processes:
            profiler.stop()
        record = {
            "stack": {**stack.describe(), "processes": len(stack.urls), "database": args.database},
            "per_process": per_process(stack, summary) if "per_process" in summary else None,
            "load_average": {"before": load_before, "after": load_average(), "cpus": os.cpu_count()},
            "summary": summary,
            "machine": {"python_loop_ms": machine_speed_ms()},
            "command": "python -m loadtest.bench " + " ".join(sys.argv[1:]),
        }
        if seeded is not None:
            record["seed"] = seeded
        if reference is not None:
            record["reference"] = reference
            record["compared"] = compared(summary, reference)
        print(json.dumps(record), flush=True)
        tag = f"[{label} {record['stack']['layer']} x{len(stack.urls)} load {load_before}]"
        print(tag, human_line(summary), file=sys.stderr)
        for row in record["per_process"] or []:
            print(f"[{label}] {per_process_line(row)}", file=sys.stderr)
        if reference is not None:
            print(f"[{label} reference] {human_line(reference)}", file=sys.stderr)
            ratios = ", ".join(
                f"{name} {item['chat']} / {item['reference']} = {item['ratio']}x"
                for name, item in record["compared"].items()
            )
            speed = record["machine"]["python_loop_ms"]
            print(f"[{label} compared, python loop {speed} ms] {ratios}", file=sys.stderr)
        failures += summary["status"] != "ok"
    return 3 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = build_bench_parser().parse_args(argv)
    options, seed_argv = args.options, None
    if args.scenario in SEEDED:
        # The shape goes to loadtest.seed, the rest to the scenario.
        seed_parser = argparse.ArgumentParser(prog=f"python -m loadtest.bench {args.scenario}", add_help=False)
        (org_options if args.scenario == "org" else rooms_options)(seed_parser)
        seed_namespace, options = seed_parser.parse_known_args(options)
        seed_argv = seed_arguments(seed_namespace)
    scenario_args = vars(build_parser().parse_args([args.scenario, *options]))
    scenario_args.pop("scenario")
    for name in ("url", "server_pids", "redis_pids", "plan", "redis_url"):
        if scenario_args.pop(name, None):
            raise SystemExit(f"loadtest.bench: the stack sets {name}; leave it out")
    extra = dict(item.split("=", 1) for item in args.env)
    # Stopped with SIGTERM (a run in the background ignores SIGINT), the stack still stops and drops its database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with running(args.processes, args.layer, args.database, extra, nginx=args.nginx) as stack:
        try:
            return asyncio.run(bench(args, stack, scenario_args, seed_argv))
        except LoadTestError as error:
            print(f"loadtest.bench: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())

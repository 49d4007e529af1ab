"""The organisation workload at a tiny size against a real daphne: every tab opens, every message reaches every tab
open in its conversation once; the many-rooms measurement joins every room. Counts only, never a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest import LoadTestError, run
from tests.support.servers import BASE_DIR, DaphneServer, migrate

# 30 users in 20 rooms and their direct conversations, 60 tabs, 2 messages and 2 tabs replaced a second for 20 s.
ORG = {"sockets": 60, "churn": 2.0, "message_rate": 2.0, "duration": 20.0, "idle": 1.0, "timeout": 180.0, "seed": 7}


def seed(env: dict[str, str], *argv: str) -> dict:
    """python -m loadtest.seed in the server's environment; its JSON line."""
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.seed", *argv],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaphneServer, Path, Path]]:
    """A production-like daphne (DEBUG off, in-memory layer) on a fresh SQLite database holding both plans."""
    base = tmp_path_factory.mktemp("loadtest-org")
    env = {
        "DATABASE_URL": f"sqlite:///{base}/db.sqlite3",
        "SECRET_KEY": "x",
        "DEBUG": "0",
        "ACCOUNT_RATE_LIMITS": "off",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": "",
    }
    migrate(env)
    org_plan, rooms_plan = base / "org.json", base / "rooms.json"
    seed(env, "org", "--users", "30", "--rooms", "20", "--conversations", "8", "--out", str(org_plan))
    # These users sign in through the login form (the path for a plan without sessions).
    seed(env, "rooms", "--rooms", "20", "--messages", "5", "--users", "3", "--form-sign-in", "--out", str(rooms_plan))
    daphne = DaphneServer(env=env, log_path=base / "daphne.log").start()
    try:
        yield daphne, org_plan, rooms_plan
    finally:
        time.sleep(1)  # as in test_loadtest_smoke: let the last disconnects finish before the SIGTERM
        daphne.stop()


def explain(summary: dict, server: DaphneServer) -> str:
    log = Path(server.log_path).read_text(errors="replace")[-3000:] if server.log_path else ""
    return json.dumps(summary, indent=1)[:8000] + "\n--- daphne log tail ---\n" + log


@pytest.mark.system
async def test_org_opens_every_tab_and_delivers_every_message_to_every_open_tab_once(seeded) -> None:
    server, plan, _ = seeded

    summary = await run("org", url=server.url, server_pids=[server.process.pid], plan=str(plan), **ORG)

    assert summary["status"] == "ok", explain(summary, server)
    assert summary["organisation"]["users"] == 30, explain(summary, server)
    assert summary["organisation"]["rooms"] == 20, explain(summary, server)
    tabs = summary["tabs"]
    assert tabs["initial"] == 60, explain(summary, server)
    assert tabs["initial_opened"] == 60, explain(summary, server)
    assert tabs["initial_directories"] > 0, explain(summary, server)
    assert tabs["churn_closed"] == 40, explain(summary, server)
    assert tabs["churn_attempted"] == 40, explain(summary, server)
    assert tabs["churn_opened"] == 40, explain(summary, server)
    assert tabs["failed"] == 0, explain(summary, server)
    assert tabs["closed_by_server"] == 0, explain(summary, server)
    assert summary["messages"]["sent"] == 40, explain(summary, server)
    assert summary["messages"]["send_failures"] == 0, explain(summary, server)
    deliveries = summary["deliveries"]
    assert deliveries["delivered"] > 0, explain(summary, server)
    assert deliveries["delivered"] == deliveries["expected_open"], explain(summary, server)
    assert deliveries["ratio"] == 1.0, explain(summary, server)
    assert deliveries["missing"] == 0, explain(summary, server)
    assert deliveries["duplicates"] == 0, explain(summary, server)
    assert deliveries["misrouted"] == 0, explain(summary, server)
    assert summary["errors"]["errors"] == 0, explain(summary, server)
    assert summary["errors"]["refusals"] == 0, explain(summary, server)
    assert summary["latency_ms"]["count"] == deliveries["delivered"], explain(summary, server)
    # Every figure the report quotes is there (without Redis, its command count is None).
    assert summary["server"]["us_per_frame"] is not None, explain(summary, server)
    assert summary["server"]["rss_kb_peak"] is not None, explain(summary, server)
    assert summary["server"]["rss_kb_end"] is not None, explain(summary, server)
    assert summary["idle"]["server_cpu_pct"] is not None, explain(summary, server)
    assert summary["connect_phase"]["us_per_join"] is not None, explain(summary, server)
    assert summary["connect_phase"]["first_frame_ms"]["count"] == 60, explain(summary, server)
    assert summary["churn"]["first_frame_ms"]["count"] == 40, explain(summary, server)
    assert "commands_per_s" in summary["redis"], explain(summary, server)


@pytest.mark.system
async def test_many_rooms_joins_every_room_and_reports_its_memory(seeded) -> None:
    server, _, plan = seeded

    summary = await run(
        "many-rooms", url=server.url, server_pids=[server.process.pid], plan=str(plan), idle=1, after_wait=1
    )

    assert summary["status"] == "ok", explain(summary, server)
    assert summary["users"]["logged_in"] == 3, explain(summary, server)
    rooms = summary["rooms"]
    assert rooms["rooms"] == 20, explain(summary, server)
    assert rooms["messages_each"] == 5, explain(summary, server)
    assert rooms["opened"] == 20, explain(summary, server)
    assert rooms["failed"] == 0, explain(summary, server)
    assert rooms["closed_by_server"] == 0, explain(summary, server)
    assert summary["first_frame_ms"]["count"] == 20, explain(summary, server)
    for figure in ("rss_kb_before", "rss_kb_peak", "rss_kb_after", "us_per_join"):
        assert summary["server"][figure] is not None, explain(summary, server)
    assert summary["idle"]["server_cpu_pct"] is not None, explain(summary, server)


async def test_org_needs_a_plan_and_a_loopback_redis(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="--plan"):
        await run("org", url="http://127.0.0.1:8000")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"kind": "org", "params": {}, "users": ["a"], "conversations": []}))
    with pytest.raises(LoadTestError, match="loopback"):
        await run("org", url="http://127.0.0.1:8000", plan=str(plan), redis_url="redis://192.0.2.1:6379/0")

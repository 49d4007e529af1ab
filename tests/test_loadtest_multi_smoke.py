"""The organisation workload on 3 daphne processes behind nginx, and a rolling restart of the 3 under an organisation's
load, at a tiny size: every tab opens and is counted on the process nginx sent it to, every message reaches every tab
open in its conversation once; after the restarts every tab is back, every message sent is stored once and shown once
in each tab of its conversation. Counts only, never a time. Skips when nginx, redis-server or PostgreSQL is missing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from loadtest import run
from loadtest.bench import per_process, seed_stack
from loadtest.restart import rolling, rolling_arguments
from loadtest.stack import Stack, nginx_binary, running

pytestmark = pytest.mark.system

ORG_SHAPE = ["--users", "30", "--rooms", "20", "--conversations", "8"]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Stack, str]]:
    """3 daphne processes behind nginx on a fresh PostgreSQL database and a private Redis, seeded with an
    organisation of 30 people (messages not limited per user, as loadtest.restart --rolling runs them)."""
    if nginx_binary() is None:
        pytest.skip("nginx is not installed: install it (apt install nginx) to run the multi-process load smoke")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: install Redis (apt install redis-server) to run this test")
    with running(3, "core", "postgres", {"CHAT_RATE_LIMIT_MESSAGES": "100000"}, nginx=True) as servers:
        yield servers, seed_stack(servers, "org", ORG_SHAPE)["plan"]


def explain(summary: dict) -> str:
    return json.dumps(summary, indent=1)[:8000]


async def test_org_on_three_processes_behind_nginx_counts_every_tab_and_message_per_process(stack) -> None:
    servers, plan = stack
    summary = await run(
        "org",
        url=servers.client_urls,
        server_pids=servers.daphne_pids,
        redis_pids=[servers.redis_pid],
        redis_url=servers.env["REDIS_URL"],
        plan=plan,
        sockets=45,
        churn=2.0,
        message_rate=2.0,
        duration=6.0,
        idle=0.5,
        seed=7,
        timeout=150.0,
    )
    rows = per_process(servers, summary)

    assert summary["status"] == "ok", explain(summary)
    tabs = summary["tabs"]
    assert tabs["initial_opened"] == 45, explain(summary)
    assert tabs["initial_directories"] > 0, explain(summary)
    assert tabs["churn_opened"] == tabs["churn_attempted"] == 12, explain(summary)
    assert tabs["failed"] == 0, explain(summary)
    assert tabs["closed_by_server"] == 0, explain(summary)
    deliveries = summary["deliveries"]
    assert summary["messages"]["sent"] == 12, explain(summary)
    assert deliveries["delivered"] > 0, explain(summary)
    assert deliveries["delivered"] == deliveries["expected_open"], explain(summary)
    assert deliveries["missing"] == deliveries["duplicates"] == deliveries["misrouted"] == 0, explain(summary)
    # Every socket went through nginx, which named the process: the three processes hold every tab between them.
    assert len(rows) == 3, explain(summary)
    assert {row["upstream"] for row in rows} == set(summary["by_upstream"]), explain(summary)
    assert sum(row["initial_opened"] for row in rows) == 45, explain(summary)
    assert sum(row["churn_opened"] for row in rows) == 12, explain(summary)
    assert sum(row["delivered"] for row in rows) == deliveries["delivered"], explain(summary)
    for row in rows:
        assert row["initial_opened"] > 0, explain(summary)  # least_conn spreads the first tabs
        for figure in ("idle_cpu_pct", "run_cpu_s", "rss_kb_connected", "rss_kb_peak", "rss_kb_end"):
            assert row[figure] is not None, (figure, explain(summary))


async def test_a_rolling_restart_of_three_processes_loses_nothing_and_stores_nothing_twice(stack) -> None:
    servers, plan = stack
    argv = ["--rolling", "--processes", "3", *ORG_SHAPE, "--sockets", "30", "--directory-share", "0"]
    argv += ["--message-rate", "4", "--warmup", "1", "--pause", "0", "--after", "1", "--wait", "60"]

    summary = await rolling(rolling_arguments(argv), servers, plan)

    assert summary["initial_opened"] == 30, explain(summary)
    assert len(summary["restarts"]) == 3, explain(summary)
    assert all(restart["exit_code"] == 0 for restart in summary["restarts"]), explain(summary)
    # Every tab was on one of the processes, so each was closed by a restart at least once, and came back.
    assert summary["closed_by_server"] == 30, explain(summary)
    assert summary["not_back"] == 0, explain(summary)
    assert summary["reconnected"] >= 30, explain(summary)
    messages, logs = summary["messages"], summary["logs"]
    assert messages["sent"] > 0, explain(summary)
    assert messages["stored_once"] + messages["refused_with_an_error"] == messages["sent"], explain(summary)
    assert messages["stored_twice"] == 0, explain(summary)
    assert messages["silently_dropped"] == 0, explain(summary)
    assert messages["still_in_the_box"] == 0, explain(summary)
    assert logs["checked"] > 0, explain(summary)
    assert logs["lost"] == logs["shown_twice"] == 0, explain(summary)
    assert summary["deliveries"]["delivered"] == summary["deliveries"]["owed"], explain(summary)

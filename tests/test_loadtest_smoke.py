"""The load generator against a real daphne server: every message reaches every client of its room exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest import LoadTestError, run
from tests.support.servers import DaphneServer, migrate

# Small shapes: a smoke run checks completeness and exactness, never speed (no time is asserted).
FANOUT = {"rooms": 1, "clients": 10, "senders": 3, "rate": 0.5, "duration": 4.0, "drain": 10.0, "timeout": 120.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaphneServer]:
    """A production-like daphne (DEBUG off, in-memory layer) on a fresh SQLite database of its own."""
    base = tmp_path_factory.mktemp("loadtest")
    env = {
        "DATABASE_URL": f"sqlite:///{base}/db.sqlite3",
        "SECRET_KEY": "x",
        "DEBUG": "0",
        "ACCOUNT_RATE_LIMITS": "off",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "REDIS_URL": "",
    }
    migrate(env)
    daphne = DaphneServer(env=env, log_path=base / "daphne.log").start()
    try:
        yield daphne
    finally:
        # Let the last churn sockets' disconnects finish: a SIGTERM that lands during one has been seen to
        # keep daphne alive until the helper's 10 s SIGKILL (a shutdown matter of the server, not of this test).
        time.sleep(1)
        daphne.stop()


def explain(summary: dict, server: DaphneServer) -> str:
    """The summary and the server log's tail, for a failing assertion."""
    log = Path(server.log_path).read_text(errors="replace")[-3000:] if server.log_path else ""
    return json.dumps(summary, indent=1)[:6000] + "\n--- daphne log tail ---\n" + log


@pytest.mark.system
async def test_fanout_delivers_every_message_to_every_client_once(server: DaphneServer) -> None:
    summary = await run("fanout", url=server.url, server_pids=[server.process.pid], **FANOUT)

    assert summary["status"] == "ok", explain(summary, server)
    assert summary["users"]["failed"] == 0, explain(summary, server)
    assert summary["connect"]["connected"] == 10, explain(summary, server)
    assert summary["messages"]["sent"] == 3 * 2, explain(summary, server)
    deliveries = summary["deliveries"]
    assert deliveries["expected"] == 6 * 10, explain(summary, server)
    assert deliveries["ratio"] == 1.0, explain(summary, server)
    assert deliveries["duplicates"] == 0, explain(summary, server)
    assert deliveries["misrouted"] == 0, explain(summary, server)
    assert summary["errors"]["errors"] == 0, explain(summary, server)
    assert summary["errors"]["refusals"] == 0, explain(summary, server)
    assert summary["latency_ms"]["count"] == 60, explain(summary, server)
    assert summary["server"]["cpu_s"] is not None, explain(summary, server)


@pytest.mark.system
async def test_a_connect_storm_opens_every_socket_and_every_online_list_ends_right(server: DaphneServer) -> None:
    """200 sockets of 40 users into one room, 50 opening at a time: none refused, every list shows all 40."""
    storm = {**FANOUT, "clients": 200, "users": 40, "connect_concurrency": 50, "senders": 1, "duration": 2.0}

    summary = await run("fanout", url=server.url, server_pids=[server.process.pid], room_prefix="storm", **storm)

    assert summary["status"] == "ok", explain(summary, server)
    assert summary["connect"]["connected"] == 200, explain(summary, server)
    assert summary["connect"]["failed"] == 0, explain(summary, server)
    assert summary["connect"]["online_lists_right"] == 200, explain(summary, server)
    assert summary["deliveries"]["ratio"] == 1.0, explain(summary, server)
    assert summary["deliveries"]["duplicates"] == 0, explain(summary, server)


@pytest.mark.system
async def test_ramp_and_churn_log_existing_users_in_and_keep_every_socket(server: DaphneServer) -> None:
    ramp = await run("ramp", url=server.url, sockets=20, connect_rate=50, hold=1, rooms=2, users=3, timeout=120)

    assert ramp["status"] == "ok", explain(ramp, server)
    # load0..load2 exist after the fanout test, or are signed up when this test runs alone.
    assert ramp["users"]["signed_up"] + ramp["users"]["logged_in"] == 3, explain(ramp, server)
    assert ramp["sockets"]["open_at_cap"] == 20, explain(ramp, server)
    assert ramp["sockets"]["open_after_hold"] == 20, explain(ramp, server)
    assert ramp["sockets"]["failed"] == 0, explain(ramp, server)

    churn = await run("churn", url=server.url, clients=2, duration=2, timeout=120)

    assert churn["status"] == "ok", explain(churn, server)
    assert churn["joins"]["joins"] > 0, explain(churn, server)
    assert churn["joins"]["errors"] == 0, explain(churn, server)


async def test_refuses_a_host_off_this_machine() -> None:
    with pytest.raises(LoadTestError, match="non-loopback"):
        await run("fanout", url="http://192.0.2.1:8000")

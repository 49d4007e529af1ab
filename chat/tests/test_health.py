"""/healthz and /readyz, as a load balancer sees them, including while Redis is down and after it is back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from channels.layers import channel_layers
from channels.testing import HttpCommunicator
from django.test import Client

from config import health
from config.asgi import application
from tests.support.servers import RedisServer


def redis_layer(url: str) -> dict:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server the test may stop and start again on the same port."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def layer_on(settings) -> Iterator:
    """Point the channel layer at a Redis URL, with no layer object cached from before."""

    def point(url: str) -> None:
        settings.CHANNEL_LAYERS = redis_layer(url)
        channel_layers.backends.clear()

    yield point
    channel_layers.backends.clear()


def failing(reason: str):
    def check() -> None:
        raise RuntimeError(reason)

    return check


def test_healthz_says_ok_without_touching_the_database(client: Client):
    # No db fixture: any query would fail this test.
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.content == b"ok"
    assert response["Content-Type"].startswith("text/plain")
    assert "no-cache" in response["Cache-Control"]


def test_healthz_answers_head_and_refuses_post(client: Client):
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_readyz_is_200_when_the_database_and_the_layer_answer(client: Client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_health_checks_need_no_login_and_never_redirect_even_with_ssl_redirect_on(client: Client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/chat/").status_code == 301  # everything else still goes to HTTPS


def test_health_checks_obey_allowed_hosts(client: Client):
    # A load balancer probing by IP must send an allowed Host (README, "Operations").
    assert client.get("/healthz", headers={"host": "10.1.2.3"}).status_code == 400


@pytest.mark.django_db
def test_readyz_names_the_database_when_it_fails(client: Client, monkeypatch):
    monkeypatch.setattr(health, "_database_select_one", failing("connection refused"))

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"database": "unreachable", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_tells_anyone_what_failed_but_only_the_log_why(client: Client, monkeypatch, caplog):
    # What a driver says names hosts, ports, users and databases: /readyz needs no login.
    reason = 'connection to server at "db.internal" (10.0.0.7), port 5432 failed: password authentication failed'
    monkeypatch.setattr(health, "_database_select_one", failing(reason))

    with caplog.at_level("WARNING", logger="config.health"):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"database": "unreachable", "channel_layer": "ok"}
    for secret in ("db.internal", "10.0.0.7", "5432", "password", "RuntimeError"):
        assert secret not in response.content.decode()
    [failure] = [r for r in caplog.records if r.getMessage() == "readiness check failed"]
    assert failure.check == "database"
    assert failure.exc_info[0] is RuntimeError
    assert reason in str(failure.exc_info[1])


async def test_readyz_gives_up_on_a_check_after_a_second(monkeypatch):
    # Through the ASGI application, as daphne runs it: the hung check keeps its thread, not the response.
    monkeypatch.setattr(health, "_database_select_one", lambda: time.sleep(2))
    request = HttpCommunicator(application, "GET", "/readyz", headers=[(b"host", b"localhost")])

    started = time.monotonic()
    response = await request.get_response(timeout=1.8)

    assert time.monotonic() - started < 1.8
    assert response["status"] == 503
    report = json.loads(response["body"])
    assert report["database"] == "timeout: no answer within 1 s"
    assert report["channel_layer"] == "ok"
    await request.wait(timeout=5)  # let the hung thread finish before the loop closes


@pytest.mark.redis
@pytest.mark.django_db
def test_readyz_fails_while_redis_is_down_and_recovers_when_it_is_back(client: Client, redis_server, layer_on):
    layer_on(redis_server.url)
    assert client.get("/readyz").json() == {"database": "ok", "channel_layer": "ok"}

    redis_server.stop()
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < 2.5
    assert response.status_code == 503
    report = response.json()
    assert report["database"] == "ok"
    assert report["channel_layer"] == "unreachable" or report["channel_layer"].startswith("timeout: "), report

    redis_server.start()
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"database": "ok", "channel_layer": "ok"}


@pytest.mark.django_db
def test_readyz_logs_what_is_not_ready(client: Client, monkeypatch, caplog):
    monkeypatch.setattr(health, "_database_select_one", failing("down"))

    with caplog.at_level("WARNING", logger="config.health"):
        client.get("/readyz")

    [record] = [r for r in caplog.records if r.name == "config.health" and r.getMessage() == "not ready"]
    assert record.checks == {"database": "unreachable", "channel_layer": "ok"}

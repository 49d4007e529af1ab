"""Every HTML response's security headers (docs/contract.md), and the pages' markup that the policy allows."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from django.test import Client

from chat import selectors, services
from chat.models import Room
from tests.support.html import parse

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
EXPECTED_DIRECTIVES = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "object-src": {"'none'"},
    "base-uri": {"'self'"},
    "frame-ancestors": {"'none'"},
}


def directives(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    parsed = {}
    for part in header.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def assert_protected(response) -> None:
    assert response["Content-Type"].startswith("text/html")
    policy = directives(response["Content-Security-Policy"])
    for name, sources in EXPECTED_DIRECTIVES.items():
        assert set(policy[name]) == sources, f"{name}: {policy[name]}"
    for name in ("script-src", "style-src", "default-src"):
        assert "'unsafe-inline'" not in policy[name]
        assert "'unsafe-eval'" not in policy[name]
    assert "script-src-attr" not in policy
    assert "script-src-elem" not in policy
    assert policy["report-uri"] == ["/csp-report"]
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.fixture
def lobby(alice) -> Room:
    room = services.rooms.room_get_or_create(name="lobby")
    services.messages.message_create(room=room, author=alice, body="hello @alice")
    return room


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/chat/", 200),
        ("/chat/lobby/", 200),
        ("/chat/lobby/search/?q=hello", 200),
        ("/chat/lobby/history/?before=999999", 200),
        ("/accounts/password/change/", 200),
        ("/chat/has space/", 400),
        ("/chat/?name=no%20spaces", 400),
        ("/no-such-page/", 404),
    ],
)
def test_every_page_of_a_signed_in_user_carries_the_policy(alice_client: Client, lobby: Room, path: str, status: int):
    response = alice_client.get(path)
    assert response.status_code == status
    assert_protected(response)


def test_a_message_in_its_context_carries_the_policy(alice_client: Client, lobby: Room):
    message = selectors.room_messages_recent(room=lobby)[-1]
    response = alice_client.get(f"/chat/lobby/messages/{message.pk}/")
    assert response.status_code == 200
    assert_protected(response)


@pytest.mark.parametrize("path", ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", "/nope/"])
def test_every_public_page_carries_the_policy(client: Client, path: str):
    response = client.get(path)
    assert_protected(response)


def test_the_server_error_page_carries_the_policy(alice_client: Client, monkeypatch):
    def broken(**kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(selectors, "room_directory", broken)
    alice_client.raise_request_exception = False
    response = alice_client.get("/chat/")
    assert response.status_code == 500
    assert_protected(response)


def test_the_room_pages_own_style_carries_the_responses_nonce(alice_client: Client, lobby: Room):
    response = alice_client.get("/chat/lobby/")
    html = response.content.decode()
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"])[1]
    assert f'<style nonce="{nonce}">' in html
    assert directives(response["Content-Security-Policy"])["style-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert nonce not in alice_client.get("/chat/lobby/")["Content-Security-Policy"]


def test_htmx_is_configured_for_a_policy_without_eval(alice_client: Client, lobby: Room):
    html = alice_client.get("/chat/lobby/").content.decode()
    [config] = [attrs["content"] for tag, attrs in parse(html).tags if attrs.get("name") == "htmx-config"]
    assert html.index('name="htmx-config"') < html.index("htmx.min.js")
    settings = json.loads(config)
    assert settings.pop("responseHandling") == [
        {"code": "204", "swap": False},
        # A refusal (too large, too many, too late to edit) shows its out-of-band #chat-error and leaves the rest of
        # the page.
        {"code": "413", "swap": True, "swapOverride": "none"},
        {"code": "429", "swap": True, "swapOverride": "none"},
        {"code": "403", "swap": True, "swapOverride": "none"},
        # htmx's defaults for everything else.
        {"code": "[23]..", "swap": True},
        {"code": "[45]..", "swap": False, "error": True},
    ]
    assert settings == {
        "allowEval": False,
        "selfRequestsOnly": True,
        "allowScriptTags": False,
        "includeIndicatorStyles": False,
    }


def test_no_template_needs_what_the_policy_forbids():
    """No inline script or handler, no htmx behaviour that needs eval, no <style> without the nonce."""
    for template in TEMPLATES.rglob("*.html"):
        # What the browser gets: template comments are not sent.
        text = re.sub(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", "", template.read_text(), flags=re.DOTALL)
        name = template.relative_to(TEMPLATES)
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"{name}: inline <script>"
        assert not re.search(r"\son[a-z]+\s*=", text), f"{name}: an on* event handler attribute"
        assert not re.search(r"hx-on|\bjs:|javascript:", text), f"{name}: hx-on or a js: value"
        for trigger in re.findall(r'hx-trigger="([^"]*)"', text):
            assert "[" not in trigger, f"{name}: the trigger filter {trigger!r} needs eval"
        assert not re.search(r"<style(?![^>]*\bnonce=)", text), f"{name}: <style> without the nonce"


def test_a_violation_report_is_logged_as_a_warning(client: Client, caplog):
    report = {
        "csp-report": {
            "document-uri": "http://localhost/chat/lobby/",
            "violated-directive": "script-src-elem",
            "blocked-uri": "inline",
            "script-sample": "alert('what the page had')",
        }
    }
    with caplog.at_level(logging.WARNING, logger="config.csp_report"):
        response = client.post("/csp-report", json.dumps(report), content_type="application/csp-report")

    assert response.status_code == 204
    (record,) = [r for r in caplog.records if r.name == "config.csp_report"]
    assert record.levelno == logging.WARNING
    assert record.violated_directive == "script-src-elem"
    assert record.blocked_uri == "inline"
    assert "what the page had" not in str(vars(record))


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"csp-report": 1}', b"x" * 20000])
def test_an_unreadable_report_is_answered_and_not_logged_as_a_violation(client: Client, caplog, body: bytes):
    response = client.post("/csp-report", body, content_type="application/csp-report")
    assert response.status_code == 204
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

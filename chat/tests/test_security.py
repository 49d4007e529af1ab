"""Attacks on the real application: foreign origins, anonymous sockets, markup in user text, weak deploys, guessing.

Each test attacks what a browser or a script can reach (the ASGI application through WebsocketCommunicator, the
pages through Django's test client, `manage.py` in a subprocess) and asserts what a user would see.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import User
from chat import errors, formatting, fragments, presence, services
from chat.models import Message, Room
from chat.tests.conftest import (
    arrived,
    departed,
    hears_only_presence,
    joined,
    open_socket,
    receive_until,
    send_message,
)
from tests.support.html import parse, visible_text
from tests.support.servers import BASE_DIR

ALLOWED_TAGS = set(formatting.ALLOWED_TAGS)
# What the Markdown subset reads as formatting: emphasis, code, quotes, escapes, line breaks, links.
MARKDOWN_SIGNS = re.compile(r"[*_`~>\\\n\r]|https?://", re.IGNORECASE)

# Markup that must stay text wherever user text is shown. None has leading or trailing spaces (messages are
# stripped) and none has a space in its first word, so each can also stand where a /pm username goes.
XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "javascript:alert(1)",
    '"><script>alert(1)</script>',
    "'><img src=x onerror=alert(1)>",
    '" autofocus onfocus="alert(1)" x="',
    "' onmouseover='alert(1)",
    '<div hx-get="/accounts/logout/" hx-trigger="load">x</div>',
    '<div id="messages" hx-swap-oob="true">replaced</div>',
    '<form ws-send><input name="message" value="/pm bob spam"></form>',
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)//",
    "<<b>>bold<</b>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;img src=x onerror=alert(1)&#62;",
    "<!--<img src=x onerror=alert(1)>-->",
    "</textarea></title></p><script>alert(1)</script>",
    '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "{{ request.user.password }}{% debug %}",
]
PASSWORD = "correct-horse-battery-staple"


def skeleton(html: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every element with its attribute names: exactly what user text would change if it became markup."""
    return [(tag, tuple(sorted(attrs))) for tag, attrs in parse(html).tags]


def input_value(html: str, name: str) -> str | None:
    """The value attribute of the named input, as a browser reads it."""
    return next((attrs.get("value") for tag, attrs in parse(html).tags if attrs.get("name") == name), None)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def message_log(html: str) -> str:
    """The #messages element's messages (they end where its "No messages yet" line begins)."""
    return html.split('id="messages"', 1)[1].split('<p class="empty">', 1)[0]


def header_and_online_list(html: str) -> str:
    """The parts of a page that show usernames: the site header and the room's online list."""
    header = html.split('<header class="site-header">', 1)[1].split("</header>", 1)[0]
    return header + html.split('id="online-users"', 1)[1].split("</ul>", 1)[0]


@sync_to_async
def page(user: User, path: str = "/chat/lobby/") -> str:
    """The page as the user's browser receives it."""
    return logged_in(user).get(path).content.decode()


# --- Cross-site WebSocket hijacking and anonymous sockets -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost.evil.example", None])
async def test_a_socket_from_a_foreign_or_missing_origin_gets_no_room_data_and_leaves_no_trace(alice, origin):
    """A page on another site cannot ride the user's cookie: refused at the handshake, before the consumer runs."""
    secret = await sync_to_async(Room.objects.create)(name="secret")
    await sync_to_async(Message.objects.create)(room=secret, author=alice, body="the launch code is 1234")
    socket = await open_socket(alice, "secret", origin=origin, connect=False)

    connected, _ = await socket.connect()

    assert not connected
    assert await socket.receive_nothing(timeout=0.2)
    assert await presence.store().online(room_id=secret.pk) == set()
    assert await sync_to_async(Message.objects.count)() == 1
    fresh = await open_socket(alice, "fresh-room", origin=origin, connect=False)
    assert (await fresh.connect())[0] is False
    assert await sync_to_async(Room.objects.filter(name="fresh-room").exists)() is False


@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_socket_reads_nothing_posts_nothing_and_is_closed_with_4001(alice):
    room = await sync_to_async(Room.objects.create)(name="lobby")
    await sync_to_async(Message.objects.create)(room=room, author=alice, body="members only")
    watcher = await joined(alice)
    socket = await open_socket(None, "lobby", connect=False)

    connected, _ = await socket.connect()
    first = await socket.receive_output()
    await send_message(socket, "anonymous spam")

    assert connected
    assert first == {"type": "websocket.close", "code": 4001}
    assert await socket.receive_nothing(timeout=0.3)
    assert await hears_only_presence(watcher, quiet=0.3)
    assert await sync_to_async(Message.objects.filter(body="anonymous spam").exists)() is False
    assert await presence.store().online(room_id=room.pk) == {alice.pk}
    anonymous_room = await open_socket(None, "never-created", connect=False)
    await anonymous_room.connect()
    assert await sync_to_async(Room.objects.filter(name="never-created").exists)() is False
    await watcher.disconnect()


# --- No user text becomes HTML ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_room_and_private_messages_stay_text_live_on_reconnect_and_on_the_page(alice, bob, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = 1000
    alice_socket, bob_socket = await joined(alice), await joined(bob)

    async def delivered(text: str) -> str:
        await send_message(alice_socket, text)
        await receive_until(alice_socket, lambda f: 'id="message-form"' in f)
        body = text.removeprefix("/pm bob ")
        return await receive_until(bob_socket, lambda f: "message-body" in f and body in visible_text(f))

    await delivered("the day's first, after its day separator")
    room_baseline = skeleton(await delivered("harmless"))
    private_baseline = skeleton(await delivered("/pm bob harmless"))
    for payload in XSS_PAYLOADS:
        room_frame = await delivered(payload)
        assert skeleton(room_frame) == room_baseline, payload
        assert payload in visible_text(room_frame), payload
        private_frame = await delivered(f"/pm bob {payload}")
        assert skeleton(private_frame) == private_baseline, payload
        assert payload in visible_text(private_frame), payload
    await alice_socket.disconnect()
    await bob_socket.disconnect()

    # The same messages in the log sent on reconnect and on the page: one element per message, text only.
    reconnected = await open_socket(bob)
    log = await receive_until(reconnected, lambda f: 'id="messages"' in f)
    for html in (message_log(log), message_log(await page(bob))):
        articles = [tag for tag, _ in parse(html).tags if tag == "article"]
        assert len(articles) == 3 + 2 * len(XSS_PAYLOADS)
        tags = {tag for tag, _ in parse(html).tags}
        assert not tags & {"script", "img", "svg", "iframe", "math", "b", "textarea", "title", "style"}
        assert not any(name.startswith("on") for _, attrs in parse(html).tags for name in attrs)
        assert "messages" not in [attrs.get("id") for _, attrs in parse(html).tags]
        for payload in XSS_PAYLOADS:
            assert payload in visible_text(html), payload
    await reconnected.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_error_fragments_show_what_was_typed_as_text_and_keep_it_in_the_box_verbatim(alice):
    socket = await joined(alice)
    await send_message(socket, "/pm nobody hi")
    baseline = skeleton(await receive_until(socket, lambda f: 'id="chat-error"' in f))
    for payload in XSS_PAYLOADS:
        username = payload.split()[0]
        text = f"/pm {payload} hi"
        await send_message(socket, text)
        frame = await receive_until(socket, lambda f: 'id="chat-error"' in f)
        assert skeleton(frame) == baseline, payload
        assert f"There is no user called {username}." in visible_text(frame), payload
        assert input_value(frame, "message") == text, payload
    assert not await sync_to_async(Message.objects.exists)()
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_username_that_is_markup_stays_text_in_the_online_list_messages_and_pages(bob, settings):
    """Signup refuses such names (next test); one made some other way (admin, import) still renders as text."""
    settings.CHAT_RATE_LIMIT_MESSAGES = 1000
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    plain = await sync_to_async(User.objects.create_user)(username="plain", password=PASSWORD)
    bob_socket = await joined(bob)
    plain_socket = await joined(plain)
    online_baseline = skeleton(await receive_until(bob_socket, arrived(plain)))
    await send_message(bob_socket, "the day's first, after its day separator")
    await receive_until(bob_socket, lambda f: "message-body" in f)
    await send_message(plain_socket, "hello")
    message_baseline = skeleton(await receive_until(bob_socket, lambda f: "message-body" in f))
    await send_message(bob_socket, "/pm plain hi")
    private_baseline = skeleton(await receive_until(bob_socket, lambda f: "message-body" in f and "hi" in f))
    page_baseline = skeleton(header_and_online_list(await page(plain)))
    await plain_socket.disconnect()
    await receive_until(bob_socket, departed(plain))

    for payload in XSS_PAYLOADS:
        hostile = await sync_to_async(User.objects.create_user)(username=payload[:150], password=PASSWORD)
        hostile_socket = await open_socket(hostile)
        online = await receive_until(bob_socket, arrived(hostile))
        assert skeleton(online) == online_baseline, payload
        assert hostile.username in visible_text(online), payload
        await send_message(hostile_socket, "hello")
        message = await receive_until(bob_socket, lambda f: "message-body" in f)
        assert skeleton(message) == message_baseline, payload
        if len(hostile.username.split()) == 1:
            await send_message(bob_socket, f"/pm {hostile.username} hi")
            private = await receive_until(bob_socket, lambda f: "message-body" in f)
            assert skeleton(private) == private_baseline, payload
            assert f"private to {hostile.username}" in visible_text(private), payload
        html = await page(hostile)
        assert skeleton(header_and_online_list(html)) == page_baseline, payload
        assert f"Signed in as {hostile.username}" in visible_text(html), payload
        await hostile_socket.disconnect()
        await receive_until(bob_socket, departed(hostile))
    await bob_socket.disconnect()


@pytest.mark.django_db
@pytest.mark.parametrize("username", ["<script>", "a b", 'x"y', "x'y", "<img/src=x>", "a&b", "a/b", "javascript:x"])
def test_signup_refuses_usernames_that_could_carry_markup(client: Client, username: str):
    data = {"username": username, "email": "", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post("/accounts/signup/", data)
    assert response.status_code == 200
    assert "username" in visible_text(response.content.decode()).lower()
    assert not User.objects.exists()


@pytest.mark.django_db
def test_the_directory_echoes_a_hostile_room_name_as_text_only(alice_client: Client):
    baseline = skeleton(alice_client.get("/chat/", {"name": "has space"}).content.decode())
    for payload in XSS_PAYLOADS:
        response = alice_client.get("/chat/", {"name": payload})
        html = response.content.decode()
        assert response.status_code == 400, payload
        assert skeleton(html) == baseline, payload
        assert input_value(html, "name") == payload, payload
    for payload in XSS_PAYLOADS:
        response = alice_client.get("/chat/" + payload.replace("/", "%2F").replace("#", "%23") + "/")
        assert response.status_code in (400, 404), payload
        assert "<script>" not in response.content.decode()
    assert not Room.objects.exists()


@pytest.mark.django_db
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=300))
def test_any_text_through_the_message_pipeline_renders_as_allowlisted_markup_and_that_text(alice, bob, settings, text):
    """Markdown may add the allowlisted elements (chat/tests/test_formatting.py); without its signs, the text is
    shown exactly as typed, and nothing else ever changes the message's structure."""
    settings.CHAT_RATE_LIMIT_MESSAGES = 10**9
    room = services.rooms.room_get_or_create(name="lobby")
    try:
        message, refusal = services.messages.message_post(room=room, author=alice, text=text), None
    except errors.ChatError as error:
        message, refusal = None, str(error)
    if refusal is not None:
        # Refused (an unknown /pm user, say): the error and the kept draft are text too.
        html = fragments.chat_error(error=refusal) + fragments.message_form(room=room, draft=text)
        assert skeleton(html) == skeleton(fragments.chat_error(error="x") + fragments.message_form(room=room))
        assert visible_text(html).startswith(" ".join(refusal.split()))
        assert input_value(html, "message") == text
        return
    if message is None:
        assert not text.replace("\x00", "").strip()
        return
    html = fragments.message_appended(message=message)
    body_html = html.split('class="message-body">')[1].split("</div>")[0]
    baseline = Message(pk=message.pk, room=room, author=alice, recipient=message.recipient, body="x", body_html="")
    baseline_html = fragments.message_appended(message=baseline)
    outside = lambda page: [element for element in skeleton(page) if element[0] not in ALLOWED_TAGS]  # noqa: E731
    assert outside(html) == outside(baseline_html)
    assert {tag for tag, _ in skeleton(body_html)} <= ALLOWED_TAGS
    if not MARKDOWN_SIGNS.search(message.body):
        body = "".join(parse(body_html).text)
        assert body == message.body
    assert message.body.strip() == message.body
    assert message.body in text.replace("\x00", "")


# --- Production settings ------------------------------------------------------------------------------------------

PRODUCTION_ENV = {
    "SECRET_KEY": "k7Qp2vZ9xL4mN8rT1wY6bH3jF5sD0gA-cE_uI9oP2lK4zX7vB1nM6qW3eR8tY5u",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "chat.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chat.example.com",
    "HTTPS": "1",
    "SECURE_PROXY_SSL_HEADER": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "REDIS_URL": "",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run manage.py as an operator would, with only the given variables of the product set."""
    clean = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION_ENV, "DATABASE_URL"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_production_environment_of_security_md():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_a_forgotten_secret_key():
    """The built-in key keeps `make run` working with nothing set; a deploy check must not let it through."""
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = manage("check", "--deploy", env=env)
    assert "security.W009" in result.stdout + result.stderr


def test_production_settings_make_cookies_secure_trust_the_proxy_and_send_hsts():
    names = [
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SESSION_COOKIE_HTTPONLY",
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "SECURE_PROXY_SSL_HEADER",
        "X_FRAME_OPTIONS",
        "DEBUG",
    ]
    shown = f"json.dumps({{n: getattr(s, n) for n in {names}}})"
    code = f"import json; from django.conf import settings as s; print('SETTINGS', {shown})"
    result = manage("shell", "-c", code, env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.split("SETTINGS", 1)[1]) == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "X_FRAME_OPTIONS": "DENY",
        "DEBUG": False,
    }


# --- Guessing passwords and mass signups --------------------------------------------------------------------------


@pytest.fixture
def empty_rate_limits(settings):
    """The write limits count in this process's memory here (no REDIS_URL); each test starts with empty windows
    (the root conftest's fresh_write_limits)."""
    # A fast hasher: these tests count attempts, they do not measure the cost of a guess.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REDIS_URL = ""


@pytest.mark.django_db
@pytest.mark.usefixtures("empty_rate_limits")
def test_after_five_wrong_passwords_even_the_right_one_is_refused_for_a_while(client: Client):
    User.objects.create_user(username="alice", password=PASSWORD)
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": "alice", "password": "guess-123456"})
        assert response.status_code == 200
        assert "not correct" in visible_text(response.content.decode())

    response = client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})

    assert response.status_code == 429
    assert "at most 5 failed logins to one account per 5 minutes" in visible_text(response.content.decode())
    assert client.get("/chat/").status_code == 302
    # Another account from the same address is not locked by alice's attempts.
    User.objects.create_user(username="dana", password=PASSWORD)
    assert client.post("/accounts/login/", {"login": "dana", "password": PASSWORD}).status_code == 302


@pytest.mark.django_db
@pytest.mark.usefixtures("empty_rate_limits")
def test_one_address_gets_at_most_30_signup_attempts_a_minute(client: Client):
    for i in range(30):
        data = {"username": f"bot{i}", "email": "", "password1": "short", "password2": "short"}
        assert client.post("/accounts/signup/", data).status_code == 200

    data = {"username": "bot30", "email": "", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post("/accounts/signup/", data)

    assert response.status_code == 429
    assert "Slow down: at most 30 sign-up attempts per minute" in visible_text(response.content.decode())
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.usefixtures("empty_rate_limits")
def test_one_address_gets_at_most_30_login_attempts_a_minute(client: Client):
    User.objects.create_user(username="alice", password=PASSWORD)
    for i in range(30):
        client.post("/accounts/login/", {"login": f"nobody{i}", "password": "x"})
    response = client.post("/accounts/login/", {"login": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert client.get("/chat/").status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "error"),
    [
        ("short1", "too short"),
        ("12345678901", "entirely numeric"),
        ("password123", "too common"),
        ("frankfrank1", "too similar to the username"),
    ],
)
def test_signup_refuses_weak_passwords_through_the_real_form(client: Client, password: str, error: str):
    data = {"username": "frankfrank", "email": "", "password1": password, "password2": password}
    response = client.post("/accounts/signup/", data)
    assert response.status_code == 200
    assert error in visible_text(response.content.decode())
    assert not User.objects.exists()

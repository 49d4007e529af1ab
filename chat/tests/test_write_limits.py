"""Write limits over HTTP (chat/flood.py, config/account_limits.py): every kind of write is counted per user (per
client address when anonymous) and answered 429 with Retry-After and a sentence once over its limit; counted in a
real Redis when REDIS_URL is set, in the process's memory when it is not or while Redis is down."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import pytest
import redis
from django.http import HttpRequest
from django.test import Client, RequestFactory

from accounts.models import User
from chat import flood, http_limits, services
from chat.models import REACTION_EMOJI, Attachment, Message, Reaction, Room
from chat.tests.conftest import open_socket, receive_until
from conftest import PASSWORD
from tests.support.html import parse, visible_text
from tests.support.servers import BASE_DIR, django_process, redis_url_or_skip

pytestmark = pytest.mark.django_db

THUMBS, HEART = REACTION_EMOJI[0], REACTION_EMOJI[1]
HTMX = {"HX-Request": "true"}


@pytest.fixture(params=["memory", "redis"])
def counted_in(request: pytest.FixtureRequest, settings) -> Iterator[redis.Redis | None]:
    """Run the test with the windows in this process's memory (no REDIS_URL), then in a real Redis."""
    if request.param == "memory":
        settings.REDIS_URL = ""
        yield None
        return
    settings.REDIS_URL = redis_url_or_skip()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(*client.keys("chat:limit:*") or ["-"])
    yield client
    client.delete(*client.keys("chat:limit:*") or ["-"])


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    # These tests count attempts; they do not measure the cost of a guess.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REDIS_URL = ""


def limit(settings, **kinds: tuple[int, float] | None) -> None:
    settings.CHAT_WRITE_LIMITS = {**settings.CHAT_WRITE_LIMITS, **kinds}


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def room(alice) -> Room:
    return services.rooms.room_get_or_create(name="lobby", by=alice)


@pytest.fixture
def message(room, alice) -> Message:
    return services.messages.message_create(room=room, author=alice, body="lunch?")


def react(client: Client, message: Message, emoji: str = THUMBS, **headers: str):
    return client.post(f"/chat/messages/{message.pk}/reactions/", {"emoji": emoji}, headers=headers)


def chat_error(html: str) -> dict[str, str | None]:
    (attrs,) = [attrs for _, attrs in parse(html).tags if attrs.get("id") == "chat-error"]
    return attrs


def error_text(html: str) -> str:
    """The sentence in #chat-error."""
    return visible_text("<div " + html.split('id="chat-error"', 1)[1].split("</", 1)[0])


def assert_refused(response, sentence: str) -> None:
    """A 429 with a Retry-After of at most the window, and the sentence in #chat-error."""
    assert response.status_code == 429, response.content[:300]
    assert 1 <= int(response["Retry-After"]) <= 300
    text = error_text(response.content.decode())
    assert sentence in text
    assert "Try again in " in text


# --- The answer ---------------------------------------------------------------------------------------------------


def test_the_31st_reaction_in_a_minute_gets_429_with_retry_after_and_the_sentence_in_chat_error(
    counted_in, message, alice, bob
):
    client = logged_in(bob)
    for _ in range(30):  # the default: 30 a minute
        assert react(client, message, **HTMX).status_code == 200

    response = react(client, message, HEART, **HTMX)

    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    html = response.content.decode()
    # Only #chat-error, swapped out of band; HX-Reswap keeps the button's own target as it was.
    assert chat_error(html) == {"id": "chat-error", "role": "alert", "hx-swap-oob": "true"}
    assert response["HX-Reswap"] == "none"
    assert visible_text(html) == (
        f"Slow down: at most 30 reactions per minute. Try again in {retry_after} second{'s' * (retry_after > 1)}."
    )
    assert not Reaction.objects.filter(emoji=HEART).exists()
    # Per user: alice reacts as before.
    assert react(logged_in(alice), message, HEART, **HTMX).status_code == 200
    if counted_in is not None:
        assert counted_in.zcard(f"chat:limit:reactions:user:{bob.pk}") == 30


def test_without_htmx_the_answer_is_a_plain_page_with_the_sentence(message, bob, settings):
    limit(settings, reactions=(1, 60))
    client = logged_in(bob)
    assert react(client, message).status_code == 302

    response = react(client, message)

    assert_refused(response, "Slow down: at most 1 reactions per minute.")
    html = response.content.decode()
    assert "<html" in html
    assert chat_error(html)["role"] == "alert"
    assert "Too many requests" in visible_text(html)


def test_a_refusal_under_api_gets_json(bob):
    request = RequestFactory().post("/api/tokens/")
    request.user = bob

    response = http_limits.too_many(request, "tokens", retry_after=12.2)

    assert response.status_code == 429
    assert response["Retry-After"] == "13"
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content) == {
        "error": "Slow down: at most 30 changes to API tokens per minute. Try again in 13 seconds."
    }


# --- Every kind of write ------------------------------------------------------------------------------------------


def post_to(path: str, data: dict | None = None, **headers: str) -> Callable[[Client], object]:
    return lambda client: client.post(path, data or {}, headers=headers)


def upload_to(path: str) -> Callable[[Client], object]:
    def post(client: Client):
        from django.core.files.uploadedfile import SimpleUploadedFile

        return client.post(path, {"file": SimpleUploadedFile("a.txt", b"hi")}, headers=HTMX)

    return post


@pytest.fixture
def writes(room, message, alice, bob, carol) -> dict[str, Callable[[Client], object]]:
    """Each kind's write, as alice (the room's creator and the message's author) posts it from the page."""
    return {
        "reactions": post_to(f"/chat/messages/{message.pk}/reactions/", {"emoji": THUMBS}, **HTMX),
        "edits": post_to(f"/chat/messages/{message.pk}/edit/", {"body": "changed"}, **HTMX),
        "deletes": post_to(f"/chat/messages/{message.pk}/delete/", **HTMX),
        "uploads": upload_to("/chat/lobby/attachments/"),
        "uploads in a direct conversation": upload_to("/dm/bob/attachments/"),
        "room_settings": post_to("/chat/lobby/settings/", {"private": "on"}),
        "room_members": post_to("/chat/lobby/members/", {"username": "carol"}),
        "room_members (removing)": post_to("/chat/lobby/members/remove/", {"username": "carol"}),
        "room_leave": post_to("/chat/lobby/leave/"),
    }


NOUN = {
    "reactions": "reactions",
    "edits": "edits",
    "deletes": "deleted messages",
    "uploads": "files",
    "uploads in a direct conversation": "files",
    "room_settings": "changes to a room's settings",
    "room_members": "changes to a room's members",
    "room_members (removing)": "changes to a room's members",
    "room_leave": "rooms left",
}


@pytest.mark.parametrize("write", list(NOUN))
def test_every_kind_of_write_is_limited(write, writes, alice, settings):
    kind = write.split(" ")[0]
    limit(settings, **{kind: (1, 60)})
    client = logged_in(alice)
    assert writes[write](client).status_code != 429  # done, or refused for its own reason (not a member, ...)

    response = writes[write](client)

    assert_refused(response, f"Slow down: at most 1 {NOUN[write]} per minute.")


def test_reading_is_never_counted(message, alice, settings):
    limit(settings, edits=(1, 60), room_settings=(1, 60))
    client = logged_in(alice)
    for _ in range(3):
        assert client.get(f"/chat/messages/{message.pk}/edit/").status_code == 200
        assert client.get("/chat/lobby/settings/").status_code == 200
    assert client.post(f"/chat/messages/{message.pk}/edit/", {"body": "once"}, headers=HTMX).status_code == 200


def test_an_upload_over_the_limit_is_refused_before_its_body_is_parsed(room, alice, settings, monkeypatch):
    limit(settings, uploads=(1, 60))
    parsed = []
    load = HttpRequest._load_post_and_files

    def load_and_note(request: HttpRequest) -> None:
        parsed.append(request.path)
        load(request)

    monkeypatch.setattr(HttpRequest, "_load_post_and_files", load_and_note)
    client = logged_in(alice)
    upload = upload_to("/chat/lobby/attachments/")
    assert upload(client).status_code == 200
    assert parsed == ["/chat/lobby/attachments/"]

    response = upload(client)

    assert_refused(response, "Slow down: at most 1 files per minute.")
    assert parsed == ["/chat/lobby/attachments/"]  # the second body was never parsed, the file never looked at
    assert Attachment.objects.count() == 1


# --- Rooms created by opening a new name --------------------------------------------------------------------------


def test_opening_new_names_counts_creations_and_opening_existing_rooms_does_not(counted_in, alice, bob, settings):
    limit(settings, rooms=(3, 60))
    client = logged_in(alice)
    assert client.get("/chat/new-1/").status_code == 200
    assert client.get("/chat/new-2/search/?q=hello").status_code == 200
    assert client.get("/chat/new-3/history/?before=1").status_code == 200
    for path in ("/chat/new-1/", "/chat/NEW-2/search/", "/chat/new-3/", "/chat/?name=new-1"):
        for _ in range(3):
            assert client.get(path).status_code in {200, 302}
    assert client.get("/chat/not.a.name/").status_code == 400  # no room could be made: not counted either

    response = client.get("/chat/new-4/search/")

    assert_refused(response, "Slow down: at most 3 new rooms per minute.")
    assert not Room.objects.filter(name__iexact="new-4").exists()
    assert client.get("/chat/new-2/").status_code == 200  # rooms that exist still open
    assert logged_in(bob).get("/chat/new-4/").status_code == 200  # and others still create


@pytest.mark.django_db(transaction=True)
async def test_a_room_opened_by_a_new_name_over_the_socket_counts_too(alice, settings):
    limit(settings, rooms=(1, 60))
    first = await open_socket(alice, "by-socket-1")
    await receive_until(first, lambda frame: 'id="messages"' in frame)

    refused = await open_socket(alice, "by-socket-2")
    frame = await receive_until(refused, lambda frame: 'id="chat-error"' in frame)
    assert "Slow down: at most 1 new rooms per minute." in visible_text(frame)
    assert (await refused.receive_output(timeout=2))["type"] == "websocket.close"
    assert not await Room.objects.filter(name="by-socket-2").aexists()
    await first.disconnect()


def test_by_default_a_user_creates_at_most_30_rooms_a_minute(alice):
    client = logged_in(alice)
    for n in range(30):
        assert client.get(f"/chat/made-{n}/search/").status_code == 200

    response = client.get("/chat/made-30/search/")

    assert_refused(response, "Slow down: at most 30 new rooms per minute.")
    assert Room.objects.filter(name__startswith="made-").count() == 30


# --- Accounts: allauth's forms and the admin's login --------------------------------------------------------------


def login(client: Client, username: str, password: str):
    return client.post("/accounts/login/", {"login": username, "password": password})


def test_allauths_own_rate_limits_are_off(settings):
    assert settings.ACCOUNT_RATE_LIMITS is False


def test_anonymous_logins_count_per_client_address(counted_in, alice):
    here = Client(REMOTE_ADDR="203.0.113.7")
    for n in range(30):
        assert login(here, f"nobody{n}", "guess").status_code == 200

    response = login(here, "alice", PASSWORD)

    assert_refused(response, "Slow down: at most 30 login attempts per minute.")
    assert here.get("/chat/").status_code == 302  # not logged in
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert login(elsewhere, "alice", PASSWORD).status_code == 302


def test_after_five_failed_passwords_an_account_waits_whatever_the_address(alice, make_user):
    for n in range(5):
        response = login(Client(REMOTE_ADDR=f"203.0.113.{n}"), "ALICE", "guess-123456")
        assert response.status_code == 200
        assert "not correct" in visible_text(response.content.decode())

    response = login(Client(REMOTE_ADDR="198.51.100.1"), "alice", PASSWORD)

    assert_refused(response, "Slow down: at most 5 failed logins to one account per 5 minutes.")
    make_user("dana")
    assert login(Client(REMOTE_ADDR="203.0.113.0"), "dana", PASSWORD).status_code == 302


def test_the_admins_login_counts_as_a_login_and_its_failures_against_the_account(settings, make_user):
    limit(settings, login_failed=(2, 300))
    admin = make_user("root")
    User.objects.filter(pk=admin.pk).update(is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(2):
        assert client.post("/admin/login/", {"username": "root", "password": "guess"}).status_code == 200

    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})

    assert_refused(response, "failed logins to one account")
    assert login(Client(), "root", PASSWORD).status_code == 429


def test_signups_count_per_client_address():
    client = Client(REMOTE_ADDR="203.0.113.8")
    for n in range(30):
        data = {"username": f"bot{n}", "email": "", "password1": "short", "password2": "short"}
        assert client.post("/accounts/signup/", data).status_code == 200

    data = {"username": "bot30", "email": "", "password1": PASSWORD, "password2": PASSWORD}
    response = client.post("/accounts/signup/", data)

    assert_refused(response, "Slow down: at most 30 sign-up attempts per minute.")
    assert not User.objects.exists()


def test_password_resets_count_per_address_and_per_email_address(settings, mailoutbox, alice):
    User.objects.filter(pk=alice.pk).update(email="alice@example.com")
    for n in range(5):
        client = Client(REMOTE_ADDR=f"203.0.113.{n}")
        assert client.post("/accounts/password/reset/", {"email": "Alice@example.com"}).status_code == 302
    assert len(mailoutbox) == 5

    response = Client(REMOTE_ADDR="198.51.100.2").post("/accounts/password/reset/", {"email": "alice@example.com"})

    assert_refused(response, "Slow down: at most 5 password reset emails to one address per minute.")
    assert len(mailoutbox) == 5
    limit(settings, password_reset=(1, 60))
    client = Client(REMOTE_ADDR="198.51.100.3")
    assert client.post("/accounts/password/reset/", {"email": "nobody@example.com"}).status_code == 302
    assert_refused(
        client.post("/accounts/password/reset/", {"email": "other@example.com"}),
        "Slow down: at most 1 password reset attempts per minute.",
    )


def test_password_changes_count_per_user(alice, settings):
    limit(settings, password_change=(1, 60))
    client = logged_in(alice)
    data = {"oldpassword": "wrong", "password1": "another-long-passphrase", "password2": "another-long-passphrase"}
    assert client.post("/accounts/password/change/", data).status_code == 200

    assert_refused(client.post("/accounts/password/change/", data), "at most 1 password changes per minute")


def test_logging_out_is_never_limited(alice, settings):
    limit(settings, **dict.fromkeys(settings.CHAT_WRITE_LIMITS, (0, 60)))
    client = logged_in(alice)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/chat/").status_code == 302


# --- Where the count lives ----------------------------------------------------------------------------------------


def test_with_redis_every_process_shares_the_count(alice, message, settings):
    settings.REDIS_URL = redis_url_or_skip()
    shared = redis.Redis.from_url(settings.REDIS_URL)
    shared.delete(*shared.keys("chat:limit:*") or ["-"])
    limit(settings, reactions=(2, 60))
    try:
        client = logged_in(alice)
        assert react(client, message).status_code == 302
        flood.local_windows.clear()  # as if the next request were served by another process
        assert react(client, message).status_code == 302
        flood.local_windows.clear()
        assert react(client, message).status_code == 429
    finally:
        shared.delete(*shared.keys("chat:limit:*") or ["-"])


def test_while_redis_is_down_this_process_counts_and_says_so(alice, message, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    limit(settings, reactions=(2, 60))
    flood._warned_at = float("-inf")
    client = logged_in(alice)
    with caplog.at_level("WARNING", logger="chat.flood"):
        assert react(client, message).status_code == 302
        assert react(client, message).status_code == 302
        assert react(client, message).status_code == 429
    assert [r.getMessage() for r in caplog.records].count("write limits unavailable in Redis; counting elsewhere") == 1


def test_the_retry_after_is_when_the_window_next_has_room(alice, message, settings, monkeypatch):
    limit(settings, reactions=(2, 60))
    now = [1000.0]
    monkeypatch.setattr(flood.local_windows, "clock", lambda: now[0])
    client = logged_in(alice)
    react(client, message)
    now[0] += 20
    react(client, message)
    now[0] += 15

    assert react(client, message)["Retry-After"] == "25"  # the first leaves the window 60 s after it came
    now[0] += 25
    assert react(client, message).status_code == 302


# --- Settings -----------------------------------------------------------------------------------------------------


def test_no_kind_allows_more_than_30_a_minute_by_default(settings):
    assert set(settings.CHAT_WRITE_LIMITS) == set(flood.NOUNS)
    for kind, (count, seconds) in settings.CHAT_WRITE_LIMITS.items():
        assert count / seconds <= 30 / 60, kind


def write_limits_seen_with(env: dict[str, str]) -> dict:
    code = "import json; from django.conf import settings as s; print(json.dumps(s.CHAT_WRITE_LIMITS))"
    return json.loads(django_process(code, env).stdout.splitlines()[-1])


def test_a_deployment_changes_kinds_with_chat_write_limits():
    limits = write_limits_seen_with({"CHAT_WRITE_LIMITS": "reactions=10/30, rooms=5, signup=off"})
    assert limits["reactions"] == [10, 30.0]
    assert limits["rooms"] == [5, 60.0]
    assert limits["signup"] is None
    assert limits["login"] == [30, 60.0]


def test_the_load_tests_switch_turns_every_kind_off_and_chat_write_limits_still_applies():
    limits = write_limits_seen_with({"ACCOUNT_RATE_LIMITS": "off", "CHAT_WRITE_LIMITS": "reactions=1/60"})
    assert limits.pop("reactions") == [1, 60.0]
    assert set(limits.values()) == {None}


def test_a_kind_that_does_not_exist_is_a_configuration_error():
    result = django_process("", {"CHAT_WRITE_LIMITS": "reaction=1/60"}, check=False)
    assert result.returncode != 0
    assert "CHAT_WRITE_LIMITS names 'reaction'" in result.stderr


@pytest.mark.parametrize("document", ["README.md", "SECURITY.md"])
def test_every_limit_is_listed_with_its_setting(document, settings):
    text = (BASE_DIR / document).read_text()
    section = text[text.index("## Limits") :].split("\n## ", 1)[0]
    for kind in settings.CHAT_WRITE_LIMITS:
        assert re.search(rf"`{kind}`", section), f"{document}, Limits: no row for `{kind}`"
    assert "CHAT_WRITE_LIMITS" in section

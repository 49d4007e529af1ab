"""The HTTP API under /api/v1/ and the personal tokens it takes (docs/api.md): what a program sends and gets back,
every refusal in its JSON shape, and the tokens page a person makes them on."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken, User
from chat import services
from chat.models import Message, Room
from chat.tests.conftest import joined, receive_until
from chat.tests.test_conversations import csrf_token, logged_in, room_joined

pytestmark = pytest.mark.django_db

live = pytest.mark.usefixtures("channel_layer")
live_db = pytest.mark.django_db(transaction=True)

TOKEN_RE = re.compile(r"chat_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
MESSAGE_KEYS = {"id", "room", "author", "text", "html", "created_at", "edited_at", "thread"}


def token_for(user: User, name: str = "script") -> str:
    return tokens.api_token_create(user=user, name=name)[1]


def call(method: str, path: str, token: str | None = None, body: object = None, *, raw: str | None = None, **extra):
    """One request as a program sends it: a fresh client (no session, no CSRF token), JSON in and out."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    client = Client(enforce_csrf_checks=True)
    if data is None:
        return getattr(client, method)(path, headers=headers, **extra)
    return getattr(client, method)(path, data=data, content_type="application/json", headers=headers, **extra)


def post(path: str, token: str | None, body: object = None, **extra):
    return call("post", path, token, body, **extra)


def error_of(response, status: int) -> str:
    """The refusal's sentence, checking its status and shape."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"].strip()
    return body["error"]


@pytest.fixture
def alice_token(alice) -> str:
    return token_for(alice)


@pytest.fixture
def bob_token(bob) -> str:
    return token_for(bob)


@pytest.fixture
def lobby(alice) -> Room:
    return room_joined(alice, "lobby")


# --- Tokens: the page ----------------------------------------------------------------------------------------------


def test_the_tokens_page_needs_a_login(client: Client):
    response = client.get("/accounts/tokens/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_every_page_links_api_tokens_in_the_account_menu(alice):
    html = logged_in(alice).get("/chat/").content.decode()
    menu = html[html.index('class="account-nav"') :]
    assert 'href="/accounts/tokens/"' in menu[: menu.index("</nav>")]


def test_a_new_token_is_shown_once_and_only_its_hash_is_stored(alice):
    client = logged_in(alice, enforce_csrf=True)
    response = client.post("/accounts/tokens/", {"name": "deploy bot", "csrfmiddlewaretoken": csrf_token(client)})

    assert response.status_code == 200
    html = response.content.decode()
    [token] = TOKEN_RE.findall(html)
    assert "shown this once" in html
    assert "no-store" in response["Cache-Control"]
    stored = ApiToken.objects.get(user=alice)
    assert stored.name == "deploy bot"
    assert stored.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token.startswith(f"chat_{stored.prefix}_")
    # Nowhere in the table: neither whole nor its secret part.
    secret = token.rsplit("_", 1)[1]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        rows = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert token not in rows
    assert secret not in rows

    again = client.get("/accounts/tokens/").content.decode()
    assert token not in again
    assert secret not in again
    assert "deploy bot" in again
    assert f"chat_{stored.prefix}_" in again
    assert "never used" in again


def test_a_token_needs_a_name_of_at_most_100_characters(alice):
    client = logged_in(alice)
    for name in ("", "   ", "x" * 101):
        response = client.post("/accounts/tokens/", {"name": name})
        assert response.status_code == 400
        assert 'id="token-error"' in response.content.decode()
    assert not ApiToken.objects.exists()


def test_making_and_revoking_tokens_need_the_csrf_token(alice, alice_token):
    client = logged_in(alice, enforce_csrf=True)
    assert client.post("/accounts/tokens/", {"name": "x"}).status_code == 403
    api_token = ApiToken.objects.get(user=alice)
    assert client.post(f"/accounts/tokens/{api_token.pk}/revoke/").status_code == 403
    assert ApiToken.objects.count() == 1
    assert ApiToken.objects.get().revoked_at is None


def test_a_revoked_token_is_refused_at_once_and_leaves_the_list(alice, alice_token):
    client = logged_in(alice, enforce_csrf=True)
    api_token = ApiToken.objects.get(user=alice)
    assert call("get", "/api/v1/rooms", alice_token).status_code == 200

    response = client.post(f"/accounts/tokens/{api_token.pk}/revoke/", {"csrfmiddlewaretoken": csrf_token(client)})

    assert response.status_code == 302
    assert response["Location"] == "/accounts/tokens/"
    page = client.get("/accounts/tokens/").content.decode()
    assert "is revoked" in page
    assert f'id="api-token-{api_token.pk}"' not in page
    assert "unknown or revoked" in error_of(call("get", "/api/v1/rooms", alice_token), 401)


def test_only_ones_own_token_can_be_revoked(alice, bob, bob_token):
    bobs = ApiToken.objects.get(user=bob)
    response = logged_in(alice).post(f"/accounts/tokens/{bobs.pk}/revoke/")
    assert response.status_code == 404
    assert ApiToken.objects.get(pk=bobs.pk).revoked_at is None
    assert call("get", "/api/v1/rooms", bob_token).status_code == 200


def test_revoking_takes_a_post(alice, alice_token):
    api_token = ApiToken.objects.get(user=alice)
    assert logged_in(alice).get(f"/accounts/tokens/{api_token.pk}/revoke/").status_code == 405


def test_staff_see_tokens_in_the_admin_without_their_secret_and_cannot_make_one(admin_client, alice, alice_token):
    api_token = ApiToken.objects.get(user=alice)
    listing = admin_client.get("/admin/accounts/apitoken/")
    assert listing.status_code == 200
    assert api_token.prefix in listing.content.decode()
    assert alice_token not in admin_client.get(f"/admin/accounts/apitoken/{api_token.pk}/change/").content.decode()
    assert admin_client.get("/admin/accounts/apitoken/add/").status_code == 403


def test_making_tokens_is_write_limited(alice, settings):
    settings.CHAT_WRITE_LIMITS = {**settings.CHAT_WRITE_LIMITS, "tokens": (2, 60)}
    client = logged_in(alice)
    for name in ("one", "two"):
        assert client.post("/accounts/tokens/", {"name": name}).status_code == 200

    response = client.post("/accounts/tokens/", {"name": "three"})

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "at most 2 changes to API tokens per minute" in response.content.decode()
    assert ApiToken.objects.count() == 2
    assert client.get("/accounts/tokens/").status_code == 200  # reading is not a write


# --- Tokens: authentication ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer chat_00000000_unknown", "Bearer nonsense", "Basic YWxpY2U6cGFzcw==", "Token x"],
)
def test_no_token_or_an_unknown_one_is_401_in_json(authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = Client().get("/api/v1/rooms", headers=headers)
    assert "token" in error_of(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_login_session_is_no_api_token(alice):
    assert "Authorization" in error_of(logged_in(alice).get("/api/v1/rooms"), 401)


def test_a_token_of_a_deactivated_account_is_401(alice, alice_token):
    alice.is_active = False
    alice.save()
    assert "inactive" in error_of(call("get", "/api/v1/rooms", alice_token), 401)


def test_a_token_of_a_deleted_account_is_401(alice, alice_token):
    alice.delete()
    error_of(call("get", "/api/v1/rooms", alice_token), 401)


def test_a_tokens_last_use_is_recorded_at_most_once_a_minute(alice, alice_token):
    api_token = ApiToken.objects.get(user=alice)
    assert api_token.last_used_at is None

    assert call("get", "/api/v1/rooms", alice_token).status_code == 200
    api_token.refresh_from_db()
    first = api_token.last_used_at
    assert first is not None
    assert timezone.now() - first < timedelta(seconds=5)

    with CaptureQueriesContext(connection) as queries:
        assert call("get", "/api/v1/rooms", alice_token).status_code == 200
    assert not [q for q in queries if q["sql"].startswith("UPDATE") and "accounts_apitoken" in q["sql"]]
    api_token.refresh_from_db()
    assert api_token.last_used_at == first

    ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=first - timedelta(minutes=2))
    assert call("get", "/api/v1/rooms", alice_token).status_code == 200
    api_token.refresh_from_db()
    assert api_token.last_used_at > first - timedelta(seconds=1)
    assert "last used" in logged_in(alice).get("/accounts/tokens/").content.decode()


# --- GET /api/v1/rooms ---------------------------------------------------------------------------------------------


def test_rooms_lists_the_sidebars_rooms_and_people_with_their_unread_counts(alice, bob, carol, alice_token):
    lobby = room_joined(alice, "lobby")
    secret = room_joined(alice, "secret")
    secret.kind = Room.Kind.PRIVATE
    secret.save()
    room_joined(bob, "bobs-own")  # not alice's
    for text in ("one", "two"):
        services.messages.message_create(room=lobby, author=bob, body=text)
    services.messages.message_create(room=lobby, author=alice, body="mine counts nothing")
    dm = services.rooms.direct_room_get_or_create(user=carol, peer=alice)
    services.messages.message_create(room=dm, author=carol, body="hi alice")

    response = call("get", "/api/v1/rooms", alice_token)

    assert response.status_code == 200
    assert response.json() == {
        "rooms": [
            {"name": "lobby", "kind": "public", "unread": 2},
            {"name": "secret", "kind": "private", "unread": 0},
        ],
        "dms": [{"username": "carol", "unread": 1}],
    }


# --- POST a message ------------------------------------------------------------------------------------------------


def test_posting_to_a_room_answers_201_with_the_message(alice, alice_token, lobby):
    response = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "hello **world** @bob"})

    assert response.status_code == 201
    message = response.json()
    assert set(message) == MESSAGE_KEYS
    stored = Message.objects.get()
    assert message["id"] == stored.pk
    assert message["room"] == "lobby"
    assert message["author"] == "alice"
    assert message["text"] == "hello **world** @bob"
    assert "<strong>world</strong>" in message["html"]
    # ISO 8601, to the millisecond.
    created_at = datetime.fromisoformat(message["created_at"].replace("Z", "+00:00"))
    assert abs(created_at - stored.created_at) < timedelta(milliseconds=1)
    assert message["edited_at"] is None
    assert message["thread"] is None
    assert stored.room == lobby
    assert stored.author == alice


def test_posting_to_a_room_in_other_casing_and_without_joining_it(bob, bob_token, lobby):
    response = post("/api/v1/rooms/LOBBY/messages", bob_token, {"text": "hi", "unknown": "ignored"})
    assert response.status_code == 201
    assert response.json()["room"] == "lobby"


def test_posting_needs_no_csrf_token_even_with_a_session(alice, alice_token, lobby):
    client = logged_in(alice, enforce_csrf=True)
    response = client.post(
        "/api/v1/rooms/lobby/messages",
        data=json.dumps({"text": "hi"}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {alice_token}"},
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("{not json", "not valid JSON"),
        ('{"text": "a"', "not valid JSON"),
        ("", "JSON object"),
        ('{"message": "hi"}', '"text"'),
        ('{"text": 12}', '"text"'),
        ('{"text": null}', '"text"'),
        ('["hi"]', "text"),
        ('{"text": "   "}', "needs some text"),
        ('{"text": "hi", "thread": "x"}', '"thread"'),
    ],
)
def test_a_bad_body_or_field_is_400_with_a_sentence(alice_token, lobby, raw, words):
    assert words in error_of(call("post", "/api/v1/rooms/lobby/messages", alice_token, raw=raw), 400)
    assert not Message.objects.exists()


def test_a_message_over_2000_characters_is_400(alice_token, lobby):
    error = error_of(post("/api/v1/rooms/lobby/messages", alice_token, {"text": "x" * 2001}), 400)
    assert "at most 2,000 characters" in error
    assert post("/api/v1/rooms/lobby/messages", alice_token, {"text": "x" * 2000}).status_code == 201


def test_a_reply_names_its_thread_and_reads_back_with_it_and_a_bad_thread_is_400(alice_token, lobby):
    first = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "first"}).json()
    response = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "reply", "thread": first["id"]})
    assert response.status_code == 201
    assert response.json()["thread"] == first["id"]
    listed = call("get", "/api/v1/rooms/lobby/messages", alice_token).json()["messages"]
    assert [(m["text"], m["thread"]) for m in listed] == [("first", None), ("reply", first["id"])]
    to_reply = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "deeper", "thread": response.json()["id"]})
    assert "A reply cannot have replies" in error_of(to_reply, 400)
    unknown = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "lost", "thread": 999_999})
    assert "nothing was sent" in error_of(unknown, 400)
    assert post("/api/v1/rooms/lobby/messages", alice_token, {"text": "plain", "thread": None}).status_code == 201


def test_a_body_over_django_s_limit_is_413(alice_token, lobby, settings):
    too_long = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = post("/api/v1/rooms/lobby/messages", alice_token, {"text": too_long})
    assert "too large" in error_of(response, 413)


def test_a_read_only_room_refuses_with_a_sentence(alice_token, lobby):
    Room.objects.filter(pk=lobby.pk).update(read_only=True)
    assert "read-only" in error_of(post("/api/v1/rooms/lobby/messages", alice_token, {"text": "hi"}), 403)
    assert not Message.objects.exists()


def test_a_room_that_does_not_exist_is_404_and_is_not_created(alice_token):
    assert "no such room" in error_of(post("/api/v1/rooms/newroom/messages", alice_token, {"text": "hi"}), 404)
    error_of(call("get", "/api/v1/rooms/newroom/messages", alice_token), 404)
    assert not Room.objects.exists()


def test_a_private_room_is_404_to_a_non_member_and_readable_by_a_member(alice, bob_token, alice_token, lobby):
    Room.objects.filter(pk=lobby.pk).update(kind=Room.Kind.PRIVATE)
    services.messages.message_create(room=lobby, author=alice, body="members only")

    assert error_of(call("get", "/api/v1/rooms/lobby/messages", bob_token), 404) == "There is no such room."
    assert error_of(post("/api/v1/rooms/lobby/messages", bob_token, {"text": "let me in"}), 404)
    assert Message.objects.count() == 1
    assert [m["text"] for m in call("get", "/api/v1/rooms/lobby/messages", alice_token).json()["messages"]] == [
        "members only"
    ]


@pytest.mark.parametrize("name", ["bad!name", "x" * 51, "~1-2"])
def test_an_invalid_room_name_is_400_with_a_sentence(alice_token, name):
    assert "Room names are" in error_of(call("get", f"/api/v1/rooms/{name}/messages", alice_token), 400)


@pytest.mark.parametrize(
    "path", ["/api/v1/rooms/a/b/messages", "/api/v1/rooms/", "/api/v1/nothing", "/api/v2/rooms", "/api/v1/docs"]
)
def test_any_other_url_under_api_is_a_404_in_json(alice_token, path):
    error_of(call("get", path, alice_token), 404)


def test_a_method_a_route_does_not_take_is_405_in_json(alice_token, lobby):
    response = call("delete", "/api/v1/rooms/lobby/messages", alice_token)
    assert "not allowed" in error_of(response, 405)
    assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


# --- GET messages ----------------------------------------------------------------------------------------------------


def posted(room: Room, author: User, count: int) -> list[int]:
    return [services.messages.message_create(room=room, author=author, body=f"m{n}").pk for n in range(count)]


def texts(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [message["text"] for message in response.json()["messages"]]


def test_reading_without_after_gives_the_newest_oldest_first_50_by_default(alice, alice_token, lobby):
    ids = posted(lobby, alice, 55)

    messages = call("get", "/api/v1/rooms/lobby/messages", alice_token).json()["messages"]

    assert [m["id"] for m in messages] == ids[-50:]
    assert all(set(m) == MESSAGE_KEYS and m["room"] == "lobby" for m in messages)
    assert texts(call("get", "/api/v1/rooms/lobby/messages?limit=3", alice_token)) == ["m52", "m53", "m54"]


def test_reading_after_an_id_gives_the_next_ones_oldest_first(alice, alice_token, lobby):
    ids = posted(lobby, alice, 10)

    assert texts(call("get", f"/api/v1/rooms/lobby/messages?after={ids[2]}&limit=4", alice_token)) == [
        "m3",
        "m4",
        "m5",
        "m6",
    ]
    assert texts(call("get", f"/api/v1/rooms/lobby/messages?after={ids[-1]}", alice_token)) == []
    assert len(texts(call("get", "/api/v1/rooms/lobby/messages?after=0&limit=100", alice_token))) == 10


def test_a_room_read_holds_its_own_messages_only(alice, bob, alice_token, lobby):
    other = room_joined(bob, "other")
    services.messages.message_create(room=other, author=bob, body="elsewhere")
    dm = services.rooms.direct_room_get_or_create(user=bob, peer=alice)
    services.messages.message_create(room=dm, author=bob, body="a whisper")
    services.messages.message_create(room=lobby, author=bob, body="here")
    assert texts(call("get", "/api/v1/rooms/lobby/messages", alice_token)) == ["here"]


def test_a_deleted_message_keeps_its_place_without_its_text(alice, alice_token, lobby):
    message = services.messages.message_create(room=lobby, author=alice, body="oops")
    services.messages.message_retract(message=message, by=alice)
    [shown] = call("get", "/api/v1/rooms/lobby/messages", alice_token).json()["messages"]
    assert (shown["id"], shown["text"], shown["html"]) == (message.pk, "", "")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "limit=", "after=-1", "after=x"])
def test_a_limit_or_after_out_of_range_is_400(alice_token, lobby, query):
    error = error_of(call("get", f"/api/v1/rooms/lobby/messages?{query}", alice_token), 400)
    assert query.split("=")[0] in error


# --- Direct conversations --------------------------------------------------------------------------------------------


def test_a_direct_conversation_over_the_api_for_both_people(alice, bob, alice_token, bob_token):
    response = post("/api/v1/dm/Bob/messages", alice_token, {"text": "psst"})
    assert response.status_code == 201
    assert response.json()["room"] == "@bob"
    assert response.json()["author"] == "alice"

    [seen] = call("get", "/api/v1/dm/alice/messages", bob_token).json()["messages"]
    assert (seen["room"], seen["author"], seen["text"]) == ("@alice", "alice", "psst")
    assert Message.objects.get().recipient == bob
    assert call("get", "/api/v1/rooms", bob_token).json()["dms"] == [{"username": "alice", "unread": 1}]


def test_a_direct_conversation_with_oneself_is_400(alice_token):
    assert "yourself" in error_of(post("/api/v1/dm/ALICE/messages", alice_token, {"text": "me"}), 400)
    assert "yourself" in error_of(call("get", "/api/v1/dm/alice/messages", alice_token), 400)


def test_a_direct_conversation_with_an_unknown_or_inactive_user_is_404(alice_token, carol):
    carol.is_active = False
    carol.save()
    for username in ("nobody", "carol"):
        error_of(post(f"/api/v1/dm/{username}/messages", alice_token, {"text": "hi"}), 404)
        error_of(call("get", f"/api/v1/dm/{username}/messages", alice_token), 404)
    assert not Message.objects.exists()


def test_a_third_person_reads_only_their_own_direct_conversation(alice, bob, carol, alice_token):
    dm = services.rooms.direct_room_get_or_create(user=alice, peer=bob)
    services.messages.message_create(room=dm, author=alice, body="between us")
    carol_token = token_for(carol)
    assert texts(call("get", "/api/v1/dm/alice/messages", carol_token)) == []
    assert texts(call("get", "/api/v1/dm/bob/messages", carol_token)) == []


# --- Limits ----------------------------------------------------------------------------------------------------------


def test_api_writes_over_the_limit_are_429_with_retry_after(alice_token, lobby, settings):
    settings.CHAT_WRITE_LIMITS = {**settings.CHAT_WRITE_LIMITS, "api": (2, 60)}
    for _ in range(5):  # reads are not writes
        assert call("get", "/api/v1/rooms/lobby/messages", alice_token).status_code == 200
    for text in ("one", "two"):
        assert post("/api/v1/rooms/lobby/messages", alice_token, {"text": text}).status_code == 201

    response = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "three"})

    assert error_of(response, 429).startswith("Slow down: at most 2 writes over the API per minute.")
    assert 0 < int(response["Retry-After"]) <= 60
    assert Message.objects.count() == 2
    assert post("/api/v1/dm/bob/messages", alice_token, {"text": "also counted"}).status_code == 429


def test_the_api_limit_counts_per_user(alice_token, bob_token, lobby, settings):
    settings.CHAT_WRITE_LIMITS = {**settings.CHAT_WRITE_LIMITS, "api": (1, 60)}
    assert post("/api/v1/rooms/lobby/messages", alice_token, {"text": "a"}).status_code == 201
    assert post("/api/v1/rooms/lobby/messages", bob_token, {"text": "b"}).status_code == 201
    assert post("/api/v1/rooms/lobby/messages", alice_token, {"text": "c"}).status_code == 429


def test_the_message_flood_limit_holds_over_the_api_with_retry_after(alice_token, lobby, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = 2
    for text in ("one", "two"):
        assert post("/api/v1/rooms/lobby/messages", alice_token, {"text": text}).status_code == 201

    response = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "three"})

    assert error_of(response, 429).startswith("Slow down: at most 2 messages in 10 seconds.")
    assert response["Retry-After"] == "10"
    assert Message.objects.count() == 2


# --- The OpenAPI document --------------------------------------------------------------------------------------------


def test_the_openapi_document_is_served_without_a_token_and_names_every_route():
    response = Client().get("/api/v1/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert set(paths["/api/v1/rooms"]) == {"get"}
    assert set(paths["/api/v1/rooms/{room}/messages"]) == {"get", "post"}
    assert set(paths["/api/v1/dm/{username}/messages"]) == {"get", "post"}
    assert {"429", "401", "404"} <= set(paths["/api/v1/rooms/{room}/messages"]["post"]["responses"])
    schemes = document["components"]["securitySchemes"]
    assert [scheme["scheme"] for scheme in schemes.values()] == ["bearer"]
    message = document["components"]["schemas"]["MessageOut"]["properties"]
    assert set(message) == MESSAGE_KEYS


# --- Live ------------------------------------------------------------------------------------------------------------


@live_db
@live
async def test_a_message_posted_over_the_api_reaches_an_open_page_live(alice, bob):
    page = await joined(alice, "lobby")
    token = await sync_to_async(token_for)(bob)

    response = await sync_to_async(post)("/api/v1/rooms/lobby/messages", token, {"text": "hello from a script"})

    assert response.status_code == 201
    frame = await receive_until(page, lambda f: "hello from a script" in f)
    assert f'id="message-{response.json()["id"]}"' in frame
    await page.disconnect()


def test_a_post_sent_again_under_its_key_answers_200_with_the_message_stored_once(alice, alice_token, bob, lobby):
    key = "c" * 32
    first = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "retried after a timeout", "key": key})
    again = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "retried after a timeout", "key": key})
    direct = [post("/api/v1/dm/bob/messages", alice_token, {"text": "just once", "key": "d" * 32}) for _ in range(2)]

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert [response.status_code for response in direct] == [201, 200]
    assert direct[1].json() == direct[0].json()
    assert direct[1].json()["room"] == "@bob"
    assert list(Message.objects.order_by("pk").values_list("body", flat=True)) == [
        "retried after a timeout",
        "just once",
    ]


@pytest.mark.parametrize("key", ["", "short", "C" * 32, "c" * 33, 5])
def test_a_key_that_is_not_32_lowercase_hex_digits_is_refused_with_a_sentence(alice, alice_token, lobby, key):
    response = post("/api/v1/rooms/lobby/messages", alice_token, {"text": "hello", "key": key})

    assert "key" in error_of(response, 400)
    assert not Message.objects.exists()

"""Messages (chat.services.messages): parsing, the flood limit, mentions, edits and retractions, without a socket."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from django.db import DatabaseError
from django.utils import timezone

from chat import errors, flood, selectors, services
from chat.models import Message, Room
from chat.tests.conftest import direct_message
from tests.support.servers import redis_url_or_skip

pytestmark = pytest.mark.django_db


@pytest.fixture
def room() -> Room:
    return services.rooms.room_get_or_create(name="lobby")


def test_a_private_command_names_a_user_in_any_casing(alice, bob):
    parsed = services.messages.message_parse(author=alice, text="  /pm BoB  hi there \n")
    assert parsed == services.messages.ParsedMessage(body="hi there", recipient=bob)


@pytest.mark.parametrize("text", ["/Pm bob secret", "/PM bob secret", "/pM   bob   secret"])
def test_the_private_command_is_known_in_any_casing(alice, bob, text):
    assert services.messages.message_parse(author=alice, text=text) == services.messages.ParsedMessage(
        body="secret", recipient=bob
    )


@pytest.mark.parametrize("text", ["/pn bob secret", "/msg bob secret", "/pmx hello", "/shrug", "/PN bob"])
def test_a_line_naming_no_known_command_is_refused_naming_the_known_ones(alice, bob, text):
    with pytest.raises(errors.ChatError) as refused:
        services.messages.message_parse(author=alice, text=text)
    assert refused.value.reason == "unknown_command"
    assert "/pm <username> <text>" in str(refused.value)
    assert "//" in str(refused.value)


def test_two_slashes_send_a_line_that_starts_with_one(alice):
    assert services.messages.message_parse(author=alice, text="//etc/hosts is full") == (
        services.messages.ParsedMessage(body="/etc/hosts is full")
    )


@pytest.mark.parametrize("text", ["/", "/ not a command", "1/2 of the cake"])
def test_a_slash_not_followed_by_a_word_is_an_ordinary_message(alice, text):
    assert services.messages.message_parse(author=alice, text=text).body == text


def test_a_private_message_to_a_deactivated_account_is_refused_as_to_nobody(alice, bob):
    bob.is_active = False
    bob.save()
    with pytest.raises(errors.ChatError) as refused:
        services.messages.message_parse(author=alice, text=f"/pm {bob.username} hello")
    assert refused.value.reason == "pm_unknown_user"


def test_a_message_of_exactly_the_limit_is_accepted(alice, room):
    message = services.messages.message_post(room=room, author=alice, text="y" * 2000)
    assert len(message.body) == 2000


def test_the_rate_limit_counts_only_the_sliding_window(alice, room):
    for _ in range(10):
        services.messages.message_create(room=room, author=alice, body="old")
    Message.objects.update(created_at=timezone.now() - timedelta(seconds=11))
    assert services.messages.message_post(room=room, author=alice, text="fresh").body == "fresh"


def test_the_rate_limit_is_per_user(alice, bob, room):
    for _ in range(10):
        services.messages.message_create(room=room, author=alice, body="burst")
    with pytest.raises(errors.ChatError, match="Slow down"):
        services.messages.message_post(room=room, author=alice, text="more")
    assert services.messages.message_post(room=room, author=bob, text="unaffected").author == bob


@pytest.fixture
def redis_flood(settings):
    """Flood control counted in a real Redis (REDIS_URL set), from an empty window for this test's users."""
    import redis

    settings.REDIS_URL = redis_url_or_skip()
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.delete(*client.keys("chat:flood:*") or ["-"])


def test_with_redis_the_eleventh_message_in_ten_seconds_is_refused_without_a_database_count(
    alice, bob, room, redis_flood, django_assert_num_queries
):
    redis_flood.delete(flood.window_key(alice.pk), flood.window_key(bob.pk))
    for i in range(10):
        services.messages.message_post(room=room, author=alice, text=f"burst {i}")
    with pytest.raises(errors.ChatError, match="Slow down"):
        services.messages.message_post(room=room, author=alice, text="more")
    assert Message.objects.filter(author=alice).count() == 10
    # No lock, no COUNT: SAVEPOINT, INSERT, the room's last activity, who it notifies by email (nobody), RELEASE (the
    # test's own transaction); on a socket BEGIN, INSERT, UPDATE, SELECT, COMMIT.
    with django_assert_num_queries(5):
        services.messages.message_post(room=room, author=bob, text="counted in Redis")


def test_with_redis_a_message_the_database_refuses_is_not_counted(alice, room, redis_flood, monkeypatch):
    redis_flood.delete(flood.window_key(alice.pk))

    def refuse(**kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(services.messages, "message_create", refuse)
    for _ in range(12):
        with pytest.raises(errors.StorageError):
            services.messages.message_post(room=room, author=alice, text="not stored")
    assert redis_flood.zcard(flood.window_key(alice.pk)) == 0


def test_while_redis_is_down_the_database_counts_and_still_refuses_the_eleventh(alice, room, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    for i in range(10):
        services.messages.message_post(room=room, author=alice, text=f"burst {i}")
    with pytest.raises(errors.ChatError, match="Slow down"):
        services.messages.message_post(room=room, author=alice, text="more")
    assert Message.objects.filter(author=alice).count() == 10


def test_history_merges_the_room_with_the_users_private_messages(alice, bob, carol, room):
    other = services.rooms.room_get_or_create(name="other")
    public = services.messages.message_create(room=room, author=bob, body="public")
    services.messages.message_create(room=other, author=bob, body="elsewhere")
    to_alice = direct_message(bob, alice, "psst")
    direct_message(bob, carol, "not for alice")
    assert selectors.message_list_recent(room=room, user=alice) == [public, to_alice]
    # The conversation itself shows its own messages only.
    assert selectors.message_list_recent(room=to_alice.room, user=alice) == [to_alice]


def test_sending_a_message_is_one_insert_plus_the_rate_check(alice, room, django_assert_num_queries):
    # The rate check locks the author's row, then counts (SECURITY.md); the room's last activity is kept for the
    # directory's order; one SELECT finds whom it notifies by email (nobody here); SAVEPOINT and RELEASE are there
    # only because this test runs inside a transaction: a socket's post is BEGIN, lock, count, INSERT, UPDATE,
    # SELECT, COMMIT.
    with django_assert_num_queries(7):
        services.messages.message_post(room=room, author=alice, text="counted")


def test_a_mention_of_an_existing_user_is_recorded_and_shown_as_a_mention(alice, bob, room):
    message = services.messages.message_create(room=room, author=alice, body="@BOB and @ghost, see @alice. mail a@b")
    assert list(message.mentions.all()) == [bob]
    assert message.body_html == '<p><span class="mention">@BOB</span> and @ghost, see @alice. mail a@b</p>'


def test_a_mention_costs_one_query_to_find_the_user_and_one_to_record_it(alice, bob, room, django_assert_num_queries):
    # INSERT, the room's last activity, who it names, the mention's row, who it notifies by email.
    with django_assert_num_queries(5):
        message = services.messages.message_create(room=room, author=alice, body="hello @bob")
    with django_assert_num_queries(0):
        assert (message.mentioned_ids, list(message.mentions.all())) == ([bob.pk], [bob])
    assert list(Message.objects.get(pk=message.pk).mentions.all()) == [bob]


def test_a_message_without_an_at_sign_costs_no_mention_query(alice, room, django_assert_num_queries):
    message = services.messages.message_create(room=room, author=alice, body="plain")
    with django_assert_num_queries(0):
        assert message.mentioned_ids == []
        assert message.body_markup == "<p>plain</p>"


def test_authors_edit_their_messages_within_the_window_and_nobody_else_can(alice, bob, room):
    message = services.messages.message_create(room=room, author=alice, body="typo")
    with pytest.raises(errors.ChatError, match="only change your own"):
        services.messages.message_edit(message=message, by=bob, body="hijacked")
    services.messages.message_edit(message=message, by=alice, body="fixed @bob")
    message.refresh_from_db()
    assert (message.body, message.edited_at is not None, list(message.mentions.all())) == ("fixed @bob", True, [bob])

    Message.objects.filter(pk=message.pk).update(created_at=timezone.now() - timedelta(minutes=16))
    message.refresh_from_db()
    with pytest.raises(errors.ChatError, match="15 minutes"):
        services.messages.message_edit(message=message, by=alice, body="too late")


def test_nothing_changes_in_a_read_only_room(alice, room):
    message = services.messages.message_create(room=room, author=alice, body="frozen")
    Room.objects.filter(pk=room.pk).update(read_only=True)
    message.room.refresh_from_db()
    for change in (partial(services.messages.message_edit, body="thawed"), services.messages.message_retract):
        with pytest.raises(errors.ChatError, match="read-only"):
            change(message=message, by=alice)


def test_a_retracted_message_keeps_its_place_but_not_its_text(alice, bob, room):
    message = services.messages.message_create(room=room, author=alice, body="oops @bob")
    with pytest.raises(errors.ChatError):
        services.messages.message_retract(message=message, by=bob)
    services.messages.message_retract(message=message, by=alice)
    message.refresh_from_db()
    assert (message.body, message.retracted_at is not None, message.mentioned_ids) == ("", True, [])
    with pytest.raises(errors.ChatError, match="deleted"):
        services.messages.message_edit(message=message, by=alice, body="back")


def test_marking_a_room_read_returns_the_previous_mark(alice, bob, room):
    assert services.memberships.conversation_mark_read(room=room, user=alice) is None  # not a member: nothing to mark
    assert (
        services.memberships.conversation_mark_read(room=room, user=alice, join=True) is None
    )  # joined now, read to here
    first = services.messages.message_create(room=room, author=bob, body="one")
    assert services.memberships.conversation_mark_read(room=room, user=alice) == 0
    assert services.memberships.conversation_mark_read(room=room, user=alice) == first.pk

"""Email notifications (chat.services.emails): who a message notifies, one email gathering what was missed, the window,
the claims that keep two workers from emailing one message twice, and the preference and unsubscribe pages."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.db import connection
from django.db.models import F
from django.test import Client
from django.urls import reverse

from chat import services
from chat.models import EmailNotice, Membership, Message, NotificationPreference, Room
from chat.services.emails import missed_messages_send, unsubscribe_token
from tests.support.servers import free_port

pytestmark = pytest.mark.django_db

DELAY = 60


@pytest.fixture(autouse=True)
def email_settings(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CHAT_EMAIL_DELAY_SECONDS = DELAY
    settings.CHAT_PUBLIC_URL = "https://chat.example.com"
    return settings


@pytest.fixture
def addressed(alice, bob, carol):
    """Alice, Bob and Carol, each with an email address."""
    for user in (alice, bob, carol):
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])
    return alice, bob, carol


@pytest.fixture
def room(addressed) -> Room:
    """A public room Alice, Bob and Carol have joined (at the rooms' default level, mentions)."""
    lobby = services.rooms.room_get_or_create(name="lobby")
    for user in addressed:
        services.memberships.conversation_mark_read(room=lobby, user=user, join=True)
    return lobby


def direct(author, recipient, body: str) -> Message:
    conversation = services.rooms.direct_room_get_or_create(user=author, peer=recipient)
    return services.messages.message_create(room=conversation, author=author, body=body)


def post(room: Room, author, body: str) -> Message:
    return services.messages.message_create(room=room, author=author, body=body)


def level_set(user, room: Room, level: str) -> None:
    Membership.objects.filter(user=user, room=room).update(level=level)


def time_passes(seconds: float = DELAY) -> None:
    """Everything waiting was sent `seconds` earlier (and each last email too)."""
    shift = timedelta(seconds=seconds)
    EmailNotice.objects.update(created_at=F("created_at") - shift)
    Message.objects.update(created_at=F("created_at") - shift)
    NotificationPreference.objects.exclude(last_emailed_at=None).update(last_emailed_at=F("last_emailed_at") - shift)


def noticed(user) -> list[str]:
    return list(EmailNotice.objects.filter(user=user).order_by("id").values_list("message__body", flat=True))


def mark_read(user, room: Room) -> None:
    services.memberships.conversation_mark_read(room=room, user=user)


def test_a_direct_message_notifies_its_recipient_with_an_address_and_never_its_author(addressed):
    alice, bob, _ = addressed
    direct(alice, bob, "lunch?")
    assert noticed(bob) == ["lunch?"]
    assert noticed(alice) == []


def test_a_room_message_notifies_mentioned_members_and_members_at_all(room, addressed):
    alice, bob, carol = addressed
    post(room, alice, "nobody named here")
    assert noticed(bob) == noticed(carol) == []
    post(room, alice, "@bob look")
    assert noticed(bob) == ["@bob look"]
    assert noticed(carol) == []
    level_set(carol, room, Membership.Level.ALL)
    post(room, alice, "for everyone")
    assert noticed(carol) == ["for everyone"]
    assert noticed(bob) == ["@bob look"]
    assert noticed(alice) == []


def test_a_mention_of_someone_who_is_not_a_member_notifies_nobody(room, addressed, make_user):
    alice, *_ = addressed
    dave = make_user("dave")
    dave.email = "dave@example.com"
    dave.save()
    post(room, alice, "@dave are you here?")
    assert noticed(dave) == []


def test_nothing_is_noted_for_a_muted_member_one_with_emails_off_or_without_an_address(room, addressed, make_user):
    alice, bob, carol = addressed
    level_set(bob, room, Membership.Level.NOTHING)
    services.emails.email_enabled_set(user=carol, enabled=False)
    nobody = make_user("noaddress")
    services.memberships.conversation_mark_read(room=room, user=nobody, join=True)
    post(room, alice, "@bob @carol @noaddress hello")
    assert noticed(bob) == noticed(carol) == noticed(nobody) == []
    conversation = services.rooms.direct_room_get_or_create(user=alice, peer=bob)
    level_set(bob, conversation, Membership.Level.NOTHING)
    direct(alice, bob, "muted")
    assert noticed(bob) == []


def test_with_verification_configured_only_a_verified_address_is_emailed(addressed, settings):
    from allauth.account.models import EmailAddress

    alice, bob, carol = addressed
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    EmailAddress.objects.create(user=bob, email=bob.email, primary=True, verified=False)
    EmailAddress.objects.create(user=carol, email=carol.email, primary=True, verified=True)
    direct(alice, bob, "unverified")
    direct(alice, carol, "verified")
    assert noticed(bob) == []
    assert noticed(carol) == ["verified"]


def test_a_room_message_that_notifies_nobody_costs_one_query(room, addressed, django_assert_num_queries):
    alice, *_ = addressed
    with django_assert_num_queries(1):
        services.emails.email_notices_record(message=Message(room=room, author=alice, body="hi"), mentioned_ids=[])


def test_the_first_notice_enqueues_the_task_for_when_it_is_due_and_the_next_ones_rely_on_it(addressed):
    from django_tasks_db.models import DBTaskResult

    alice, bob, _ = addressed
    first = direct(alice, bob, "one")
    direct(alice, bob, "two")
    tasks = list(DBTaskResult.objects.values_list("task_path", "args_kwargs", "run_after"))
    assert tasks == [
        (
            "chat.services.emails.missed_messages_email",
            {"args": [bob.pk], "kwargs": {}},
            first.created_at + timedelta(seconds=DELAY),
        )
    ]


def test_missed_messages_are_gathered_into_one_email_with_text_html_links_and_unsubscribe_headers(room, addressed):
    alice, bob, carol = addressed
    direct(alice, bob, "lunch at *noon*?")
    post(room, carol, "@bob <b>the</b> build is red")
    time_passes()
    assert missed_messages_send(user_id=bob.pk) is None
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["bob@example.com"]
    assert sent.subject == "2 messages you missed in Chat"
    for text in ("alice", "@alice", "lunch at *noon*?", "carol", "#lobby", "@bob <b>the</b> build is red"):
        assert text in sent.body
    html, kind = sent.alternatives[0]
    assert kind == "text/html"
    assert "@bob &lt;b&gt;the&lt;/b&gt; build is red" in html
    dm_message, room_message = Message.objects.order_by("id")
    assert f"https://chat.example.com/dm/alice/messages/{dm_message.pk}/" in sent.body
    assert f'href="https://chat.example.com/chat/lobby/messages/{room_message.pk}/"' in html
    unsubscribe = f"https://chat.example.com/accounts/notifications/unsubscribe/{unsubscribe_token(user_id=bob.pk)}/"
    assert sent.extra_headers["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert sent.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert unsubscribe in sent.body
    assert unsubscribe in html
    assert noticed(bob) == []


def test_what_was_read_in_time_is_never_emailed_and_its_notices_go(addressed):
    alice, bob, _ = addressed
    message = direct(alice, bob, "read me")
    mark_read(bob, message.room)
    time_passes()
    assert missed_messages_send(user_id=bob.pk) is None
    assert mail.outbox == []
    assert noticed(bob) == []
    assert NotificationPreference.objects.get(user=bob).last_emailed_at is None  # the window was not spent


def test_muted_since_retracted_or_emails_turned_off_since_sends_nothing(room, addressed):
    alice, bob, carol = addressed
    post(room, alice, "@bob muted later")
    level_set(bob, room, Membership.Level.NOTHING)
    retracted = post(room, alice, "@carol oops")
    services.messages.message_retract(message=retracted, by=alice)
    direct(alice, carol, "off later")
    NotificationPreference.objects.create(user=carol, email_enabled=False)
    time_passes()
    assert missed_messages_send(user_id=bob.pk) is None
    assert missed_messages_send(user_id=carol.pk) is None
    assert mail.outbox == []
    assert EmailNotice.objects.count() == 0


def test_a_recent_message_alone_waits_for_its_own_time(addressed):
    alice, bob, _ = addressed
    read = direct(alice, bob, "old, read")
    mark_read(bob, read.room)
    time_passes()
    recent = direct(alice, bob, "just sent")
    next_run = missed_messages_send(user_id=bob.pk)
    assert mail.outbox == []
    assert next_run == recent.created_at + timedelta(seconds=DELAY)
    assert noticed(bob) == ["just sent"]


def test_one_email_per_window_then_the_rest_at_the_windows_end(addressed):
    alice, bob, _ = addressed
    direct(alice, bob, "first")
    time_passes()
    assert missed_messages_send(user_id=bob.pk) is None
    emailed_at = NotificationPreference.objects.get(user=bob).last_emailed_at
    direct(alice, bob, "second")
    time_passes(DELAY / 2)  # the second is due in half a window, but the window ends sooner
    EmailNotice.objects.update(created_at=F("created_at") - timedelta(seconds=DELAY / 2))
    next_run = missed_messages_send(user_id=bob.pk)
    assert len(mail.outbox) == 1
    assert next_run == emailed_at - timedelta(seconds=DELAY / 2) + timedelta(seconds=DELAY)
    time_passes(DELAY / 2)
    assert missed_messages_send(user_id=bob.pk) is None
    assert len(mail.outbox) == 2
    assert "second" in mail.outbox[1].body
    assert "first" not in mail.outbox[1].body


def test_a_run_whose_claim_finds_the_notices_taken_sends_nothing(addressed):
    alice, bob, _ = addressed
    direct(alice, bob, "only once")
    time_passes()
    EmailNotice.objects.update(claimed_by="another-worker")
    assert missed_messages_send(user_id=bob.pk) is None
    assert mail.outbox == []


@pytest.mark.parametrize("window_taken_back", [False, True])
def test_a_second_run_while_the_first_sends_never_emails_a_message_twice(addressed, monkeypatch, window_taken_back):
    """Another worker runs the same user's task while this one is sending, and a new message is due meanwhile: the
    window holds it back; were the window open again, it would email only the new message (the first run claimed
    the others)."""
    alice, bob, _ = addressed
    direct(alice, bob, "exactly once")
    time_passes()
    send = services.emails.missed_messages_email_send
    inner: list = []
    started = []

    def meanwhile(**kwargs) -> None:
        if not started:
            started.append(True)
            late = direct(alice, bob, "arrived meanwhile")
            due_now = {"created_at": F("created_at") - timedelta(seconds=DELAY)}
            EmailNotice.objects.filter(message=late).update(**due_now)
            Message.objects.filter(pk=late.pk).update(**due_now)
            if window_taken_back:
                NotificationPreference.objects.filter(user=bob).update(last_emailed_at=None)
            inner.append(missed_messages_send(user_id=bob.pk))
        send(**kwargs)

    monkeypatch.setattr(services.emails, "missed_messages_email_send", meanwhile)
    missed_messages_send(user_id=bob.pk)
    bodies = [message.body for message in mail.outbox]
    assert sum("exactly once" in body for body in bodies) == 1
    if window_taken_back:
        assert len(bodies) == 2
        assert sum("arrived meanwhile" in body for body in bodies) == 1
    else:
        assert len(bodies) == 1
        assert inner[0] is not None  # the window's end: the new message goes then
        assert noticed(bob) == ["arrived meanwhile"]


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_one_email(addressed):
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith(("file:memorydb", ":memory:")):
        pytest.skip("two threads need a database file or PostgreSQL; the system test runs two real workers")
    alice, bob, _ = addressed
    direct(alice, bob, "once")
    time_passes()
    start = threading.Barrier(2)
    failures = []

    def worker() -> None:
        try:
            start.wait()
            missed_messages_send(user_id=bob.pk)
        except Exception as error:
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert len(mail.outbox) == 1


def test_an_email_that_cannot_be_sent_waits_for_the_next_try(addressed, settings):
    alice, bob, _ = addressed
    direct(alice, bob, "retry me")
    time_passes()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    next_run = missed_messages_send(user_id=bob.pk)
    assert next_run is not None
    assert noticed(bob) == ["retry me"]
    assert EmailNotice.objects.get().claimed_by == ""
    assert NotificationPreference.objects.get(user=bob).last_emailed_at is None


class Sink:
    """An SMTP server's handler keeping every message it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


def test_the_email_goes_out_by_smtp_as_text_and_html_alternatives(addressed, settings):
    alice, bob, _ = addressed
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
        message = direct(alice, bob, "über the wire")
        time_passes()
        missed_messages_send(user_id=bob.pk)
    finally:
        controller.stop()
    assert len(sink.received) == 1
    recipients, raw = sink.received[0]
    assert recipients == ["bob@example.com"]
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "1 message you missed in Chat"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(
        r"<https://chat\.example\.com/accounts/notifications/unsubscribe/[^/]+/>", parsed["List-Unsubscribe"].strip()
    )
    text = parsed.get_body(("plain",)).get_content()
    assert "über the wire" in text
    assert f"https://chat.example.com/dm/alice/messages/{message.pk}/" in text


# The pages.


def test_the_preference_page_needs_a_login(client):
    response = client.get(reverse("notifications"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_the_preference_page_shows_the_address_and_turns_emails_off_and_on(addressed):
    _, bob, _ = addressed
    client = Client()
    client.force_login(bob)
    page = client.get(reverse("notifications")).content.decode()
    assert "bob@example.com" in page
    assert 'name="email" value="on" checked' in page
    response = client.post(reverse("notifications"), {"email": "off"})
    assert response.status_code == 302
    assert response["Location"] == reverse("notifications")
    assert NotificationPreference.objects.get(user=bob).email_enabled is False
    page = client.get(reverse("notifications")).content.decode()
    assert 'name="email" value="off" checked' in page
    assert "are off" in page
    client.post(reverse("notifications"), {"email": "on"})
    assert NotificationPreference.objects.get(user=bob).email_enabled is True
    assert client.post(reverse("notifications"), {"email": "maybe"}).status_code == 400


def test_the_preference_page_without_an_address_says_so_and_links_to_the_email_page(alice_client):
    page = alice_client.get(reverse("notifications")).content.decode()
    assert "no email address" in page
    assert f'href="{reverse("account_email")}"' in page


def test_the_preference_form_needs_its_csrf_token(addressed):
    _, bob, _ = addressed
    client = Client(enforce_csrf_checks=True)
    client.force_login(bob)
    assert client.post(reverse("notifications"), {"email": "off"}).status_code == 403
    assert not NotificationPreference.objects.filter(user=bob, email_enabled=False).exists()


def test_the_unsubscribe_link_turns_emails_off_without_a_login_and_its_button_on_again(addressed):
    alice, bob, _ = addressed
    url = reverse("notifications_unsubscribe", args=[unsubscribe_token(user_id=bob.pk)])
    direct(alice, bob, "waiting")
    page = Client().get(url)
    assert page.status_code == 200
    assert "No more emails" in page.content.decode()
    assert NotificationPreference.objects.get(user=bob).email_enabled is False
    assert noticed(bob) == []
    again = Client(enforce_csrf_checks=True).post(url, {"email": "on"})
    assert again.status_code == 200
    assert NotificationPreference.objects.get(user=bob).email_enabled is True


def test_one_click_unsubscribe_is_a_post_without_cookies_or_csrf(addressed):
    _, bob, _ = addressed
    url = reverse("notifications_unsubscribe", args=[unsubscribe_token(user_id=bob.pk)])
    response = Client(enforce_csrf_checks=True).post(url, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert NotificationPreference.objects.get(user=bob).email_enabled is False


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_bad_unsubscribe_token_changes_nothing(addressed, method):
    _, bob, _ = addressed
    forged = unsubscribe_token(user_id=bob.pk)[:-2] + "xx"
    response = getattr(Client(), method)(reverse("notifications_unsubscribe", args=[forged]))
    assert response.status_code == 404
    assert "does not work" in response.content.decode()
    assert not NotificationPreference.objects.filter(user=bob).exists()


def test_the_account_menu_links_the_email_and_notifications_pages(alice_client):
    page = alice_client.get(reverse("notifications")).content.decode()
    menu = page[page.index('class="account-nav"') :]
    assert f'href="{reverse("account_email")}"' in menu
    assert f'href="{reverse("notifications")}"' in menu


# --- Replies in followed threads -------------------------------------------------------------------------------------


def reply(room: Room, author, parent: Message, body: str) -> Message:
    return services.messages.message_create(room=room, author=author, body=body, parent=parent)


def test_a_reply_notifies_the_threads_followers_not_the_room_and_links_into_the_thread(room, addressed):
    alice, bob, carol = addressed
    level_set(carol, room, Membership.Level.ALL)  # every room message, but not replies she does not follow
    parent = post(room, alice, "ship it?")
    reply(room, bob, parent, "after the review")
    assert noticed(alice) == ["after the review"]
    assert "after the review" not in noticed(carol)
    time_passes()
    assert missed_messages_send(user_id=alice.pk) is None
    sent = mail.outbox[0]
    answer = Message.objects.get(body="after the review")
    assert "#lobby, in a thread" in sent.body
    assert f"https://chat.example.com/chat/lobby/messages/{answer.pk}/" in sent.body
    response = Client()
    response.force_login(alice)
    assert response.get(f"/chat/lobby/messages/{answer.pk}/")["Location"] == (
        f"/chat/lobby/threads/{parent.pk}/#message-{answer.pk}"
    )


def test_a_reply_seen_in_its_thread_in_time_is_not_emailed_and_a_muted_room_notes_none(room, addressed):
    alice, bob, _ = addressed
    parent = post(room, alice, "question")
    reply(room, bob, parent, "seen in time")
    services.threads.thread_mark_read(parent=parent, user=alice)
    time_passes()
    assert missed_messages_send(user_id=alice.pk) is None
    assert mail.outbox == []
    level_set(alice, room, Membership.Level.NOTHING)
    reply(room, bob, parent, "muted")
    assert noticed(alice) == []

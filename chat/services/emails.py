"""Email notifications: the messages a person missed, gathered into one email a while after they were sent.

`email_notices_record` runs with each new message, in its transaction: it notes who the message notifies (and
wants emails) and enqueues `missed_messages_email` for them, to run CHAT_EMAIL_DELAY_SECONDS later in the worker
(`manage.py db_worker`). `missed_messages_send` is that task's work: at most one email per window per person, each
message in at most one email however many workers run, nothing for what was read in time.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_tasks import task

from accounts.models import User
from chat.models import EmailNotice, Membership, Message, NotificationPreference, ThreadFollow

logger = logging.getLogger(__name__)

# A token in an unsubscribe link is good for this purpose only (another signed value cannot stand in for it).
UNSUBSCRIBE_SALT = "chat.emails.unsubscribe"
# The longest text of one message an email quotes; the link shows the rest.
QUOTE_MAX_CHARS = 500
# A new notice relies on a waiting one's task only when that task is this far in the future: a worker claiming the
# waiting notice meanwhile cannot miss the new one (still uncommitted on PostgreSQL) and leave it without a task.
TASK_RELY_MARGIN = timedelta(seconds=5)


def email_delay() -> timedelta:
    return timedelta(seconds=settings.CHAT_EMAIL_DELAY_SECONDS)


def email_notices_record(*, message: Message, mentioned_ids: list[int] | tuple[int, ...] = ()) -> None:
    """Note who the new message notifies and wants it emailed if unread; call it in the message's transaction.

    What notifies a member (README, "Notifications by email"): a direct conversation's message its recipient; a
    room's message members at level `all`, and mentioned members at `mentions` or `all`; a reply its thread's
    followers; never the author, never a member at `nothing`. One query finds them, with an address and emails on,
    and whether a notice of theirs is already waiting (its task will gather this one too); a message that notifies
    nobody costs that one query.
    """
    room = message.room
    if message.parent_id is not None:  # a reply: its thread's followers (recorded before this), unless muted
        muted = Membership.objects.filter(user_id=OuterRef("user_id"), room_id=room.pk, level=Membership.Level.NOTHING)
        members = ThreadFollow.objects.filter(thread_id=message.parent_id).exclude(user_id=message.author_id)
        members = members.exclude(Exists(muted))
    else:
        members = Membership.objects.filter(room_id=room.pk).exclude(user_id=message.author_id)
        if room.is_direct:
            members = members.filter(user_id=message.recipient_id).exclude(level=Membership.Level.NOTHING)
        else:
            notified = Q(level=Membership.Level.ALL)
            if mentioned_ids:
                notified |= Q(level=Membership.Level.MENTIONS, user_id__in=list(mentioned_ids))
            members = members.filter(notified)
    emails_off = NotificationPreference.objects.filter(user_id=OuterRef("user_id"), email_enabled=False)
    due = message.created_at + email_delay()
    # A waiting notice's task (at its created_at + the delay) is relied on when it runs at least the margin from now.
    relied_on = EmailNotice.objects.filter(created_at__gt=message.created_at - email_delay() + TASK_RELY_MARGIN)
    waiting = relied_on.filter(user_id=OuterRef("user_id"), claimed_by="")
    members = members.filter(user__is_active=True).exclude(user__email="")
    if settings.ACCOUNT_EMAIL_VERIFICATION != "none":  # verification is on: only to a verified address
        verified = EmailAddress.objects.filter(user_id=OuterRef("user_id"), email__iexact=OuterRef("user__email"))
        members = members.filter(Exists(verified.filter(verified=True)))
    recipients = list(
        members.exclude(Exists(emails_off)).annotate(waiting=Exists(waiting)).values_list("user_id", "waiting")
    )
    if not recipients:
        return
    EmailNotice.objects.bulk_create(
        [EmailNotice(user_id=user_id, message=message, created_at=message.created_at) for user_id, _ in recipients],
        ignore_conflicts=True,
    )
    # The task goes into the same transaction: no email for a message that was rolled back, none lost on a crash.
    for user_id, waiting_already in recipients:
        if not waiting_already:
            missed_messages_email.using(run_after=due).enqueue(user_id)


@dataclass(frozen=True)
class MissedMessage:
    """One line of an email: who wrote what where, and the absolute link to it in its conversation."""

    author: str
    conversation: str
    text: str
    url: str
    sent_at: datetime


def missed_messages_send(*, user_id: int) -> datetime | None:
    """Email the user what notified them and is still unread, if anything; when to run again, if ever.

    Two conditional UPDATEs make it safe with any number of workers: the first takes the user's window (one email per
    CHAT_EMAIL_DELAY_SECONDS), the second claims the waiting notices with a token of this run's own, so no message
    is emailed twice. A notice is dropped, never emailed, when its message was read in time, retracted, muted, or
    its conversation left, or the user has no address or turned emails off.
    """
    now = timezone.now()
    delay = email_delay()
    waiting = EmailNotice.objects.filter(user_id=user_id, claimed_by="")
    first = waiting.order_by("created_at").values_list("created_at", flat=True).first()
    if first is None:
        return None
    if first + delay > now:  # a task for an earlier notice, all read: run again when this one is due
        return first + delay
    preference, _ = NotificationPreference.objects.get_or_create(user_id=user_id)
    previous = preference.last_emailed_at
    window_open = Q(last_emailed_at__isnull=True) | Q(last_emailed_at__lte=now - delay)
    if not NotificationPreference.objects.filter(Q(user_id=user_id) & window_open).update(last_emailed_at=now):
        last = NotificationPreference.objects.filter(user_id=user_id).values_list("last_emailed_at", flat=True).get()
        return (last or now) + delay
    this_runs_window = NotificationPreference.objects.filter(user_id=user_id, last_emailed_at=now)
    token = secrets.token_hex(16)
    EmailNotice.objects.filter(user_id=user_id, claimed_by="").update(claimed_by=token)
    claimed = EmailNotice.objects.filter(claimed_by=token)
    user = User.objects.select_related("notification_preference").filter(pk=user_id).first()
    unread = [] if user is None else missed_messages_unread(user=user, notices=claimed)
    # Messages sent since are gathered too, but a too-recent one alone waits for its own time: it may yet be read.
    items = [item for _, item in unread] if any(item.sent_at + delay <= now for _, item in unread) else []
    if items:
        try:
            missed_messages_email_send(user=user, items=items)
        except (OSError, smtplib.SMTPException):
            # Unsent: the notices wait again, the window is given back, and the task tries again a window later.
            logger.error("missed messages email not sent", exc_info=True, extra={"user_id": user_id})
            claimed.update(claimed_by="")
            this_runs_window.update(last_emailed_at=previous)
            return now + delay
    else:  # nothing due to tell: the window is not spent, and what is not due yet waits again
        this_runs_window.update(last_emailed_at=previous)
        claimed.filter(pk__in=[notice_id for notice_id, _ in unread]).update(claimed_by="")
    claimed.delete()
    logger.info("missed messages emailed" if items else "missed messages read in time", extra={"user_id": user_id})
    # Notices waiting now (come in meanwhile, or not due yet) run at their own time, and after the window if it went.
    later = waiting.order_by("created_at").values_list("created_at", flat=True).first()
    if later is None:
        return None
    return max(later + delay, now + delay) if items else later + delay


def missed_messages_unread(*, user: User, notices: QuerySet[EmailNotice]) -> list[tuple[int, MissedMessage]]:
    """The claimed notices still worth an email, oldest first, each with its line (and link) as this user sees it."""
    preference = getattr(user, "notification_preference", None)
    if not user.is_active or not user.email or (preference is not None and not preference.email_enabled):
        return []
    membership = Membership.objects.filter(user_id=user.pk, room_id=OuterRef("message__room_id"))
    follow = ThreadFollow.objects.filter(user_id=user.pk, thread_id=OuterRef("message__parent_id"))
    rows = (
        notices.select_related("message__room", "message__author")
        .annotate(
            last_read_id=Subquery(membership.values("last_read_id")[:1]),
            level=Subquery(membership.values("level")[:1]),
            thread_read_id=Subquery(follow.values("last_read_id")[:1]),
        )
        .order_by("message_id")
    )
    items = []
    for notice in rows:
        message = notice.message
        if notice.level == Membership.Level.NOTHING or message.retracted_at is not None:  # muted since, or deleted
            continue
        if message.parent_id is not None:  # a reply: unread while its thread's follower has not seen it
            if notice.thread_read_id is None or message.pk <= notice.thread_read_id:
                continue
        elif notice.level is None or message.pk <= notice.last_read_id:  # left, or read in time
            continue
        room = message.room
        if room.is_direct:
            room.peer = message.author if message.author_id != user.pk else message.recipient
        items.append(
            (
                notice.pk,
                MissedMessage(
                    author=message.author.username,
                    conversation=f"{room.title}, in a thread" if message.parent_id else room.title,
                    text=missed_message_text(message),
                    url=public_url(room.url("message", message.pk)),
                    sent_at=message.created_at,
                ),
            )
        )
    return items


def missed_message_text(message: Message) -> str:
    text = message.body.strip() or "(a file)"
    return text if len(text) <= QUOTE_MAX_CHARS else text[: QUOTE_MAX_CHARS - 1] + "\N{HORIZONTAL ELLIPSIS}"


def missed_messages_email_send(*, user: User, items: list[MissedMessage]) -> None:
    """One email listing the messages, as text and HTML, with the one-click unsubscribe headers (RFC 8058)."""
    unsubscribe_url = public_url(reverse("notifications_unsubscribe", args=[unsubscribe_token(user_id=user.pk)]))
    count = len(items)
    context = {
        "user": user,
        "items": items,
        "count": count,
        "chat_url": public_url(reverse("chat:directory")),
        "settings_url": public_url(reverse("notifications")),
        "unsubscribe_url": unsubscribe_url,
    }
    subject = f"{count} message{'' if count == 1 else 's'} you missed in Chat"
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("chat/email/missed_messages.txt", context),
        to=[user.email],
        headers={"List-Unsubscribe": f"<{unsubscribe_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    email.attach_alternative(render_to_string("chat/email/missed_messages.html", context), "text/html")
    email.send()


def public_url(path: str) -> str:
    """An absolute link for an email: the address people open the chat at (CHAT_PUBLIC_URL), then the path."""
    return settings.CHAT_PUBLIC_URL.rstrip("/") + path


def unsubscribe_token(*, user_id: int) -> str:
    """The user's id, signed for unsubscribing only; the same in every email (no timestamp: old emails' links work)."""
    return signing.Signer(salt=UNSUBSCRIBE_SALT).sign_object(user_id)


def unsubscribe_user(*, token: str) -> User | None:
    """The user an unsubscribe link was made for; None for a token that was not made here."""
    try:
        user_id = signing.Signer(salt=UNSUBSCRIBE_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError):
        return None
    return User.objects.filter(pk=user_id).first() if isinstance(user_id, int) else None


def email_enabled(*, user: User) -> bool:
    """Whether the user wants notification emails (no preference yet: yes)."""
    preference = NotificationPreference.objects.filter(user_id=user.pk).values_list("email_enabled", flat=True)
    return preference.first() is not False


def email_enabled_set(*, user: User, enabled: bool) -> None:
    """Turn the user's notification emails on or off; off also forgets what was waiting to be emailed."""
    NotificationPreference.objects.update_or_create(user_id=user.pk, defaults={"email_enabled": enabled})
    if not enabled:
        EmailNotice.objects.filter(user_id=user.pk, claimed_by="").delete()


@task()
def missed_messages_email(user_id: int) -> None:
    """The worker's task: email what the user missed, then run again when more may be due."""
    next_run = missed_messages_send(user_id=user_id)
    if next_run is not None:
        missed_messages_email.using(run_after=next_run).enqueue(user_id)

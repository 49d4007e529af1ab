"""Account events: those that end sessions close the sockets the sessions opened; deleted accounts' messages leave
every open page first."""

from __future__ import annotations

from allauth.account.signals import password_changed, password_reset
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.models import User
from accounts.signals import password_set_by_admin, users_deleting
from chat import services
from chat.models import Message


@receiver(user_logged_in, dispatch_uid="chat_session_sockets_mark")
def session_logged_in(sender: type, request: HttpRequest | None, user: User, **kwargs: object) -> None:
    if request is not None and hasattr(request, "session"):
        services.sessions.session_sockets_mark(session=request.session)


@receiver(user_logged_out, dispatch_uid="chat_session_sockets_close")
def session_logged_out(sender: type, request: HttpRequest | None, user: User | None, **kwargs: object) -> None:
    # Sent before the session is flushed: it still knows its sockets' group.
    if user is not None and request is not None and hasattr(request, "session"):
        services.sessions.session_sockets_close(session=request.session, reason="logout")


@receiver(password_changed, dispatch_uid="chat_password_changed_sockets_close")
def user_password_changed(sender: type, request: HttpRequest, user: User, **kwargs: object) -> None:
    # Django logs the other sessions out at their next request; their open sockets go now. The changer's stay.
    services.sessions.user_sockets_close(user=user, reason="password_changed", keep_session=request.session)


@receiver(password_reset, dispatch_uid="chat_password_reset_sockets_close")
def user_password_reset(sender: type, request: HttpRequest, user: User, **kwargs: object) -> None:
    # A reset (by an emailed key) ends every session of the account, whoever asked for it.
    services.sessions.user_sockets_close(user=user, reason="password_reset")


@receiver(post_save, sender=User, dispatch_uid="chat_user_deactivated_sockets_close")
def user_saved(sender: type, instance: User, created: bool, **kwargs: object) -> None:
    if not created and not instance.is_active:
        services.sessions.user_sockets_close(user=instance, reason="deactivated")


@receiver(post_delete, sender=User, dispatch_uid="chat_user_deleted_sockets_close")
def user_deleted(sender: type, instance: User, **kwargs: object) -> None:
    services.sessions.user_sockets_close(user=instance, reason="deleted")


@receiver(password_set_by_admin, dispatch_uid="chat_password_set_by_admin_sockets_close")
def user_password_set_by_admin(sender: type, user: User, request: HttpRequest, **kwargs: object) -> None:
    # An admin setting their own password keeps their own session.
    keep = request.session if user.pk == request.user.pk else None
    services.sessions.user_sockets_close(user=user, reason="password_changed", keep_session=keep)


@receiver(users_deleting, dispatch_uid="chat_users_deleting_messages_delete")
def users_deleting_messages_delete(sender: type, users: list[User], by: User, **kwargs: object) -> None:
    # Through the service, so that open pages drop them live.
    messages = Message.objects.filter(Q(author__in=users) | Q(recipient__in=users))
    services.moderation.message_delete_many(messages=messages, by=by)

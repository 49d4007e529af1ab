"""Account events that end sessions: each closes the sockets those sessions opened (chat.services)."""

from __future__ import annotations

from allauth.account.signals import password_changed, password_reset
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.models import User
from chat import services


@receiver(user_logged_in, dispatch_uid="chat_session_sockets_mark")
def session_logged_in(sender: type, request: HttpRequest | None, user: User, **kwargs: object) -> None:
    if request is not None and hasattr(request, "session"):
        services.session_sockets_mark(session=request.session)


@receiver(user_logged_out, dispatch_uid="chat_session_sockets_close")
def session_logged_out(sender: type, request: HttpRequest | None, user: User | None, **kwargs: object) -> None:
    # Sent before the session is flushed: it still knows its sockets' group.
    if user is not None and request is not None and hasattr(request, "session"):
        services.session_sockets_close(session=request.session, reason="logout")


@receiver(password_changed, dispatch_uid="chat_password_changed_sockets_close")
def user_password_changed(sender: type, request: HttpRequest, user: User, **kwargs: object) -> None:
    # Django logs the other sessions out at their next request; their open sockets go now. The changer's stay.
    services.user_sockets_close(user=user, reason="password_changed", keep_session=request.session)


@receiver(password_reset, dispatch_uid="chat_password_reset_sockets_close")
def user_password_reset(sender: type, request: HttpRequest, user: User, **kwargs: object) -> None:
    # A reset (by an emailed key) ends every session of the account, whoever asked for it.
    services.user_sockets_close(user=user, reason="password_reset")


@receiver(post_save, sender=User, dispatch_uid="chat_user_deactivated_sockets_close")
def user_saved(sender: type, instance: User, created: bool, **kwargs: object) -> None:
    if not created and not instance.is_active:
        services.user_sockets_close(user=instance, reason="deactivated")


@receiver(post_delete, sender=User, dispatch_uid="chat_user_deleted_sockets_close")
def user_deleted(sender: type, instance: User, **kwargs: object) -> None:
    services.user_sockets_close(user=instance, reason="deleted")

"""Write limits over HTTP (chat.flood counts): a view decorator that counts a write request before the view runs,
and the answer a person reads when one is refused: 429 with `Retry-After` and a sentence in `#chat-error` for htmx,
a plain page otherwise, JSON under /api/."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from chat import fragments
from chat.flood import admit, retry_seconds, sentence

logger = logging.getLogger(__name__)

# Requests that write nothing, never counted.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def client_key(request: HttpRequest) -> str:
    """Who a write counts against: the user, or the client's address when anonymous (daphne --proxy-headers takes
    it from X-Forwarded-For, which the proxy must set itself: SECURITY.md, "Production settings")."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"addr:{request.META.get('REMOTE_ADDR') or 'unknown'}"


def refused(request: HttpRequest, kind: str, *, key: str | None = None) -> HttpResponse | None:
    """Count one write of this kind by the request's user (or `key`); None when it may go ahead, else the 429."""
    key = key or client_key(request)
    verdict = admit(kind, key)
    if verdict.admitted:
        return None
    retry_after = retry_seconds(verdict.retry_after)
    logger.warning("write refused", extra={"kind": kind, "key": key, "retry_after": retry_after})
    return too_many(request, kind, verdict.retry_after)


def write_limited(kind: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Count every write request (not GET or HEAD) to the view against the user's limit of this kind, before the
    view runs: over it the view is not called (an upload's body is not parsed) and the answer is 429."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def limited(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
            if request.method not in SAFE_METHODS:
                refusal = refused(request, kind)
                if refusal is not None:
                    return refusal
            return view(request, *args, **kwargs)

        return limited

    return decorate


def too_many(request: HttpRequest, kind: str, retry_after: float) -> HttpResponse:
    seconds = retry_seconds(retry_after)
    response = error_response(request, sentence(kind, seconds), status=429)
    response["Retry-After"] = str(seconds)
    return response


def error_response(request: HttpRequest, error: str, *, status: int) -> HttpResponse:
    """A refusal the person can read: in #chat-error for htmx (role="alert", swapped out of band: the page's htmx
    config swaps 413 and 429 answers, HX-Reswap keeps the rest of the page), a plain page otherwise, and
    {"error": ...} for the API to come under /api/."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": error}, status=status)
    if getattr(request, "htmx", False):
        response = HttpResponse(fragments.chat_error(error=error), status=status)
        response["HX-Reswap"] = "none"
        return response
    return render(request, "refused.html", {"error": error, "response_status": status}, status=status)

"""The API tokens page: a person makes personal tokens for the HTTP API (shown once) and revokes them.

The tokens themselves are an account's (accounts.tokens); the pages live here for the chat's write limits."""

from __future__ import annotations

from django.contrib import messages as notices
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts import tokens
from accounts.models import ApiToken
from chat.http_limits import write_limited


@require_http_methods(["GET", "POST"])
@never_cache
@login_required
@write_limited("tokens")
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The person's tokens with their labels and last use; `POST name=<label>` makes one and shows it, once."""
    if request.method == "GET":
        return api_tokens_page(request)
    name = request.POST.get("name", "").strip()
    if not name:
        return api_tokens_page(request, name=name, error="Give the token a name, to tell it apart later.", status=400)
    if len(name) > tokens.NAME_MAX_LENGTH:
        error = f"A token's name can be at most {tokens.NAME_MAX_LENGTH} characters."
        return api_tokens_page(request, name=name, error=error, status=400)
    api_token, token = tokens.api_token_create(user=request.user, name=name)
    # The only response that ever holds the token: never cached (never_cache), never redirected to.
    return api_tokens_page(request, created=api_token, token=token)


def api_tokens_page(
    request: HttpRequest,
    *,
    name: str = "",
    error: str = "",
    created: ApiToken | None = None,
    token: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "api_tokens": tokens.api_token_list(user=request.user),
        "name": name,
        "error": error,
        "created": created,
        "token": token,
        "name_max_length": tokens.NAME_MAX_LENGTH,
    }
    return render(request, "chat/api_tokens.html", context, status=status)


@require_POST
@login_required
@write_limited("tokens")
def api_token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    """Revoke one of one's own tokens: requests presenting it are refused from now on."""
    api_token = tokens.api_token_revoke(user=request.user, token_id=token_id)
    if api_token is None:
        raise Http404("You have no such API token.")
    notices.success(request, f"The API token “{api_token.name}” is revoked: it no longer works.")
    return redirect("api_tokens")

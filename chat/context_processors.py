"""What every page's template may read."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from chat import selectors


def unread_total(request: HttpRequest) -> dict[str, object]:
    """The count in the title of a page without a sidebar (base.html): read only when such a page renders it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"unread_total": SimpleLazyObject(lambda: selectors.sidebar(user=user).notify_total)}

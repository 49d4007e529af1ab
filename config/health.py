"""Health checks for load balancers and orchestrators (README, "Operations").

/healthz: the process answers (no database, no channel layer): restart it when this fails.
/readyz: it can serve, the database and the channel layer answer within a second: send it traffic only then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# Each check must answer within this many seconds, or the process is not ready.
CHECK_TIMEOUT = 1.0
# No consumer ever joins this group.
HEALTH_GROUP = "health_check"


@never_cache
@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and serving HTTP."""
    return HttpResponse("ok", content_type="text/plain")


@never_cache
@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the channel layer answer, else 503 naming what failed (not why: that is logged)."""
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": database_check,
        "channel_layer": channel_layer_check,
    }
    results = await asyncio.gather(*(check_run(name, check) for name, check in checks.items()))
    report = dict(zip(checks, results, strict=True))
    ready = all(result == "ok" for result in report.values())
    if not ready:
        logger.warning("not ready", extra={"checks": report})
    return JsonResponse(report, status=200 if ready else 503)


async def check_run(name: str, check: Callable[[], Awaitable[None]]) -> str:
    """Return "ok", "unreachable" or "timeout: ...". The answer is public (no login): an exception's text (hosts,
    ports, database names, a driver's message) goes to the log with its traceback, never into the answer."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check()
    except TimeoutError:
        return f"timeout: no answer within {CHECK_TIMEOUT:g} s"
    except Exception:  # any failure of the backend is a "not ready"
        logger.warning("readiness check failed", exc_info=True, extra={"check": name})
        return "unreachable"
    return "ok"


async def database_check() -> None:
    """One round trip to the database, on a thread of its own.

    Not the request's thread: the middleware is synchronous (whitenoise), so the view runs inside it,
    and a query hung there would hold the response past the timeout.
    """
    await sync_to_async(_database_select_one, thread_sensitive=False)()


def _database_select_one() -> None:
    # A fresh connection each time, closed after: never a broken one kept by the pool thread, and
    # never an idle one holding the database (a test database could not be dropped).
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        connection.close()


async def channel_layer_check() -> None:
    """One round trip to the channel layer: a send to a group nobody joins reads Redis and delivers nothing."""
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    await layer.group_send(HEALTH_GROUP, {"type": "health.check"})

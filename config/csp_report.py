"""Where browsers report what the Content Security Policy blocked (SECURITY.md): one warning per report."""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

logger = logging.getLogger(__name__)

# A report is a few hundred bytes; anything much larger is not one.
MAX_REPORT_BYTES = 16 * 1024
# The fields worth a log line, each cut short: the browser fills them from the page, which may quote anything.
REPORT_FIELDS = ("document-uri", "violated-directive", "effective-directive", "blocked-uri", "source-file")
FIELD_MAX_CHARS = 200


@csrf_exempt  # the browser posts reports without a token
@require_POST
def csp_report(request: HttpRequest) -> HttpResponse:
    """Log a violation report at WARNING (without its sample of the page); always 204."""
    body = request.read(MAX_REPORT_BYTES + 1)
    try:
        report = json.loads(body) if len(body) <= MAX_REPORT_BYTES else None
    except ValueError:
        report = None
    report = report.get("csp-report") if isinstance(report, dict) else None
    if not isinstance(report, dict):
        logger.info("csp report unreadable", extra={"bytes": len(body)})
        return HttpResponse(status=204)
    fields = {name.replace("-", "_"): str(report.get(name, ""))[:FIELD_MAX_CHARS] for name in REPORT_FIELDS}
    logger.warning("content security policy violation", extra=fields)
    return HttpResponse(status=204)

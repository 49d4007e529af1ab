"""Load generator for the chat: browser-like sign-ins and htmx-style sockets against a loopback server."""

from __future__ import annotations

import loadtest.org  # noqa: F401  (adds the org and many-rooms scenarios)
from loadtest.client import LoadTestError
from loadtest.scenarios import SCENARIOS, human_line, run

__all__ = ["SCENARIOS", "LoadTestError", "human_line", "run"]

"""Channels' database thread keeps its PostgreSQL connection between calls.

Every socket of a process does its database work on one thread (`database_sync_to_async`, thread-sensitive), and
channels closes that thread's connection around every call unless CONN_MAX_AGE says to keep it: with the default
of 0 each post, join or check opened a new PostgreSQL connection (a backend started, authenticated and ended: about
a third of a posted message's time). CONN_MAX_AGE stays 0 for requests (a connection kept per request thread ran a
busy process out of connections, config/settings.py); this one thread keeps one connection per process for
SOCKET_CONN_MAX_AGE seconds, checked and replaced as Django does when it failed (close_old_connections).
"""

from __future__ import annotations

import threading
import time

from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper


def on_database_thread() -> bool:
    """Whether this is channels' (asgiref's) single thread for thread-sensitive work outside a request."""
    return threading.current_thread() in getattr(SyncToAsync.single_thread_executor, "_threads", ())


def connection_kept(*, sender: type, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """A connection opened on the database thread lives SOCKET_CONN_MAX_AGE seconds (a pooled one is the pool's)."""
    max_age = settings.SOCKET_CONN_MAX_AGE
    if not max_age or connection.vendor != "postgresql" or connection.settings_dict.get("CONN_MAX_AGE"):
        return
    if "pool" in connection.settings_dict.get("OPTIONS", {}) or not on_database_thread():
        return
    connection.close_at = time.monotonic() + max_age

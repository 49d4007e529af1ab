"""Fixtures shared by every test: users and logged-in sessions."""

from __future__ import annotations

import itertools
import os

import pytest
from django.test import Client

from accounts.models import User
from chat import flood

PASSWORD = "correct-horse-battery-staple"
_usernames = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A run pointed at PostgreSQL that cannot reach it skips, saying why, instead of erroring."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError as error:
        skip = pytest.mark.skip(reason=f"PostgreSQL at {url} is not reachable ({error}); start it to run this suite")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """The test database, as pytest-django makes it; channels' database thread keeps its PostgreSQL connection
    between calls (chat.db_thread), so that connection is closed before the database is dropped."""
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@pytest.fixture(autouse=True)
def fresh_write_limits():
    """Each test starts with empty write-limit windows in this process (the fallback when Redis is not used): user
    ids and addresses repeat from test to test."""
    flood.local_windows.clear()
    yield
    flood.local_windows.clear()


@pytest.fixture
def make_user(db: None):
    """Create a user with a unique name (or the given one) and the shared test password."""

    def make(username: str | None = None) -> User:
        return User.objects.create_user(username=username or f"user{next(_usernames)}", password=PASSWORD)

    return make


@pytest.fixture
def alice(make_user) -> User:
    return make_user("alice")


@pytest.fixture
def bob(make_user) -> User:
    return make_user("bob")


@pytest.fixture
def carol(make_user) -> User:
    return make_user("carol")


@pytest.fixture
def alice_client(alice: User) -> Client:
    client = Client()
    client.force_login(alice)
    return client

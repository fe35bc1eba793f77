"""Browser tests share the live server (session-scoped in pytest-django)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _end_leftover_sessions(django_db_setup, django_db_blocker):
    """After the browser tests: end the database sessions the live server's request threads left
    open (an image load the browser cut short), so the test database can be dropped. Done once
    at the end: ending them between tests broke the next test's connection."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture
def server(live_server):
    return live_server

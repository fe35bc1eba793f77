"""Production mode refuses unsafe settings at start, naming the variable to set."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-" + "x7Qp9" * 12


def manage(*args, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


def production_env(**over):
    env = {
        "STUDY_ENV": "production", "DEBUG": "false", "SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": "study.example.org",
        "DATABASE_URL": os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    }
    env.update(over)
    return env


def test_check_deploy_passes_with_the_required_variables():
    res = manage("check", "--deploy", "--fail-level", "WARNING", **production_env(TRUST_PROXY_HEADERS="true"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_check_deploy_warns_when_https_redirects_cannot_see_the_proxy():
    res = manage("check", "--deploy", "--fail-level", "WARNING", **production_env())
    assert res.returncode != 0 and "studyapp.W002" in res.stderr and "TRUST_PROXY_HEADERS=true" in res.stderr
    res = manage("check", "--deploy", "--fail-level", "WARNING", **production_env(SECURE_SSL_REDIRECT="false"))
    assert "studyapp.W002" not in res.stdout + res.stderr  # (Django's own W008 says what that costs)


def test_development_secret_key_is_refused_in_production():
    from studyapp.settings import DEV_SECRET_KEY

    res = manage("check", **production_env(SECRET_KEY=DEV_SECRET_KEY))
    assert res.returncode != 0
    assert "SECRET_KEY" in res.stderr and "development key is refused" in res.stderr


def test_debug_and_missing_variables_are_refused_in_production():
    res = manage("check", **production_env(DEBUG="true"))
    assert res.returncode != 0 and "DEBUG=false" in res.stderr
    res = manage("check", **production_env(ALLOWED_HOSTS=""))
    assert res.returncode != 0 and "ALLOWED_HOSTS" in res.stderr


# The production configuration README.md documents ("Running it for real"): gunicorn on loopback
# behind a TLS reverse proxy that sets X-Forwarded-Proto / X-Forwarded-For.
DOCUMENTED = {"TRUST_PROXY_HEADERS": "true", "CSRF_TRUSTED_ORIGINS": "https://study.example.org", "DB_CONN_MAX_AGE": "60"}

PROBE = """
from django.test import Client
c = Client(HTTP_HOST="study.example.org")
for proto in ("", "https"):
    r = c.get("/accounts/login/", **({"HTTP_X_FORWARDED_PROTO": proto} if proto else {}))
    print(proto or "plain", r.status_code, r.get("Location", "-"), r.get("Strict-Transport-Security", "-"))
"""


def test_check_deploy_is_clean_in_the_documented_production_configuration():
    res = manage("check", "--deploy", "--fail-level", "WARNING", **production_env(**DOCUMENTED))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "no issues" in res.stdout


@pytest.mark.parametrize("hosts", ["*", "study.example.org,*", " * "])
def test_wildcard_allowed_hosts_is_refused_in_production(hosts):
    res = manage("check", **production_env(ALLOWED_HOSTS=hosts))
    assert res.returncode != 0
    assert "ALLOWED_HOSTS=* is refused in production" in res.stderr and "Traceback" not in res.stderr.split("ImproperlyConfigured")[-1]


@pytest.mark.parametrize(
    "key, ok",
    [
        ("k" * 3 + "x7Qp9" * 9 + "ab", True),   # 50 characters, 8 distinct: the threshold, accepted
        ("x7Qp9" * 9 + "abcd", False),          # 49 characters: refused
        ("abcd" * 12 + "ab", False),            # 50 characters but 4 distinct: refused
    ],
)
def test_short_or_repetitive_secret_key_is_refused_in_production(key, ok):
    res = manage("check", **production_env(SECRET_KEY=key))
    if ok:
        assert res.returncode == 0, res.stderr
    else:
        assert res.returncode != 0 and "SECRET_KEY is too weak" in res.stderr and "at least 50" in res.stderr


def test_forwarded_proto_is_believed_only_when_the_proxy_is_trusted():
    """Exposed directly (no TRUST_PROXY_HEADERS), a client claiming HTTPS still gets the redirect to
    HTTPS; behind the documented proxy the claim is believed and the page is served with HSTS."""
    direct = manage("shell", "--no-imports", "-c", PROBE, **production_env())
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.split() == ["plain", "301", "https://study.example.org/accounts/login/", "-",
                                     "https", "301", "https://study.example.org/accounts/login/", "-"]
    proxied = manage("shell", "--no-imports", "-c", PROBE, **production_env(**DOCUMENTED))
    assert proxied.returncode == 0, proxied.stderr
    lines = proxied.stdout.splitlines()
    assert lines[0].split()[:2] == ["plain", "301"]  # the proxy's plain-HTTP side is redirected too
    https = lines[1].split()
    assert https[:3] == ["https", "200", "-"]
    assert https[3].startswith("max-age=31536000")

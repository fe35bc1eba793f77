"""Production mode refuses unsafe settings at start, naming the variable to set."""

import os
import subprocess
import sys
from pathlib import Path

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
    res = manage("check", "--deploy", "--fail-level", "WARNING", **production_env())
    assert res.returncode == 0, res.stdout + res.stderr


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

"""The README's production deployment, as written: its nginx configuration (TLS, redirect, the
forwarded headers) in front of gunicorn in production mode, against PostgreSQL. Real processes,
real TLS (a self-signed certificate), requests over sockets. Skipped where nginx is not installed
(`apt-get install nginx-light`)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from tests.dbutil import current_database_url

from .test_settings import GOOD_KEY

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
HOST = "study.example.org"
PASSWORD = "correct horse battery staple 42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on {port}")


def readme_nginx_config() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "README.md should show exactly one nginx configuration"
    return blocks[0]


@pytest.fixture
def deployment(tmp_path, django_user_model):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    django_user_model.objects.create_user("alice", password=PASSWORD, is_staff=True)
    http_port, https_port, app_port = free_port(), free_port(), free_port()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    server = readme_nginx_config()
    # the README's configuration with this test's ports and certificate, nothing else changed
    for old, new in (("listen 80;", f"listen 127.0.0.1:{http_port};"), ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
                     (f"/etc/letsencrypt/live/{HOST}/fullchain.pem", str(cert)),
                     (f"/etc/letsencrypt/live/{HOST}/privkey.pem", str(key)), ("127.0.0.1:8000", f"127.0.0.1:{app_port}")):
        assert old in server, old
        server = server.replace(old, new)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx-error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path}/body;\nproxy_temp_path {tmp_path}/proxy;\n{server}\n}}\n"
    )
    env = {**os.environ, "STUDY_ENV": "production", "DEBUG": "false", "SECRET_KEY": GOOD_KEY, "ALLOWED_HOSTS": HOST,
           "CSRF_TRUSTED_ORIGINS": f"https://{HOST}", "TRUST_PROXY_HEADERS": "true", "DATABASE_URL": current_database_url(),
           "DB_CONN_MAX_AGE": "60", "STATIC_ROOT": str(tmp_path / "static")}
    procs = []
    try:
        app = subprocess.Popen([sys.executable, "-m", "gunicorn", "studyapp.wsgi", "-b", f"127.0.0.1:{app_port}", "-w", "1",
                                "-k", "gthread", "--threads", "4"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        procs.append(app)
        proxy = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        procs.append(proxy)
        wait_for_port(app_port, app, "gunicorn")
        wait_for_port(https_port, proxy, "nginx")
        yield {"http": http_port, "https": https_port}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        from django.db import connection

        with connection.cursor() as cur:  # gunicorn's persistent connections, so the database can be dropped
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()")


class Browser:
    """Enough of a browser: HTTPS to the proxy, cookies, CSRF token, Referer."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}
        self.raw_cookies: list[str] = []

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ssl._create_unverified_context(), timeout=30)
        h = {"Host": HOST, **(headers or {})}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            h["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read().decode("utf-8", "replace")
        for raw in resp.headers.get_all("Set-Cookie") or []:
            self.raw_cookies.append(raw)
            c = SimpleCookie(raw)
            for k, m in c.items():
                self.cookies[k] = m.value
        conn.close()
        return resp, data

    def login(self, username: str, password: str, headers: dict | None = None):
        self.request("GET", "/accounts/login/")
        form = f"username={username}&password={password.replace(' ', '+')}&csrfmiddlewaretoken={self.cookies['csrftoken']}"
        return self.request("POST", "/accounts/login/", form, {"Referer": f"https://{HOST}/accounts/login/", **(headers or {})})


def test_the_readme_proxy_configuration_works_as_written(deployment):
    b = Browser(deployment["https"])
    resp, body = b.request("GET", "/accounts/login/", headers={"X-Forwarded-Proto": "http"})  # a client's forged header
    assert resp.status == 200 and "Researcher log in" in body  # nginx overwrote it: no redirect loop
    assert resp.getheader("Strict-Transport-Security").startswith("max-age=31536000")
    assert "script-src 'self'" in resp.getheader("Content-Security-Policy")
    assert any("csrftoken=" in c and "Secure" in c for c in b.raw_cookies)

    plain = http.client.HTTPConnection("127.0.0.1", deployment["http"], timeout=30)
    plain.request("GET", "/accounts/login/", headers={"Host": HOST, "X-Forwarded-Proto": "https"})
    r = plain.getresponse()
    assert r.status == 301 and r.getheader("Location") == f"https://{HOST}/accounts/login/"

    resp, _ = b.login("alice", PASSWORD)
    assert resp.status == 302 and resp.getheader("Location") == "/research/"
    session = [c for c in b.raw_cookies if c.startswith("sessionid=")][-1]
    assert "Secure" in session and "HttpOnly" in session and "expires" not in session.lower()  # ends with the browser
    resp, body = b.request("GET", "/research/")
    assert resp.status == 200 and "Log out alice" in body


def test_forged_forwarded_for_through_the_proxy_does_not_evade_the_lockout(deployment):
    for i in range(5):  # five user names, each attempt claiming another client address
        resp, _ = Browser(deployment["https"]).login(f"guess{i}", "wrong", {"X-Forwarded-For": f"198.51.100.{i}"})
        assert resp.status == (200 if i < 4 else 429)  # the fifth failure locks the address
    resp, body = Browser(deployment["https"]).login("alice", PASSWORD, {"X-Forwarded-For": "192.0.2.77"})
    assert resp.status == 429 and "Too many failed log-ins" in body

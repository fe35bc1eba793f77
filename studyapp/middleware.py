"""Request-wide security and failure handling: the Content-Security-Policy header, the client
address behind a trusted proxy, and the "busy, nothing was lost" page during a database outage."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.template.loader import render_to_string

log = logging.getLogger(__name__)

BUSY_TEMPLATE = "busy.html"
BUSY_RETRY_AFTER_SECONDS = 10


def client_ip(request) -> str | None:
    """The client's address: the one our reverse proxy appended to X-Forwarded-For (its last
    entry) when TRUST_PROXY_HEADERS is on, else the socket's peer. Earlier entries of the header
    are whatever the client sent and are never believed."""
    if settings.TRUST_PROXY_HEADERS:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.META.get("REMOTE_ADDR") or None


class ContentSecurityPolicyMiddleware:
    """Adds settings.CONTENT_SECURITY_POLICY to every response that has none."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response


def _is_outage(exc: BaseException) -> bool:
    # OperationalError: the server is down, restarting, or dropped the connection;
    # InterfaceError: the connection object is already closed.
    return isinstance(exc, (OperationalError, InterfaceError))


class DatabaseOutageMiddleware:
    """A view that fails because PostgreSQL is unreachable answers 503 with a page saying nothing
    was lost (every write is one transaction, so a failed request wrote nothing), instead of a
    500. The page is rendered without the request context: no session, no database."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not _is_outage(exception):
            return None
        log.warning("database unavailable during %s %s: %s", request.method, request.path, exception)
        return busy_response()


def busy_response() -> HttpResponse:
    response = HttpResponse(render_to_string(BUSY_TEMPLATE, {"retry_after": BUSY_RETRY_AFTER_SECONDS}), status=503)
    response["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response




"""System checks: configuration problems reported at start, with stable ids and a fix."""

import os

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_media_root(app_configs, **kwargs):
    root = settings.MEDIA_ROOT
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        return [Error(f"MEDIA_ROOT {root} cannot be created: {exc}", hint="Set MEDIA_ROOT to a writable folder.", id="studyapp.E001")]
    if not os.access(root, os.W_OK):
        return [Error(f"MEDIA_ROOT {root} is not writable.", hint="Set MEDIA_ROOT to a writable folder.", id="studyapp.E001")]
    return []


@register(deploy=True)
def check_broker_in_production(app_configs, **kwargs):
    if settings.PRODUCTION and not settings.CELERY_BROKER_URL:
        return [
            Warning(
                "CELERY_BROKER_URL is not set: renders will run inside the web process.",
                hint="Set CELERY_BROKER_URL (redis://host:6379/0) and start GPU workers with -Q render.",
                id="studyapp.W001",
            )
        ]
    return []


@register(deploy=True)
def check_https_behind_proxy(app_configs, **kwargs):
    # README "Running it for real": gunicorn on loopback behind a TLS proxy. Without trusting the
    # proxy's X-Forwarded-Proto every request looks like plain HTTP and SECURE_SSL_REDIRECT
    # answers each one with a redirect to HTTPS, forever.
    if settings.PRODUCTION and settings.SECURE_SSL_REDIRECT and not settings.TRUST_PROXY_HEADERS:
        return [
            Warning(
                "SECURE_SSL_REDIRECT is on but TRUST_PROXY_HEADERS is off: behind a TLS reverse proxy every request "
                "would be redirected to HTTPS again and again.",
                hint="Behind the proxy of README 'Running it for real' (gunicorn on 127.0.0.1) set TRUST_PROXY_HEADERS=true. "
                "If gunicorn itself serves TLS (--certfile), this warning does not apply.",
                id="studyapp.W002",
            )
        ]
    return []

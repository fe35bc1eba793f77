"""Settings of the study platform. Every environment variable is read here, and only here.

Two modes, chosen by ``STUDY_ENV``:

- ``development`` (default): DEBUG on, a development SECRET_KEY, the embedded PostgreSQL when
  ``DATABASE_URL`` is unset, in-process rendering when ``CELERY_BROKER_URL`` is unset.
- ``production``: refuses to start with the development key or a short one, with DEBUG on,
  without ``DATABASE_URL`` / ``ALLOWED_HOSTS`` or with ``ALLOWED_HOSTS=*``, and says what to set.
  ``TRUST_PROXY_HEADERS=true`` (only behind a reverse proxy that sets them) makes Django believe
  the proxy's ``X-Forwarded-Proto`` and ``X-Forwarded-For``; otherwise they are ignored.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

DEV_SECRET_KEY = "django-insecure-development-key-for-the-study-platform-quickstart-only"


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean: set it to true or false.")


def env_int(name: str, default: int) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None


# GENERAL
# ------------------------------------------------------------------------------
STUDY_ENV = env("STUDY_ENV", "development")
if STUDY_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"STUDY_ENV={STUDY_ENV!r}: set it to 'development' or 'production'.")
PRODUCTION = STUDY_ENV == "production"

DEBUG = env_bool("DEBUG", not PRODUCTION)
SECRET_KEY = env("SECRET_KEY", None if PRODUCTION else DEV_SECRET_KEY)
# Django's own bar for a strong key (security.W009): at least 50 characters, 5 distinct.
MIN_SECRET_KEY_CHARS = 50
MIN_SECRET_KEY_UNIQUE = 5
ALLOWED_HOSTS = [h.strip() for h in (env("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver") or "").split(",") if h.strip()]
if PRODUCTION:
    _new_key_hint = "e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(50))'`"
    if DEBUG:
        raise ImproperlyConfigured("STUDY_ENV=production with DEBUG on: set DEBUG=false.")
    if not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY:
        raise ImproperlyConfigured(
            "STUDY_ENV=production needs its own SECRET_KEY (the development key is refused): set "
            f"SECRET_KEY to a long random string, {_new_key_hint}."
        )
    if len(SECRET_KEY) < MIN_SECRET_KEY_CHARS or len(set(SECRET_KEY)) < MIN_SECRET_KEY_UNIQUE:
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak for production ({len(SECRET_KEY)} characters, {len(set(SECRET_KEY))} distinct): "
            f"set at least {MIN_SECRET_KEY_CHARS} random characters, {_new_key_hint}."
        )
    if not env("DATABASE_URL"):
        raise ImproperlyConfigured("STUDY_ENV=production needs DATABASE_URL (postgres://user:pass@host:5432/db).")
    if not env("ALLOWED_HOSTS"):
        raise ImproperlyConfigured("STUDY_ENV=production needs ALLOWED_HOSTS (comma-separated host names).")
    if "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS=* is refused in production (any Host header would be believed, e.g. in password-reset "
            "and annotator links): list the host names the site is served under, e.g. ALLOWED_HOSTS=study.example.org."
        )

CSRF_TRUSTED_ORIGINS = [o.strip() for o in (env("CSRF_TRUSTED_ORIGINS", "") or "").split(",") if o.strip()]

TIME_ZONE = "UTC"
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The public base URL used when printing annotator links outside a request (commands).
SITE_URL = (env("SITE_URL", "http://127.0.0.1:8000") or "").rstrip("/")

# DATABASES
# ------------------------------------------------------------------------------
# PostgreSQL everywhere. Unset DATABASE_URL means the quickstart's embedded server.
from studyapp.embedded_db import ensure_database_url  # noqa: E402

EMBEDDED_DATABASE = not env("DATABASE_URL")
DATABASES = {"default": dj_database_url.parse(ensure_database_url(BASE_DIR), conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...); no other engine is supported.")
# A per-process test database name lets several test runs share one server.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", f"test_studyapp_{os.getpid()}")}

# CACHES
# ------------------------------------------------------------------------------
# "default" is per process (the results page's analysis, keyed by the votes it saw). "shared" is
# one cache for every server process, for counts that must hold across gunicorn workers (the
# annotator-creation limit): a PostgreSQL table made by migration 0008, no other service needed.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "shared": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "studyapp_cache"},
}
ANNOTATE_CREATE_CACHE = "shared"

# APPS
# ------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "studyapp.apps.StudyConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "studyapp.middleware.ContentSecurityPolicyMiddleware",
    "studyapp.middleware.DatabaseOutageMiddleware",
    # Last, as django-axes requires: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "studyapp.urls"
WSGI_APPLICATION = "studyapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# STAFF ACCOUNTS
# ------------------------------------------------------------------------------
# django-axes (https://django-axes.readthedocs.io) counts failed logins on every staff login form
# (the project's and the admin's): AXES_FAILURE_LIMIT failures for one user name, or from one
# client address, lock that name / address out for AXES_COOLOFF_MINUTES.
AUTHENTICATION_BACKENDS = [
    "studyapp.auth_backends.AxesLoginBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "research/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "studyapp.middleware.client_ip"
AXES_VERBOSE = False
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured(f"AXES_FAILURE_LIMIT={AXES_FAILURE_LIMIT}: set a positive number of failed logins.")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Only staff use Django sessions (annotators carry a signed cookie of their own): a working day,
# and gone when the browser closes.
SESSION_COOKIE_AGE = env_int("STAFF_SESSION_SECONDS", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/research/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# STATIC AND MEDIA
# ------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns at every start when it is missing
# Images are served to annotators only through opaque per-trial URLs, never from MEDIA_URL.
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
MEDIA_URL = "/media-not-served/"
STORAGES = {
    "default": {"BACKEND": env("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
if STORAGES["default"]["BACKEND"] == "storages.backends.s3.S3Storage":
    # An S3-compatible bucket shared by every worker machine (AWS S3, MinIO, Ceph...); credentials
    # come from boto3's own AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. See docs/operations.md.
    if not env("S3_BUCKET"):
        raise ImproperlyConfigured("STORAGE_BACKEND is S3Storage: set S3_BUCKET (and S3_ENDPOINT_URL for non-AWS).")
    STORAGES["default"]["OPTIONS"] = {
        "bucket_name": env("S3_BUCKET"), "endpoint_url": env("S3_ENDPOINT_URL"), "region_name": env("S3_REGION", "us-east-1"),
        "location": env("S3_PREFIX", ""), "file_overwrite": False, "default_acl": None, "querystring_auth": True,
    }

# GENERATION
# ------------------------------------------------------------------------------
WEIGHTS_DIR = Path(env("WEIGHTS_DIR", str(BASE_DIR / "weights")))
RENDER_DEVICE = env("RENDER_DEVICE", "auto")

# CELERY (https://docs.celeryq.dev/en/stable/userguide/configuration.html)
# ------------------------------------------------------------------------------
# Unset broker: renders run in-process (the quickstart). Set: GPU workers consume queue "render".
CELERY_BROKER_URL = env("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The queue GPU workers consume (`celery -A studyapp worker -Q render`); tests use their own.
RENDER_QUEUE = env("RENDER_QUEUE", "render")
# A render whose worker died this many times (killed, out of memory, hard time limit) fails.
RENDER_MAX_ATTEMPTS = env_int("RENDER_MAX_ATTEMPTS", 3)
CELERY_TASK_ROUTES = {"generation.tasks.*": {"queue": RENDER_QUEUE}}
CELERY_TASK_TIME_LIMIT = env_int("RENDER_TASK_TIME_LIMIT", 3600)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("RENDER_TASK_SOFT_TIME_LIMIT", 3300)  # 0: no soft limit
if CELERY_TASK_TIME_LIMIT <= 0 or not 0 <= CELERY_TASK_SOFT_TIME_LIMIT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"RENDER_TASK_TIME_LIMIT={CELERY_TASK_TIME_LIMIT} and RENDER_TASK_SOFT_TIME_LIMIT={CELERY_TASK_SOFT_TIME_LIMIT}: "
        "set a positive time limit and a soft limit below it (or 0 for none), e.g. 3600 and 3300 seconds."
    )
# Redis re-delivers an unacknowledged message after the visibility timeout; it must outlast
# the longest task or a slow render would be started twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("BROKER_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 600)}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# SECURITY
# ------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Believe X-Forwarded-Proto / X-Forwarded-For only behind a proxy that sets them (and strips a
# client's own): exposed directly, any client could claim HTTPS or another address.
TRUST_PROXY_HEADERS = env_bool("TRUST_PROXY_HEADERS", False)
if TRUST_PROXY_HEADERS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The address the annotator-creation limit counts: the proxy's X-Forwarded-For (its last hop, the
# one the trusted proxy appended) only when proxy headers are trusted, else REMOTE_ADDR.
ANNOTATE_CLIENT_IP_HEADER = env("ANNOTATE_CLIENT_IP_HEADER", "HTTP_X_FORWARDED_FOR" if TRUST_PROXY_HEADERS else "")
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# Content-Security-Policy of every response (studyapp.middleware): everything from this origin
# only, and no inline script of any kind (no <script> body, no on...= handler, no javascript:
# URL). Inline styles stay allowed: a few research pages carry a <style> block and computed
# widths, and CSS cannot run code.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)

# LOGGING
# ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": sys.stderr}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

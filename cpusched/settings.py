"""Django settings for cpusched.

Deployment-level settings come from environment variables read through the
small typed helpers below, which fail loudly and name the variable. Operator
parameters (limits, modes, ...) are not settings: they live in the parameter
registry (:mod:`cpusched.params`) and are read with :mod:`cpusched.config`.
A few of those parameters are needed before Django starts (time zone,
database path, debug); they are read here from the environment and
``config.ini`` layers, and from the database file when it exists.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from cpusched import config

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected true or false")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _stored(key: str) -> str | None:
    """A value stored in the database layer, read before Django is set up."""
    path = _database_path()
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(
                "SELECT value FROM cpusched_parameter WHERE key = ?", (key,)
            ).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _early(key: str) -> object:
    """A parameter's effective value from environment, file, database, default."""
    if key in _LAYERED:
        return config.coerce(config.PARAMS[key], _LAYERED[key])
    if key != "database.path":
        stored = _stored(key)
        if stored is not None:
            return config.coerce(config.PARAMS[key], stored)
    return config.PARAMS[key].default


# Where the database, the secret key and the archives live.
DATA_DIR = config.data_dir()
DATA_DIR.mkdir(parents=True, exist_ok=True)

# The environment and config.ini layers, read once for the values below.
_LAYERED = {**config.read_file(), **config.read_environment()}


def _database_path() -> Path:
    path = _LAYERED.get("database.path") or ""
    return Path(path) if path else DATA_DIR / "db.sqlite3"


def _secret_key() -> str:
    """From the environment, or generated once into the data directory (0600)."""
    from_env = os.environ.get("CPUSCHED_SECRET_KEY")
    if from_env:
        return from_env
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()

# Debug pages leak internals; off unless server.debug says otherwise.
DEBUG = bool(_early("server.debug"))

# Host names the web server answers to (comma-separated).
ALLOWED_HOSTS = env_list("CPUSCHED_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# Origins trusted for CSRF and WebSockets, e.g. https://cpu.example.com.
CSRF_TRUSTED_ORIGINS = env_list("CPUSCHED_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_q",
    "django_htmx",
    "ninja",
    "cpusched",
    "monitoring",
    "scheduling",
    "reservations",
    "alerts",
]

# Apps only the web process needs. The scheduler daemon leaves them out: they
# pull in twisted and pydantic, about 40 MB of memory it has no use for.
WEB_ONLY_APPS = ("daphne", "channels", "ninja", "django_htmx")
if sys.argv[1:2] == ["runscheduler"]:
    INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in WEB_ONLY_APPS]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # API keys, rate limits, login for pages, session timeout (server.*).
    "cpusched.auth.AccessMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # A bad environment or config.ini: a 503 naming it, not a bare 500.
    "cpusched.errors.ConfigErrorMiddleware",
]

ROOT_URLCONF = "cpusched.urls"

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

WSGI_APPLICATION = "cpusched.wsgi.application"
ASGI_APPLICATION = "cpusched.asgi.application"

# SQLite shared by three processes: WAL lets readers run beside one writer,
# IMMEDIATE transactions take the write lock up front (so a read-then-write
# transaction never fails half-way with "database is locked"), and the busy
# timeout makes writers queue instead of failing.
SQLITE_TIMEOUT_S = 30
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _database_path(),
        "OPTIONS": {
            "timeout": SQLITE_TIMEOUT_S,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                f"PRAGMA busy_timeout={SQLITE_TIMEOUT_S * 1000};"
                "PRAGMA foreign_keys=ON"
            ),
        },
        "TEST": {"NAME": os.environ.get("CPUSCHED_TEST_DB") or None},
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_VALIDATION = "django.contrib.auth.password_validation."
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": _VALIDATION + name}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
# The operator's time zone: pages show it, recurring reservations follow it.
TIME_ZONE = str(_early("server.time_zone"))
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
# Made here so WhiteNoise finds it before the first collectstatic.
STATIC_ROOT.mkdir(exist_ok=True)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# Sessions expire after server.session_timeout minutes without a request.
SESSION_COOKIE_AGE = int(_early("server.session_timeout")) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False

# Set CPUSCHED_HTTPS=true behind TLS: secure cookies, HSTS, redirects.
HTTPS = env_bool("CPUSCHED_HTTPS", False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Request bodies larger than this (bytes) are refused with 400 before any
# view parses them; the largest legitimate one, a configuration import, is a
# few kilobytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# One machine needs no broker: the in-memory layer serves one web process.
# With several web workers set CPUSCHED_REDIS_URL (channels-redis required).
_redis = os.environ.get("CPUSCHED_REDIS_URL")
CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [_redis]},
        }
        if _redis
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

# django-q2 uses the same SQLite database as its queue: no broker process.
Q_CLUSTER = {
    "name": "cpusched",
    "orm": "default",
    "workers": 1,
    "timeout": 60,
    "retry": 120,
    "max_attempts": 5,
    "catch_up": False,
    "poll": 1,
}

EMAIL_BACKEND = os.environ.get(
    "CPUSCHED_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = os.environ.get("CPUSCHED_EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("CPUSCHED_EMAIL_PORT", "25"))
DEFAULT_FROM_EMAIL = os.environ.get("CPUSCHED_EMAIL_FROM", "cpusched@localhost")

LOG_LEVEL = os.environ.get("CPUSCHED_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        name: {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False}
        for name in ("cpusched", "monitoring", "scheduling", "reservations", "alerts")
    },
}

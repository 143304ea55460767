"""Parameters the web process reads on hot paths, cached per config revision.

Every request needs a few parameters (is authentication on, the rate limit,
the WebSocket push interval). Reading the whole layered configuration costs
several queries, so the values are kept in memory and reloaded when the
``config`` revision moves (checked at most once per :data:`CHECK_EVERY_S`)
or every :data:`RELOAD_EVERY_S` regardless, which also picks up a changed
``config.ini``. A change made anywhere is therefore seen within about a
second.

When the database cannot be read the defaults, the file and the environment
still apply; when ``config.ini`` is malformed, the defaults and the
environment. A broken store must not open the door (``auth_enabled``
defaults to true) nor turn every request into a 500.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from django.db import DatabaseError

from cpusched import config

logger = logging.getLogger(__name__)

# How often the revision counter is read (one indexed SELECT).
CHECK_EVERY_S = 1.0

# Reload even without a new revision, for edits of config.ini.
RELOAD_EVERY_S = 30.0

_lock = threading.Lock()
_values: Mapping[str, Any] | None = None
_revision: int | None = None
_checked_at = 0.0
_loaded_at = 0.0


def params() -> Mapping[str, Any]:
    """The effective parameters, at most about a second old.

    Reads the database when the cache is stale: call it from synchronous
    code (or through ``sync_to_async``); :func:`cached` never touches it.
    """
    now = time.monotonic()
    values = _values
    if values is not None and now - _checked_at < CHECK_EVERY_S:
        return values
    with _lock:
        return _refresh(now)


def cached() -> Mapping[str, Any] | None:
    """The cached parameters when fresh, else None (no database access)."""
    if _values is not None and time.monotonic() - _checked_at < CHECK_EVERY_S:
        return _values
    return None


def forget() -> None:
    """Drop the cache, so the next read sees the stored values (for tests)."""
    global _values, _revision
    with _lock:
        _values = None
        _revision = None


def _refresh(now: float) -> Mapping[str, Any]:
    global _values, _revision, _checked_at, _loaded_at

    try:
        revision = config.current_revision()
        expired = now - _loaded_at >= RELOAD_EVERY_S
        if _values is None or revision != _revision or expired:
            _values = config.snapshot()
            _revision = revision
            _loaded_at = now
        _forget_complaint()
    except DatabaseError as exc:
        _complain(
            "Cannot read parameters from the database (%s); using the "
            "environment, config.ini and defaults until it answers",
            exc,
        )
        _values = _without_database()
        _revision = None
    except config.ConfigError as exc:
        _complain(
            "The configuration cannot be read (%s); the web process uses the "
            "defaults and the environment until it is fixed",
            exc,
        )
        _values = _defaults_and_environment()
        _revision = None
    _checked_at = now
    return _values


def _without_database() -> Mapping[str, Any]:
    try:
        return config.snapshot(use_database=False)
    except config.ConfigError:
        return _defaults_and_environment()


def _defaults_and_environment() -> dict[str, Any]:
    """The last resort: valid environment values over the defaults."""
    values = config.defaults()
    for key, raw in config.read_environment().items():
        try:
            values[key] = config.coerce(config.PARAMS[key], raw)
        except ValueError:
            pass
    return values


_last_complaint = ""


def _forget_complaint() -> None:
    global _last_complaint

    _last_complaint = ""


def _complain(message: str, exc: Exception) -> None:
    """Log a failure once, not on every reload while it lasts."""
    global _last_complaint

    if str(exc) != _last_complaint:
        _last_complaint = str(exc)
        logger.error(message, exc)

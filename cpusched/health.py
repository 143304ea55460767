"""``GET /health``: is the database answering and the scheduler alive?

Always open (monitors and load balancers carry no credentials) and never
rate limited. 200 when all are fine; 503 when the database fails, the
environment or config.ini cannot be read, or the
scheduler's heartbeat (the live-state row it rewrites every second) is
missing or older than :data:`monitoring.live.STALE_AFTER_S`. The body says
which, for an operator reading it by hand; it reveals no configuration.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from cpusched import config
from cpusched.config import ConfigError
from monitoring import live

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    database, row = _check_database()
    scheduler = _check_scheduler(row) if database["ok"] else _unknown_scheduler()
    configuration = _check_configuration()
    healthy = database["ok"] and scheduler["ok"] and configuration["ok"]
    body = {
        "status": "ok" if healthy else "unhealthy",
        "database": database,
        "scheduler": scheduler,
        "configuration": configuration,
    }
    return JsonResponse(body, status=200 if healthy else 503)


def _check_database() -> tuple[dict[str, Any], Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        row = live.read()
    except DatabaseError as exc:
        logger.error("Health check: the database does not answer: %s", exc)
        return {"ok": False, "error": str(exc)[:200]}, None
    return {"ok": True}, row


def _check_scheduler(row: Any) -> dict[str, Any]:
    age = live.heartbeat_age(row)
    if age is None:
        return {
            "ok": False,
            "heartbeat_age": None,
            "error": "no heartbeat yet: is runscheduler running?",
        }
    data = row.data if isinstance(row.data, dict) else {}
    running = live.is_running(age, data)
    result: dict[str, Any] = {
        "ok": running,
        "heartbeat_age": round(age, 3),
        "stale_after": live.STALE_AFTER_S,
        "pid": row.pid,
    }
    if data.get("stopped") is True:
        result["error"] = "runscheduler was stopped"
    elif not running:
        result["error"] = f"heartbeat is {age:.0f} s old: runscheduler stopped or stuck"
    return result


def _check_configuration() -> dict[str, Any]:
    """Can the environment and config.ini be read? (Keys only, no values.)"""
    try:
        config.effective()
    except DatabaseError:
        return {"ok": True, "error": "not checked: database unavailable"}
    except ConfigError as exc:
        keys = sorted({p.key for p in exc.problems})
        return {"ok": False, "error": f"configuration refused for {', '.join(keys)}"}
    return {"ok": True}


def _unknown_scheduler() -> dict[str, Any]:
    return {"ok": False, "heartbeat_age": None, "error": "database unavailable"}

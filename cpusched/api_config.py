"""REST endpoints for the configuration (``/api/config``).

Reads return every parameter with its effective value, the layer it comes
from, whether it is locked (set by the environment or ``config.ini``), its
type and range. Writes go through :func:`cpusched.config.apply` (or reset,
rollback, import): validated as a whole, stored atomically with history, or
refused with 422 naming each key that is wrong; nothing is stored then.

Writing needs the ``cpusched.change_parameter`` permission (superusers and
staff given it in the admin) when authentication is on.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NoReturn

from django.http import HttpRequest
from ninja import Body, Query, Router, Schema
from ninja.errors import HttpError, ValidationError
from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from cpusched import config
from cpusched.models import ParameterChange
from cpusched.params import PARAMS

router = Router(tags=["config"])

Value = StrictBool | StrictInt | StrictFloat | StrictStr

MAX_REASON = 500


class ParameterOut(Schema):
    value: Value
    source: str = Field(description="environment, file, database or default")
    locked: bool = Field(description="Set by the environment or config.ini")
    type: str = Field(description="int, float, bool, string or choice")
    default: Value
    min: float | None
    max: float | None
    choices: list[str]
    unit: str
    category: str
    description: str
    restart: bool = Field(description="A running process needs a restart")


class ConfigOut(Schema):
    revision: int
    values: dict[str, Value]
    parameters: dict[str, ParameterOut]


class Changed(Schema):
    revision: int
    changed: dict[str, Value] = Field(description="The values now effective")


class Reason(Schema):
    reason: str = Field("", max_length=MAX_REASON)


class HistoryEntry(Schema):
    id: int
    key: str
    old_value: str | None
    new_value: str | None
    changed_at: datetime
    changed_by: str
    reason: str


class HistoryOut(Schema):
    data: list[HistoryEntry]
    total: int
    page: int
    per_page: int


class HistoryQuery(Schema):
    key: str | None = Field(None, max_length=100)
    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(50, ge=1, le=500)


class RollbackIn(Schema):
    change_id: int = Field(
        ge=0, le=2**62, description="History entry to return to; 0: before all"
    )
    reason: str = Field("", max_length=MAX_REASON)


class ResetIn(Schema):
    keys: list[str] | None = Field(
        None, max_length=len(PARAMS), description="Keys to reset; all when absent"
    )
    reason: str = Field("", max_length=MAX_REASON)


class Revision(Schema):
    revision: int


class ExportOut(Schema):
    format: str
    revision: int
    values: dict[str, Value]
    sources: dict[str, str]


@router.get("", response=ConfigOut, summary="Every parameter")
def get_config(request: HttpRequest) -> dict[str, Any]:
    current = config.effective()
    return {
        "revision": config.current_revision(),
        "values": {key: entry.value for key, entry in current.items()},
        "parameters": {key: _describe(entry) for key, entry in current.items()},
    }


def _describe(entry: config.Effective) -> dict[str, Any]:
    param = PARAMS[entry.key]
    return {
        "value": entry.value,
        "source": entry.source,
        "locked": entry.locked,
        "type": param.type,
        "default": param.default,
        "min": param.min,
        "max": param.max,
        "choices": list(param.choices),
        "unit": param.unit,
        "category": param.category,
        "description": param.description,
        "restart": param.restart,
    }


@router.put("", response=Changed, summary="Change parameters")
def put_config(
    request: HttpRequest,
    changes: Body[dict[str, Value]],
    reason: Query[Reason],
) -> dict[str, Any]:
    """Set ``{key: value}`` pairs; all are validated together, or none stored."""
    _require_change_permission(request)
    revision = _apply(config.apply, changes, _user(request), reason.reason)
    current = config.effective()
    return {
        "revision": revision,
        "changed": {key: current[key].value for key in changes},
    }


@router.get("/history", response=HistoryOut, summary="Past changes")
def get_history(request: HttpRequest, query: Query[HistoryQuery]) -> dict[str, Any]:
    rows = ParameterChange.objects.order_by("-id")
    if query.key:
        rows = rows.filter(key=query.key)
    start = (query.page - 1) * query.per_page
    return {
        "data": list(rows[start : start + query.per_page]),
        "total": rows.count(),
        "page": query.page,
        "per_page": query.per_page,
    }


@router.post("/rollback", response=Revision, summary="Return to a past state")
def post_rollback(request: HttpRequest, body: RollbackIn) -> dict[str, int]:
    _require_change_permission(request)
    revision = _apply(config.rollback, body.change_id, _user(request), body.reason)
    return {"revision": revision}


@router.post("/reset", response=Revision, summary="Reset to defaults")
def post_reset(request: HttpRequest, body: ResetIn) -> dict[str, int]:
    _require_change_permission(request)
    revision = _apply(config.reset, body.keys, _user(request), body.reason)
    return {"revision": revision}


@router.get("/export", response=ExportOut, summary="Export as JSON")
def get_export(request: HttpRequest) -> dict[str, Any]:
    return config.export()


@router.post("/import", response=Revision, summary="Import an export")
def post_import(
    request: HttpRequest, data: Body[dict[str, Any]], reason: Query[Reason]
) -> dict[str, int]:
    """Apply an exported file (or a flat ``{key: value}`` object) atomically."""
    _require_change_permission(request)
    try:
        values = config.parse_import(json.dumps(data))
    except config.ConfigError as exc:
        _refuse(exc)
    revision = _apply(config.import_values, values, _user(request), reason.reason)
    return {"revision": revision}


def _apply(action: Any, what: Any, user: str, reason: str) -> int:
    try:
        return action(what, user=user, reason=reason)
    except config.ConfigError as exc:
        _refuse(exc)


def _refuse(exc: config.ConfigError) -> NoReturn:
    """A 422 whose entries each name a key (``loc``) and say what is allowed."""
    errors = [
        {"loc": ["body", p.key], "msg": str(p), "type": "value_error"}
        for p in exc.problems
    ]
    raise ValidationError(errors)


def _user(request: HttpRequest) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user.get_username()
    return ""


def _require_change_permission(request: HttpRequest) -> None:
    user = request.user
    if user.is_authenticated and not user.has_perm("cpusched.change_parameter"):
        raise HttpError(
            403, f"User {user.get_username()!r} may not change the configuration"
        )

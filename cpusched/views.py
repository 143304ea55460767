"""The configuration page: every parameter by category, checked as you type.

Every change goes through :mod:`cpusched.config`, so the page refuses exactly
what the API, the admin and the ``config`` command refuse, with the same
messages: live checks call :func:`config.validate` on top of the effective
values, saving calls :func:`config.apply` (all problems shown, nothing stored
on refusal).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cpusched import config, runtime
from cpusched.config import ConfigError, Effective, Problem
from cpusched.models import ParameterChange
from cpusched.params import CATEGORIES, Param, by_category

logger = logging.getLogger(__name__)

TITLES = {
    "limits": ("CPU limits", "The provider's rules, the floor and the cap's ceiling"),
    "scheduler": ("Scheduler", "How fast the cap follows the planner's safe bound"),
    "monitoring": ("Monitoring", "What is sampled and how often"),
    "reservation": ("Reservations", "Rules for reserving CPU for future time slots"),
    "alerts": ("Alerts", "When alerts are raised and where they are sent"),
    "database": ("Database", "Retention, batching and downsampling of samples"),
    "server": ("Web server", "Listening address, sessions, sockets and rate limits"),
    "performance": ("Performance", "Limits on cpusched's own resource use"),
    "cgroup": ("cgroup", "The control group that holds the managed workload"),
}
ORDER = [c for c in TITLES if c in CATEGORIES] + [
    c for c in CATEGORIES if c not in TITLES
]

HISTORY_ROWS = 50

# An exported configuration is a few kilobytes; anything far larger is not one.
MAX_IMPORT_BYTES = 256 * 1024


def login_required(view):
    """Send a visitor to the login page unless signed in or auth is off.

    The access middleware (cpusched.auth) enforces the same rule for every
    path; checking here too keeps a page closed if that middleware were
    ever left out of the settings.
    """

    @wraps(view)
    def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated or not auth_enabled():
            return view(request, *args, **kwargs)
        return redirect_to_login(request.get_full_path())

    return guarded


def auth_enabled() -> bool:
    return bool(runtime.params()["server.auth_enabled"])


@dataclass
class Field:
    """One parameter as the page shows it."""

    param: Param
    entry: Effective
    text: str
    problem: str = ""
    note: str = ""

    @property
    def lock_reason(self) -> str:
        if self.entry.source == "environment":
            return f"Set by the environment variable {self.entry.origin}"
        if self.entry.source == "file":
            return f"Set in the config file {self.entry.origin}"
        return ""

    @property
    def default_text(self) -> str:
        return config.to_text(self.param.default)

    @property
    def dom_id(self) -> str:
        return "p-" + self.param.key.replace(".", "-").replace("_", "-")


def _problem_text(problem: Problem) -> str:
    if problem.value is None or problem.message.startswith(problem.key):
        return problem.message
    return f"{problem.value!r} is refused: {problem.message}"


def _submitted(post: QueryDict, key: str) -> str | None:
    """The value posted for ``key``; a switch posts "false" then "true"."""
    values = post.getlist(key)
    return values[-1] if values else None


def changes_from(
    post: QueryDict, category: str, current: Mapping[str, Effective]
) -> dict[str, str]:
    """The posted values of ``category`` that differ from the effective ones.

    Values equal after type conversion (``30`` and ``30.0``) are not changes,
    so saving a form untouched stores nothing and pins no default.
    """
    changes = {}
    for param in by_category(category):
        raw = _submitted(post, param.key)
        if raw is None:
            continue
        try:
            if config.coerce(param, raw) == current[param.key].value:
                continue
        except ValueError:
            pass
        changes[param.key] = raw
    return changes


def _fields(
    category: str,
    current: Mapping[str, Effective],
    posted: Mapping[str, str] | None = None,
    problems: Mapping[str, str] | None = None,
) -> list[Field]:
    posted = posted or {}
    problems = problems or {}
    fields = []
    for param in by_category(category):
        entry = current[param.key]
        text = posted.get(param.key, config.to_text(entry.value))
        fields.append(Field(param, entry, text, problems.get(param.key, "")))
    return fields


def _section(category: str, current: Mapping[str, Effective], **kwargs) -> dict:
    title, description = TITLES.get(category, (category.title(), ""))
    return {
        "category": category,
        "title": title,
        "description": description,
        "fields": _fields(category, current, **kwargs),
    }


def _group_problems(problems: list[Problem]) -> dict[str, str]:
    grouped: dict[str, list[str]] = {}
    for problem in problems:
        grouped.setdefault(problem.key, []).append(_problem_text(problem))
    return {key: "; ".join(texts) for key, texts in grouped.items()}


def _category(request: HttpRequest) -> str | None:
    category = request.POST.get("category", "")
    return category if category in CATEGORIES else None


def _bad_category(request: HttpRequest) -> HttpResponse:
    value = request.POST.get("category", "")
    message = f"category={value!r} is not allowed: use one of {', '.join(CATEGORIES)}"
    return HttpResponse(message, status=400, content_type="text/plain")


# -- pages ----------------------------------------------------------------------


@login_required
@require_GET
def config_page(request: HttpRequest) -> HttpResponse:
    """Every parameter by category, with history, export, import and reset."""
    current = config.effective()
    context = {
        "sections": [_section(c, current) for c in ORDER],
        "history": _history(),
        "stored_count": sum(1 for e in current.values() if e.source == "database"),
        "locked_count": sum(1 for e in current.values() if e.locked),
        "revision": config.current_revision(),
    }
    return render(request, "cpusched/config.html", context)


@login_required
@require_POST
def config_validate(request: HttpRequest) -> HttpResponse:
    """Check one category's form as typed; answer with feedback for each field."""
    category = _category(request)
    if category is None:
        return _bad_category(request)
    current = config.effective()
    values = {k: e.value for k, e in current.items()}
    changes = changes_from(request.POST, category, current)
    _, problems = config.validate(changes, values)
    grouped = _group_problems(problems)

    feedback = []
    for field in _fields(category, current, problems=grouped):
        if not field.problem and field.param.key in changes:
            field.note = f"changed from {config.to_text(field.entry.value)}"
        feedback.append(field)
    return render(request, "cpusched/partials/feedback.html", {"fields": feedback})


@login_required
@require_POST
def config_save(request: HttpRequest) -> HttpResponse:
    """Store one category's changes, or show every problem and store nothing."""
    category = _category(request)
    if category is None:
        return _bad_category(request)
    current = config.effective()
    changes = changes_from(request.POST, category, current)
    reason = request.POST.get("reason", "").strip()[:500]
    user = request.user.get_username()
    notice, level, problems = _save(changes, user, reason)

    if problems:
        section = _section(category, current, posted=changes, problems=problems)
    else:
        section = _section(category, config.effective())
    if not request.htmx:
        getattr(messages, level)(request, notice)
        return redirect("config")
    response = render(
        request,
        "cpusched/partials/section.html",
        {"section": section, "notice": notice, "level": level},
    )
    if level == "success":
        response["HX-Trigger"] = "config-changed"
    return response


def _save(
    changes: dict[str, str], user: str, reason: str
) -> tuple[str, str, dict[str, str]]:
    if not changes:
        return "Nothing changed.", "info", {}
    try:
        revision = config.apply(changes, user=user, reason=reason)
    except ConfigError as exc:
        count = len(exc.problems)
        notice = f"Not saved: {count} problem{'s' if count > 1 else ''} to fix."
        return notice, "danger", _group_problems(exc.problems)
    keys = ", ".join(sorted(changes))
    return f"Saved {keys} (revision {revision}).", "success", {}


@login_required
@require_POST
def config_reset(request: HttpRequest) -> HttpResponse:
    """Reset one key (``key``) or every stored value to the defaults."""
    key = request.POST.get("key") or None
    user = request.user.get_username()
    try:
        config.reset([key] if key else None, user=user, reason="reset to default")
    except ConfigError as exc:
        return _refused(request, "Reset refused", exc.problems)
    what = key if key else "every stored value"
    messages.success(request, f"Reset {what} to the default.")
    return _reload(request)


@login_required
@require_POST
def config_rollback(request: HttpRequest, change_id: int) -> HttpResponse:
    """Return the stored values to their state right after one history entry."""
    user = request.user.get_username()
    try:
        revision = config.rollback(change_id, user=user)
    except ConfigError as exc:
        return _refused(request, f"Rollback to #{change_id} refused", exc.problems)
    notice = f"Rolled back to the state after change #{change_id}"
    messages.success(request, f"{notice} (revision {revision}).")
    return _reload(request)


def _reload(request: HttpRequest) -> HttpResponse:
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = request.build_absolute_uri("/config/")
        return response
    return redirect("config")


def _refused(request: HttpRequest, title: str, problems: list[Problem]) -> HttpResponse:
    if not request.htmx:
        for problem in problems:
            messages.error(request, f"{title}: {problem}")
        return redirect("config")
    context = {"title": title, "problems": [str(p) for p in problems]}
    response = render(request, "cpusched/partials/refused.html", context)
    response["HX-Retarget"] = "#config-alerts"
    response["HX-Reswap"] = "innerHTML"
    return response


@login_required
@require_GET
def config_history(request: HttpRequest) -> HttpResponse:
    return render(request, "cpusched/partials/history.html", {"history": _history()})


def _history() -> list[ParameterChange]:
    return list(ParameterChange.objects.order_by("-id")[:HISTORY_ROWS])


@login_required
@require_GET
def config_export(request: HttpRequest) -> HttpResponse:
    """The effective configuration as a JSON download."""
    body = json.dumps(config.export(), indent=2, sort_keys=True)
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response = HttpResponse(body, content_type="application/json")
    name = f"cpusched-config-{stamp}.json"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
@require_POST
def config_import(request: HttpRequest) -> HttpResponse:
    """Apply an uploaded JSON export atomically; all problems or all values."""
    upload = request.FILES.get("file")
    if upload is None:
        messages.error(request, "Import refused: choose a JSON file to upload.")
        return redirect("config")
    if upload.size > MAX_IMPORT_BYTES:
        messages.error(
            request,
            f"Import refused: the file is {upload.size} bytes, "
            f"at most {MAX_IMPORT_BYTES} are accepted.",
        )
        return redirect("config")
    try:
        text = upload.read().decode("utf-8")
        values = config.parse_import(text)
        revision = config.import_values(
            values, user=request.user.get_username(), reason="import from the web page"
        )
    except UnicodeDecodeError:
        messages.error(request, "Import refused: the file is not UTF-8 text.")
        return redirect("config")
    except ConfigError as exc:
        for problem in exc.problems:
            messages.error(request, f"Import refused: {problem}")
        return redirect("config")
    messages.success(request, f"Imported {len(values)} values (revision {revision}).")
    return redirect("config")

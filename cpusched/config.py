"""Layered configuration: load, validate, change, record and roll back.

Every effective value comes from the highest layer that sets it:

1. the environment (``CPUSCHED_LIMITS_AVG_MAX_USAGE`` for
   ``limits.avg_max_usage``),
2. ``config.ini`` (sections named by category; ``[cpu_limits]`` is read as
   ``[limits]``),
3. the database (values changed at run time from the web, the API or the
   ``config`` command),
4. the registry default (:mod:`cpusched.params`).

A key set by the environment or the file is *locked*: changing it through the
database is refused, because the change would be silently shadowed.

Every accepted change is validated as a whole (types, ranges and the relations
between keys), stored in one transaction with one history row per key, and
bumps the ``config`` revision that running processes poll each tick.

Errors: :class:`ConfigError` carries a list of :class:`Problem`, each naming the
key, the value given and what is allowed.
"""

from __future__ import annotations

import configparser
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpusched.params import PARAMS, SECTION_ALIASES, Param

logger = logging.getLogger(__name__)

ENV_PREFIX = "CPUSCHED_"
SOURCES = ("environment", "file", "database", "default")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class Problem:
    key: str
    value: Any
    message: str

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.key}: {self.message}"
        return f"{self.key}: {self.value!r} is refused: {self.message}"


class ConfigError(Exception):
    """One or more configuration problems, all reported together."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    def as_dict(self) -> dict[str, str]:
        return {p.key: str(p) for p in self.problems}


@dataclass(frozen=True)
class Effective:
    key: str
    value: Any
    source: str
    origin: str = ""

    @property
    def locked(self) -> bool:
        return self.source in ("environment", "file")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "_").upper()


def config_file_path() -> Path:
    """Where ``config.ini`` is read from (``CPUSCHED_CONFIG`` overrides)."""
    explicit = os.environ.get("CPUSCHED_CONFIG")
    if explicit:
        return Path(explicit)
    return data_dir() / "config.ini"


def data_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / "data"
    return Path(os.environ.get("CPUSCHED_DATA_DIR") or default)


# -- coercion and validation ------------------------------------------------


def coerce(param: Param, raw: Any) -> Any:
    """Turn ``raw`` (text or a Python value) into the parameter's type.

    Raises ValueError with a message saying what is allowed.
    """
    if param.type == "bool":
        return _coerce_bool(param, raw)
    if param.type in ("int", "float"):
        return _coerce_number(param, raw)
    if param.type == "choice":
        value = str(raw).strip()
        if value not in param.choices:
            raise ValueError(f"expected {param.allowed()}")
        return value
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ValueError("expected text")
    return str(raw)


def _coerce_bool(param: Param, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected {param.allowed()}")


def _coerce_number(param: Param, raw: Any) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise ValueError(f"expected {param.allowed()}")
    try:
        number = float(str(raw).strip())
    except ValueError:
        raise ValueError(f"expected {param.allowed()}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected {param.allowed()}")
    if param.type == "int":
        if number != int(number):
            raise ValueError(f"expected {param.allowed()}")
        number = int(number)
    if param.min is not None and number < param.min:
        raise ValueError(f"expected {param.allowed()}")
    if param.max is not None and number > param.max:
        raise ValueError(f"expected {param.allowed()}")
    return number


Rule = Callable[[Mapping[str, Any]], "str | None"]


def _less(low: str, high: str, what: str) -> tuple[tuple[str, ...], Rule]:
    def rule(v: Mapping[str, Any]) -> str | None:
        if v[low] < v[high]:
            return None
        return f"{what}: {low} ({v[low]!r}) must be below {high} ({v[high]!r})"

    return (low, high), rule


def _peak_budget_fits(v: Mapping[str, Any]) -> str | None:
    window_s = v["limits.peak_window_hours"] * 3600
    if v["limits.peak_max_duration"] <= window_s:
        return None
    return (
        f"limits.peak_max_duration ({v['limits.peak_max_duration']!r} s) must fit "
        f"in the peak window (limits.peak_window_hours "
        f"{v['limits.peak_window_hours']!r} h = {window_s:g} s)"
    )


def _reservation_durations(v: Mapping[str, Any]) -> str | None:
    if v["reservation.min_duration"] <= v["reservation.max_duration"] * 60:
        return None
    return (
        f"reservation.min_duration ({v['reservation.min_duration']!r} min) must not "
        f"exceed reservation.max_duration ({v['reservation.max_duration']!r} h)"
    )


def _floor_sustainable(v: Mapping[str, Any]) -> str | None:
    margin = v["limits.avg_max_usage"] * v["limits.safety_margin"] / 100
    usable = v["limits.avg_max_usage"] - margin
    if v["limits.absolute_min_cpu"] <= usable:
        return None
    return (
        f"limits.absolute_min_cpu ({v['limits.absolute_min_cpu']!r}) must not exceed "
        f"the usable average limit ({usable:g} % = limits.avg_max_usage less "
        "limits.safety_margin), or the floor alone would break the average rule"
    )


RELATIONS: list[tuple[tuple[str, ...], Rule]] = [
    _less("limits.avg_min_usage", "limits.avg_max_usage", "average limits"),
    _less("limits.absolute_min_cpu", "limits.absolute_max_cpu", "absolute limits"),
    _less("limits.absolute_min_cpu", "limits.peak_threshold", "floor and peak"),
    _less(
        "limits.avg_critical_threshold",
        "limits.avg_warning_threshold",
        "average budget alerts",
    ),
    _less(
        "limits.peak_critical_threshold",
        "limits.peak_warning_threshold",
        "peak budget alerts",
    ),
    _less(
        "scheduler.quota_medium_cpu_limit",
        "scheduler.quota_high_cpu_limit",
        "tier limits",
    ),
    _less(
        "scheduler.quota_low_cpu_limit",
        "scheduler.quota_medium_cpu_limit",
        "tier limits",
    ),
    _less(
        "scheduler.emergency_cpu_limit",
        "scheduler.quota_low_cpu_limit",
        "tier limits",
    ),
    (("limits.peak_max_duration", "limits.peak_window_hours"), _peak_budget_fits),
    (
        ("reservation.min_duration", "reservation.max_duration"),
        _reservation_durations,
    ),
    (
        (
            "limits.absolute_min_cpu",
            "limits.avg_max_usage",
            "limits.safety_margin",
        ),
        _floor_sustainable,
    ),
]


def validate(
    changes: Mapping[str, Any], base: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Problem]]:
    """Coerce ``changes`` and check them on top of ``base``.

    Returns the typed changes and every problem found; relation problems are
    reported against the changed key they involve.
    """
    typed: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, raw in changes.items():
        param = PARAMS.get(key)
        if param is None:
            problems.append(Problem(key, raw, "unknown parameter"))
            continue
        try:
            typed[key] = coerce(param, raw)
        except ValueError as exc:
            problems.append(Problem(key, raw, str(exc)))

    merged = {**base, **typed}
    for keys, rule in RELATIONS:
        message = rule(merged)
        if message is None:
            continue
        touched = [k for k in keys if k in changes] or list(keys[:1])
        problems.append(Problem(touched[0], merged[touched[0]], message))
    return typed, problems


# -- the layers ---------------------------------------------------------------


def defaults() -> dict[str, Any]:
    return {key: p.default for key, p in PARAMS.items()}


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    found = {}
    for key in PARAMS:
        name = env_name(key)
        if name in environ:
            found[key] = environ[name]
    return found


def read_file(path: Path | None = None) -> dict[str, str]:
    """Read ``config.ini``; a missing file is empty, a malformed one an error."""
    path = config_file_path() if path is None else path
    if not path.exists():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        message = (
            f"malformed config file: {_parse_error(exc)}; expected [category] "
            "sections of key = value lines"
        )
        raise ConfigError([Problem(str(path), None, message)]) from None
    return _file_values(path, parser)


def _parse_error(exc: Exception) -> str:
    """One line saying where the file is malformed (configparser's span lines)."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: {exc.line.strip()!r} comes before any [section]"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"line {exc.lineno}: {exc.option} is set twice in [{exc.section}]"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"line {exc.lineno}: section [{exc.section}] appears twice"
    if isinstance(exc, configparser.ParsingError):
        # errors holds (line number, repr of the line) pairs.
        return "; ".join(f"line {n}: cannot parse {t}" for n, t in exc.errors)
    return " ".join(str(exc).split())


def _file_values(path: Path, parser: configparser.ConfigParser) -> dict[str, str]:
    found: dict[str, str] = {}
    problems = []
    for section in parser.sections():
        category = SECTION_ALIASES.get(section, section)
        for name, raw in parser.items(section):
            key = f"{category}.{name}"
            if key not in PARAMS:
                where = f"{path} [{section}] {name}"
                problems.append(Problem(key, raw, f"unknown parameter (in {where})"))
                continue
            found[key] = raw
    if problems:
        raise ConfigError(problems)
    return found


def read_database() -> dict[str, str]:
    from cpusched.models import Parameter

    return dict(Parameter.objects.values_list("key", "value"))


def _typed_layer(raw: Mapping[str, str], origin: str) -> dict[str, Any]:
    """Coerce one layer, failing loudly with where each bad value came from."""
    typed = {}
    problems = []
    for key, value in raw.items():
        try:
            typed[key] = coerce(PARAMS[key], value)
        except (KeyError, ValueError) as exc:
            message = str(exc) if isinstance(exc, ValueError) else "unknown parameter"
            problems.append(Problem(key, value, f"{message} (set in {origin})"))
    if problems:
        raise ConfigError(problems)
    return typed


def effective(use_database: bool = True) -> dict[str, Effective]:
    """Every key's effective value with the layer it came from."""
    result = {k: Effective(k, v, "default") for k, v in defaults().items()}
    layers = []
    if use_database:
        database = _typed_layer(_known(read_database()), "the database")
        layers.append(("database", database, "database"))
    file_values = _typed_layer(read_file(), str(config_file_path()))
    layers.append(("file", file_values, "config.ini"))
    environment = _typed_layer(read_environment(), "the environment")
    layers.append(("environment", environment, "environment"))
    for source, values, _ in layers:
        for key, value in values.items():
            origin = env_name(key) if source == "environment" else ""
            if source == "file":
                origin = str(config_file_path())
            result[key] = Effective(key, value, source, origin)
    _check_locked_relations(result)
    return result


def _check_locked_relations(result: Mapping[str, Effective]) -> None:
    """Refuse a file or environment that breaks a rule between keys.

    Such a value is locked, so it could never be mended from the pages or the
    API; it is refused at load time like a value of the wrong type. A rule
    broken by database values alone (possible only after the rules changed)
    is logged instead, so the configuration can still be repaired.
    """
    values = {k: e.value for k, e in result.items()}
    problems = []
    for keys, rule in RELATIONS:
        message = rule(values)
        if message is None:
            continue
        locked = [result[k] for k in keys if result[k].locked]
        if not locked:
            logger.warning("Stored configuration breaks a rule: %s", message)
            continue
        where = ", ".join(f"{e.key} set in {e.origin}" for e in locked)
        problems.append(Problem(locked[0].key, locked[0].value, f"{message} ({where})"))
    if problems:
        raise ConfigError(problems)


def _known(raw: Mapping[str, str]) -> dict[str, str]:
    """Drop database rows for keys that no longer exist, with a warning."""
    known = {}
    for key, value in raw.items():
        if key in PARAMS:
            known[key] = value
        else:
            logger.warning("Ignoring stored value for unknown parameter %s", key)
    return known


def snapshot(
    overrides: Mapping[str, Any] | None = None, use_database: bool = True
) -> dict[str, Any]:
    """Effective values as a plain dict, optionally with validated overrides."""
    values = {k: e.value for k, e in effective(use_database).items()}
    if not overrides:
        return values
    typed, problems = validate(overrides, values)
    if problems:
        raise ConfigError(problems)
    return {**values, **typed}


def get(key: str) -> Any:
    if key not in PARAMS:
        raise ConfigError([Problem(key, None, "unknown parameter")])
    return effective()[key].value


# -- changes ------------------------------------------------------------------


def _locked_problems(
    changes: Mapping[str, Any], current: Mapping[str, Effective]
) -> list[Problem]:
    problems = []
    for key, value in changes.items():
        entry = current.get(key)
        if entry is None or not entry.locked:
            continue
        where = (
            f"the environment variable {entry.origin}"
            if entry.source == "environment"
            else f"the config file {entry.origin}"
        )
        message = f"locked: fixed by {where}; change or remove it there"
        problems.append(Problem(key, value, message))
    return problems


def apply(changes: Mapping[str, Any], user: str = "", reason: str = "") -> int:
    """Validate and store ``changes`` atomically; return the new revision.

    Raises ConfigError listing every problem; nothing is stored then.
    """
    from django.db import transaction

    from cpusched.models import Parameter, ParameterChange, Revision

    with transaction.atomic():
        current = effective()
        values = {k: e.value for k, e in current.items()}
        typed, problems = validate(changes, values)
        problems += _locked_problems(changes, current)
        if problems:
            raise ConfigError(problems)

        stored = dict(Parameter.objects.values_list("key", "value"))
        changed = False
        for key, value in typed.items():
            text = to_text(value)
            if stored.get(key) == text:
                continue
            Parameter.objects.update_or_create(
                key=key, defaults={"value": text, "updated_by": user}
            )
            ParameterChange.objects.create(
                key=key,
                old_value=stored.get(key),
                new_value=text,
                changed_by=user,
                reason=reason,
            )
            changed = True
        if not changed:
            return Revision.current("config")
        logger.info("Configuration changed by %s: %s", user or "?", typed)
        return Revision.bump("config")


def reset(keys: Iterable[str] | None = None, user: str = "", reason: str = "") -> int:
    """Remove stored values so the keys fall back to their defaults."""
    from django.db import transaction

    from cpusched.models import Parameter, ParameterChange, Revision

    keys = list(PARAMS) if keys is None else list(keys)
    unknown = [Problem(k, None, "unknown parameter") for k in keys if k not in PARAMS]
    if unknown:
        raise ConfigError(unknown)

    with transaction.atomic():
        current = effective()
        base = {k: e.value for k, e in current.items()}
        after = {
            **base,
            **{k: PARAMS[k].default for k in keys if current[k].source == "database"},
        }
        _, problems = validate({}, after)
        if problems:
            raise ConfigError(problems)
        rows = Parameter.objects.filter(key__in=keys)
        for row in rows:
            ParameterChange.objects.create(
                key=row.key,
                old_value=row.value,
                new_value=None,
                changed_by=user,
                reason=reason or "reset to default",
            )
        if not rows.exists():
            return Revision.current("config")
        rows.delete()
        return Revision.bump("config")


def stored_state_after(change_id: int) -> dict[str, str | None]:
    """The stored (database-layer) value of every key right after a change."""
    from cpusched.models import ParameterChange

    state: dict[str, str | None] = {}
    later = ParameterChange.objects.filter(id__gt=change_id).order_by("id")
    now = dict(_stored_now())
    for key in now:
        state[key] = now[key]
    for change in later.reverse():
        state[change.key] = change.old_value
    return state


def _stored_now() -> Iterable[tuple[str, str]]:
    from cpusched.models import Parameter

    return Parameter.objects.values_list("key", "value")


def rollback(change_id: int, user: str = "", reason: str = "") -> int:
    """Return the stored configuration to its state right after ``change_id``.

    The rollback is itself validated and recorded as ordinary changes, so it
    can be rolled back too.
    """
    from django.db import transaction

    from cpusched.models import Parameter, ParameterChange, Revision

    if change_id and not ParameterChange.objects.filter(id=change_id).exists():
        raise ConfigError([Problem("change", change_id, "no such history entry")])

    with transaction.atomic():
        target = stored_state_after(change_id)
        stored = dict(_stored_now())
        to_set = {
            k: v for k, v in target.items() if v is not None and stored.get(k) != v
        }
        to_clear = [k for k, v in target.items() if v is None and k in stored]
        current = effective()
        base = {k: e.value for k, e in current.items()}
        after = {**base, **{k: PARAMS[k].default for k in to_clear if k in PARAMS}}
        typed, problems = validate(to_set, after)
        problems += _locked_problems(to_set, current)
        if problems:
            raise ConfigError(problems)

        why = reason or f"rollback to change #{change_id}"
        for key in to_clear:
            ParameterChange.objects.create(
                key=key,
                old_value=stored[key],
                new_value=None,
                changed_by=user,
                reason=why,
            )
        Parameter.objects.filter(key__in=to_clear).delete()
        for key, value in typed.items():
            text = to_text(value)
            Parameter.objects.update_or_create(
                key=key, defaults={"value": text, "updated_by": user}
            )
            ParameterChange.objects.create(
                key=key,
                old_value=stored.get(key),
                new_value=text,
                changed_by=user,
                reason=why,
            )
        if not to_clear and not typed:
            return Revision.current("config")
        return Revision.bump("config")


def to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- export and import --------------------------------------------------------


def export() -> dict[str, Any]:
    """The whole effective configuration as a JSON-ready dict."""
    from cpusched.models import Revision

    current = effective()
    return {
        "format": "cpusched-config",
        "revision": Revision.current("config"),
        "values": {k: e.value for k, e in current.items()},
        "sources": {k: e.source for k, e in current.items()},
    }


def parse_import(text: str) -> dict[str, Any]:
    """Parse an exported file (or a flat ``{key: value}`` object)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = Problem("file", None, f"not valid JSON: {exc}")
        raise ConfigError([problem]) from None
    if isinstance(data, dict) and isinstance(data.get("values"), dict):
        data = data["values"]
    if not isinstance(data, dict):
        problem = Problem("file", None, "expected a JSON object of key: value pairs")
        raise ConfigError([problem])
    return data


def import_values(values: Mapping[str, Any], user: str = "", reason: str = "") -> int:
    """Apply an imported set of values atomically.

    Keys whose imported value equals the effective one are skipped: an export
    of this machine imports cleanly even where the environment or the file
    locks a key, and defaults are not pinned into the database (so a later
    release's better default still applies). A different value for a locked
    key is refused like any other change.
    """
    current = effective()
    changes = {}
    for key, value in values.items():
        entry = current.get(key)
        if entry is not None and _equals(entry, value):
            continue
        changes[key] = value
    return apply(changes, user=user, reason=reason or "import")


def _equals(entry: Effective, value: Any) -> bool:
    try:
        return coerce(PARAMS[entry.key], value) == entry.value
    except ValueError:
        return False


def current_revision(name: str = "config") -> int:
    from cpusched.models import Revision

    return Revision.current(name)

"""The parameter registry: every tunable of cpusched, with its type and range.

Each :class:`Param` describes one key such as ``limits.avg_max_usage``: its
type, default, allowed range or choices, category, unit, a description an
operator can read, and whether a running process needs a restart to use a new
value. Loading and validation live in :mod:`cpusched.config`; this module only
declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CATEGORIES = (
    "monitoring",
    "database",
    "limits",
    "scheduler",
    "reservation",
    "alerts",
    "server",
    "performance",
    "cgroup",
)

TYPES = ("int", "float", "bool", "string", "choice")


@dataclass(frozen=True)
class Param:
    key: str
    type: str
    default: Any
    description: str
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    restart: bool = False

    @property
    def category(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    def allowed(self) -> str:
        """Describe the allowed values, for error messages and the UI."""
        if self.type == "bool":
            return "true or false"
        if self.type == "choice":
            return "one of " + ", ".join(self.choices)
        if self.type == "string":
            return "text"
        kind = "an integer" if self.type == "int" else "a number"
        low = "" if self.min is None else f"{self.min:g}"
        high = "" if self.max is None else f"{self.max:g}"
        if low and high:
            return f"{kind} from {low} to {high}"
        if low:
            return f"{kind} of at least {low}"
        if high:
            return f"{kind} of at most {high}"
        return kind


def _int(key, default, description, unit="", lo=None, hi=None, restart=False):
    return Param(key, "int", default, description, unit, lo, hi, (), restart)


def _float(key, default, description, unit="", lo=None, hi=None, restart=False):
    return Param(key, "float", default, description, unit, lo, hi, (), restart)


def _bool(key, default, description, restart=False):
    return Param(key, "bool", default, description, restart=restart)


def _str(key, default, description, restart=False):
    return Param(key, "string", default, description, restart=restart)


def _choice(key, default, choices, description, restart=False):
    return Param(key, "choice", default, description, choices=choices, restart=restart)


_ALL = [
    # monitoring
    _float("monitoring.interval", 1.0, "Seconds between two samples", "s", 0.1, 60),
    _bool("monitoring.enable_cpu", True, "Sample whole-machine and group CPU use"),
    _bool("monitoring.enable_memory", True, "Sample memory use"),
    _bool("monitoring.enable_disk", True, "Sample disk read and write rates"),
    _bool("monitoring.enable_network", True, "Sample network in and out rates"),
    _int(
        "monitoring.smooth_window",
        5,
        "Seconds averaged to smooth CPU for control decisions and display "
        "(the windows always count raw values)",
        "s",
        1,
        300,
    ),
    _float(
        "monitoring.anomaly_threshold",
        3.0,
        "A reading this many standard deviations from the recent mean is "
        "treated as an outlier by the smoother",
        "x",
        1.0,
        100.0,
    ),
    _int("monitoring.retry_count", 3, "Retries of a failed reading", "", 0, 10),
    _float("monitoring.timeout", 5.0, "Time allowed for one reading", "s", 0.1, 60),
    _bool(
        "monitoring.count_steal",
        True,
        "Count steal time as used CPU (the provider usually does)",
    ),
    _int(
        "monitoring.vcpus",
        0,
        "vCPUs the provider bills for (0 = the CPUs this machine offers)",
        "CPUs",
        0,
        4096,
    ),
    _float(
        "monitoring.reboot_gap_percent",
        100.0,
        "CPU % assumed for every second of a gap that spans a reboot "
        "(100 is the safe side: the real use is unknown)",
        "%",
        0,
        100,
    ),
    # database
    _str("database.path", "", "SQLite file (empty = db.sqlite3 in the data dir)", True),
    _int("database.retention_days", 30, "Days raw samples are kept", "days", 1, 3650),
    _int(
        "database.sampling_interval", 1, "Seconds between stored samples", "s", 1, 3600
    ),
    _bool("database.archive_enabled", False, "Archive expired rows to files"),
    _int("database.archive_days", 365, "Days archive files are kept", "days", 1, 36500),
    _int("database.batch_size", 100, "Samples per batch insert", "rows", 1, 10000),
    _float(
        "database.batch_interval", 10.0, "Seconds between batch inserts", "s", 1, 600
    ),
    _int(
        "database.connection_pool_size",
        5,
        "Connections per process (SQLite uses one per thread)",
        "",
        1,
        100,
        restart=True,
    ),
    _int("database.vacuum_interval", 24, "Hours between VACUUM runs", "h", 1, 8760),
    _bool(
        "database.downsample_enabled", True, "Replace old raw rows by per-minute rows"
    ),
    _int(
        "database.downsample_after_days",
        7,
        "Days after which raw samples are downsampled",
        "days",
        1,
        3650,
    ),
    _int(
        "database.downsample_interval",
        60,
        "Seconds per downsampled row",
        "s",
        10,
        86400,
    ),
    # limits
    _float(
        "limits.avg_window_hours",
        12.0,
        "Length of the average window (fractions allowed)",
        "h",
        0.001,
        168,
    ),
    _float(
        "limits.avg_max_usage",
        30.0,
        "Highest mean CPU over the average window",
        "%",
        0.1,
        100,
    ),
    _float(
        "limits.avg_min_usage",
        5.0,
        "Lowest mean CPU the machine should get",
        "%",
        0,
        100,
    ),
    _float(
        "limits.avg_warning_threshold",
        5.0,
        "Average budget left (percentage points) that raises a warning",
        "%",
        0,
        100,
    ),
    _float(
        "limits.avg_critical_threshold",
        2.0,
        "Average budget left (percentage points) that raises a critical alert",
        "%",
        0,
        100,
    ),
    _float(
        "limits.peak_window_hours",
        24.0,
        "Length of the peak window (fractions allowed)",
        "h",
        0.001,
        168,
    ),
    _float(
        "limits.peak_threshold",
        95.0,
        "CPU % at or above which a second is a peak second",
        "%",
        1,
        100,
    ),
    _int(
        "limits.peak_max_duration",
        600,
        "Peak seconds allowed in one peak window",
        "s",
        0,
        604800,
    ),
    _int(
        "limits.peak_warning_threshold",
        120,
        "Peak seconds left that raise a warning",
        "s",
        0,
        604800,
    ),
    _int(
        "limits.peak_critical_threshold",
        60,
        "Peak seconds left that raise a critical alert",
        "s",
        0,
        604800,
    ),
    _float(
        "limits.absolute_min_cpu",
        5.0,
        "Floor every future second is guaranteed",
        "%",
        0,
        100,
    ),
    _float("limits.absolute_max_cpu", 95.0, "Highest cap ever set", "%", 1, 100),
    _float(
        "limits.safety_margin",
        5.0,
        "Part of the average limit kept unspent as a margin (see docs/planner.md)",
        "%",
        0,
        50,
    ),
    _float(
        "limits.safe_cap",
        0.0,
        "Cap left on the group when the scheduler stops (0 = the average "
        "limit minus the safety margin, the sustainable rate)",
        "%",
        0,
        100,
    ),
    # scheduler
    _choice(
        "scheduler.mode",
        "balanced",
        ("conservative", "balanced", "aggressive"),
        "How fast to spend under the planner's safe bound",
    ),
    _bool("scheduler.enabled", True, "Write caps to the cgroup (off: monitor only)"),
    _float(
        "scheduler.adjustment_step",
        5.0,
        "Largest increase per adjustment",
        "%",
        0.1,
        100,
    ),
    _float(
        "scheduler.adjustment_interval", 10.0, "Seconds between increases", "s", 0, 3600
    ),
    _float(
        "scheduler.smooth_factor",
        0.3,
        "Weight of the new target in an increase",
        "",
        0.01,
        1,
    ),
    _float(
        "scheduler.change_threshold",
        2.0,
        "Smallest cap change that rewrites the cgroup",
        "%",
        0,
        50,
    ),
    _float(
        "scheduler.quota_high_cpu_limit",
        85.0,
        "Cap while quota is plenty (>20 % left)",
        "%",
        0,
        100,
    ),
    _float(
        "scheduler.quota_high_adjustment_speed",
        1.0,
        "Speed factor when plenty",
        "",
        0.01,
        10,
    ),
    _float(
        "scheduler.quota_medium_cpu_limit",
        60.0,
        "Cap while quota is tight (5-20 % left)",
        "%",
        0,
        100,
    ),
    _float(
        "scheduler.quota_medium_adjustment_speed",
        0.7,
        "Speed factor when tight",
        "",
        0.01,
        10,
    ),
    _float(
        "scheduler.quota_low_cpu_limit",
        35.0,
        "Cap while quota is nearly exhausted",
        "%",
        0,
        100,
    ),
    _float(
        "scheduler.quota_low_adjustment_speed",
        0.5,
        "Speed factor when nearly exhausted",
        "",
        0.01,
        10,
    ),
    _float(
        "scheduler.emergency_threshold",
        1.0,
        "Remaining quota (%) below which emergency mode starts",
        "%",
        0,
        100,
    ),
    _float("scheduler.emergency_cpu_limit", 20.0, "Cap in emergency mode", "%", 0, 100),
    # reservation
    _bool("reservation.enabled", True, "Honour reservations"),
    _int(
        "reservation.max_concurrent", 10, "Reservations active at one time", "", 1, 1000
    ),
    _int("reservation.min_duration", 5, "Shortest reservation", "min", 1, 10080),
    _float("reservation.max_duration", 24.0, "Longest reservation", "h", 0.1, 168),
    _int(
        "reservation.advance_notice", 15, "Notice before a slot starts", "min", 0, 10080
    ),
    _bool("reservation.allow_overlap", False, "Allow reservations to overlap"),
    _bool(
        "reservation.priority_override",
        True,
        "A higher-priority reservation displaces a lower one it overlaps",
    ),
    # alerts
    _bool("alerts.enabled", True, "Raise alerts"),
    _bool(
        "alerts.quota_alert_enabled", True, "Alerts about the average and peak budgets"
    ),
    _bool("alerts.system_alert_enabled", True, "Alerts about CPU, memory and disk"),
    _bool("alerts.reservation_alert_enabled", True, "Alerts about reservations"),
    _float("alerts.cpu_high_threshold", 90.0, "CPU % that counts as high", "%", 0, 100),
    _int(
        "alerts.cpu_high_duration",
        300,
        "Seconds of high CPU before an alert",
        "s",
        1,
        86400,
    ),
    _float(
        "alerts.memory_high_threshold",
        85.0,
        "Memory % that counts as high",
        "%",
        0,
        100,
    ),
    _float(
        "alerts.disk_low_threshold", 10.0, "Free disk % that counts as low", "%", 0, 100
    ),
    _int(
        "alerts.aggregation_window",
        300,
        "Seconds in which repeats are merged",
        "s",
        0,
        86400,
    ),
    _int(
        "alerts.max_alerts_per_hour", 20, "Alerts raised per hour at most", "", 1, 10000
    ),
    _int(
        "alerts.silence_duration",
        30,
        "Minutes an alert type stays silent",
        "min",
        0,
        10080,
    ),
    _bool("alerts.notify_web", True, "Show alerts in the web pages"),
    _bool("alerts.notify_email", False, "Send alerts by email"),
    _bool("alerts.notify_webhook", False, "Post alerts to a webhook"),
    _str("alerts.email_to", "", "Comma-separated recipients of alert emails"),
    _str("alerts.webhook_url", "", "URL alerts are posted to as JSON"),
    # server
    _str("server.host", "127.0.0.1", "Address the web server listens on", True),
    _int(
        "server.port",
        8080,
        "Port the web server listens on",
        "",
        1,
        65535,
        restart=True,
    ),
    _bool("server.debug", False, "Django debug mode (never in production)", True),
    _int("server.workers", 1, "Web worker processes", "", 1, 64, restart=True),
    _bool("server.ws_enabled", True, "Push live data over WebSockets"),
    _float("server.ws_push_interval", 1.0, "Seconds between pushes", "s", 0.2, 60),
    _int("server.ws_max_connections", 100, "WebSocket clients at most", "", 1, 10000),
    _bool("server.auth_enabled", True, "Require login or an API key"),
    _int(
        "server.session_timeout", 30, "Minutes an idle session lasts", "min", 1, 43200
    ),
    _bool("server.rate_limit_enabled", True, "Limit requests per client"),
    _int(
        "server.rate_limit_requests",
        100,
        "Requests per minute per client",
        "",
        1,
        100000,
    ),
    _bool("server.metrics_public", True, "Serve /metrics without authentication"),
    _str(
        "server.allowed_origins",
        "",
        "Extra comma-separated origins allowed to open WebSockets",
    ),
    _str("server.time_zone", "UTC", "The operator's time zone (IANA name)", True),
    # performance
    _int(
        "performance.max_memory_mb",
        512,
        "Memory the scheduler may use",
        "MB",
        16,
        65536,
    ),
    _float(
        "performance.max_cpu_percent", 5.0, "CPU the scheduler may use", "%", 0.1, 100
    ),
    _bool("performance.cache_enabled", True, "Cache computed history"),
    _int("performance.cache_ttl", 60, "Seconds a cache entry lives", "s", 1, 86400),
    _int("performance.cache_max_size", 1000, "Cache entries at most", "", 1, 1000000),
    _int(
        "performance.max_concurrent_tasks", 10, "Background tasks at once", "", 1, 1000
    ),
    _int(
        "performance.task_timeout",
        30,
        "Seconds a background task may run",
        "s",
        1,
        86400,
    ),
    _int(
        "performance.chart_max_points",
        720,
        "Points per chart series at most",
        "",
        10,
        100000,
    ),
    # cgroup
    _choice(
        "cgroup.backend",
        "auto",
        ("auto", "v2", "v1", "dry-run"),
        "Which cgroup interface to control (auto prefers v2)",
        restart=True,
    ),
    _str(
        "cgroup.group",
        "cpusched/workload",
        "The managed group, relative to the cgroup mount",
        restart=True,
    ),
    _int(
        "cgroup.period_us",
        100000,
        "CFS period written with the quota",
        "us",
        1000,
        1000000,
    ),
    _str(
        "cgroup.attach_names",
        "",
        "Comma-separated process names attached automatically",
    ),
    _str(
        "cgroup.attach_cmdline",
        "",
        "Comma-separated substrings of command lines attached automatically",
    ),
    _str(
        "cgroup.attach_users", "", "Comma-separated users whose processes are attached"
    ),
    _float(
        "cgroup.attach_interval", 5.0, "Seconds between attach-rule scans", "s", 1, 3600
    ),
]

PARAMS: dict[str, Param] = {p.key: p for p in _ALL}

# The original design's config.ini used [cpu_limits] for what is now limits.*.
SECTION_ALIASES = {"cpu_limits": "limits"}


def get_param(key: str) -> Param | None:
    return PARAMS.get(key)


def by_category(category: str) -> list[Param]:
    return [p for p in _ALL if p.category == category]

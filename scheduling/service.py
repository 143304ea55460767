"""The scheduler loop's steps: sample, record, plan, control, alert, persist.

:class:`Scheduler` owns one of each part and runs one :meth:`~Scheduler.tick`
per second; ``manage.py runscheduler`` only opens resources, loops and stops.
Each step is a small object or function testable alone with injected clocks
and fake counters:

- :func:`fill_gap` decides what the seconds nobody sampled were worth
  (exact averages from cumulative counters, or an assumption across a
  reboot), and :func:`restore` rebuilds the windows from stored samples;
- :class:`Batcher` buffers samples, decisions and events and inserts them in
  batches (``database.batch_size`` / ``database.batch_interval``);
- :class:`ReservationFeed` keeps the reserved-CPU profile current;
- :mod:`scheduling.timeline` labels seconds and detects clock steps;
- :mod:`scheduling.control` writes and guards the group cap.

Per tick the database sees one revision poll and one live-state write;
everything else goes through the batcher.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from alerts import service as alerts
from alerts.rules import AlertRules, Facts
from cpusched import config
from cpusched.models import Revision
from monitoring import livestate
from monitoring.models import Sample
from monitoring.sampler import CpuCounters, Reading, Sampler
from monitoring.smoothing import Smoother
from scheduling.background import BackgroundEstimate
from scheduling.cgroups import Backend
from scheduling.control import Control, GroupControl
from scheduling.engine import Decision, Engine, Status
from scheduling.models import Decision as DecisionRow
from scheduling.models import Event
from scheduling.timeline import Advance, History, SystemClock, Timeline, next_deadline

logger = logging.getLogger(__name__)

BOOT_ID = "/proc/sys/kernel/random/boot_id"
PROFILE_REFRESH_S = 60.0
"""The reservation horizon moves: reload the profile at least this often."""
DISK_CHECK_S = 60.0
"""Seconds between free-disk checks (statvfs; disks fill slowly)."""
CONFIG_FILE_CHECK_S = 3.0
"""Seconds between stat() calls on config.ini: a file edit bumps no revision."""
CONFIG_ALERT = "config.invalid"
RUN_TIME_EVERY_S = 10.0
"""Seconds between full status computations (see Scheduler._status)."""
LARGE_GAP_S = 5
"""Gaps longer than this are logged at INFO and recorded as events."""
STORE_NOW = 2_000
"""Buffered samples that are stored at once, whatever the batch settings."""
MAX_BUFFERED = 36_000
"""Samples kept in memory while the database refuses writes (10 h at 1 Hz)."""
FIRST_TICK_AFTER_S = 0.5
"""The first interval is measured over at least this long, never assumed."""
POLL_SQL = (
    f"SELECT name, number FROM {Revision._meta.db_table} "
    "WHERE name IN ('config', 'reservations')"
)
WINDOW_KEYS = ("limits.avg_window_hours", "limits.peak_window_hours")
RESTART_KEYS = ("cgroup.backend", "cgroup.group", "database.path")


def read_boot_id() -> str:
    """This boot's id: it changes at every reboot, never with the clock."""
    try:
        with open(BOOT_ID) as handle:
            return handle.read().strip()
    except OSError:
        import psutil

        return f"btime-{psutil.boot_time():.0f}"


def safe_cap(params: Mapping[str, Any]) -> float:
    """The cap left on the group at stop: ``limits.safe_cap``, or if 0 the
    sustainable rate (the average limit less the safety margin)."""
    if params["limits.safe_cap"] > 0:
        return float(params["limits.safe_cap"])
    limit = params["limits.avg_max_usage"]
    return limit * (1 - params["limits.safety_margin"] / 100)


def file_signature(path: os.PathLike[str] | str) -> tuple[int, int, int] | None:
    """What changes when ``path`` is edited or replaced; None when it is absent."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def window_length(params: Mapping[str, Any]) -> int:
    """Seconds of history both windows need."""
    hours = max(params[key] for key in WINDOW_KEYS)
    return max(1, round(hours * 3600))


# Gaps and restore -------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """CPU counters at the end of the last stored second, for the next start."""

    ts: int
    wall: float
    mono: float
    busy_s: float
    steal_s: float
    boot_id: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Snapshot | None:
        if not data:
            return None
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None

    def counters(self) -> CpuCounters:
        return CpuCounters(self.busy_s, self.steal_s)


@dataclass(frozen=True)
class Now:
    """The counters read at start-up, that the gap runs up to."""

    wall: float
    mono: float
    counters: CpuCounters
    boot_id: str

    @property
    def last_ts(self) -> int:
        """The last whole second before this instant."""
        return math.floor(self.wall) - 1


@dataclass(frozen=True)
class GapFill:
    """Values for the seconds ``last_ts - count + 1 .. last_ts``."""

    last_ts: int
    values: list[tuple[float, str]] = field(default_factory=list)
    how: str = "no gap"

    @property
    def count(self) -> int:
        return len(self.values)


def fill_gap(
    last_stored: int | None,
    snapshot: Snapshot | None,
    now: Now,
    sampler: Sampler,
    params: Mapping[str, Any],
) -> GapFill:
    """What each second between the last stored sample and ``now`` was worth.

    Same boot with a snapshot: the exact average from the counters. A first
    start: the average since boot for the seconds since boot. After a
    reboot: the average since boot for the seconds since boot and
    ``monitoring.reboot_gap_percent`` before it.
    """
    limit = window_length(params)
    since_boot = sampler.percent(sampler.busy(now.counters), now.mono, sampler.cpus)
    uptime = int(now.mono)
    if last_stored is None:
        count = min(uptime, limit)
        how = (
            f"first start: {count} s since boot counted at the average since "
            f"boot ({since_boot:.1f} %)"
        )
        return GapFill(now.last_ts, [(since_boot, Sample.ASSUMED)] * count, how)

    if snapshot is not None and snapshot.boot_id == now.boot_id:
        return _same_boot(last_stored, snapshot, now, sampler, limit)

    gap = max(0, now.last_ts - last_stored)
    after = min(gap, uptime)
    before = gap - after
    assumed = float(params["monitoring.reboot_gap_percent"])
    values = [(assumed, Sample.ASSUMED)] * before + [
        (since_boot, Sample.FILLED)
    ] * after
    cause = "machine rebooted" if snapshot else "no counter snapshot from the last run"
    how = (
        f"{cause}: gap of {gap} s, {after} s since boot filled from the counters "
        f"({since_boot:.1f} %), {before} s before assumed at {assumed:g} % "
        "(monitoring.reboot_gap_percent)"
    )
    return GapFill(now.last_ts, values[-limit:] if limit else [], how)


def _same_boot(
    last_stored: int, snapshot: Snapshot, now: Now, sampler: Sampler, limit: int
) -> GapFill:
    elapsed = max(now.mono - snapshot.mono, 1e-6)
    gap = now.last_ts - last_stored
    if abs((now.wall - snapshot.wall) - elapsed) > 2.0:
        # The wall clock was stepped while we were away: trust the monotonic
        # clock for how many seconds passed.
        gap = round(elapsed) - max(0, snapshot.ts - last_stored)
    gap = max(0, gap)
    busy = sampler.busy(now.counters) - sampler.busy(snapshot.counters())
    value = sampler.percent(busy, elapsed, sampler.cpus)
    how = f"gap of {gap} s filled from the counters ({value:.1f} %)"
    if gap == 0:
        how = "no gap"
    values = [(value, Sample.FILLED)] * min(gap, limit)
    return GapFill(now.last_ts, values, how)


def load_stored(length: int) -> tuple[list[float], int | None]:
    """The last ``length`` stored seconds (oldest first) and the last timestamp.

    Rows are taken in timestamp order and treated as consecutive seconds: the
    only holes stored samples have are wall-clock steps, which are not time
    that passed.
    """
    newest = Sample.objects.order_by("-timestamp")
    last = newest.values_list("timestamp", flat=True).first()
    if last is None:
        return [], None
    values = list(newest.values_list("cpu_usage", flat=True)[:length])
    values.reverse()
    return values, int(last.timestamp())


@dataclass(frozen=True)
class Restored:
    history: list[float]
    stored_s: int
    gap: GapFill


def restore(
    params: Mapping[str, Any], now: Now, sampler: Sampler, snapshot: Snapshot | None
) -> Restored:
    """The windows' history at start-up: stored samples plus the filled gap."""
    length = window_length(params)
    stored, last = load_stored(length)
    gap = fill_gap(last, snapshot, now, sampler, params)
    history = (stored + [value for value, _ in gap.values])[-length:]
    return Restored(history, len(stored), gap)


# Persistence --------------------------------------------------------------------


class Batcher:
    """Samples, decisions and events kept in memory and inserted in batches."""

    def __init__(self, params: Mapping[str, Any], clock: Callable[[], float]) -> None:
        self.clock = clock
        self.samples: list[Sample] = []
        self.rows: list[DecisionRow | Event] = []
        self.pending: Snapshot | None = None
        self.flushed: Snapshot | None = None
        self._last_flush = clock()
        self._failing = False
        self.configure(params)

    def configure(self, params: Mapping[str, Any]) -> None:
        self.batch_size = params["database.batch_size"]
        self.batch_interval = params["database.batch_interval"]

    def sample(self, ts: int, fields: Mapping[str, Any]) -> None:
        self.samples.append(Sample(timestamp=_utc(ts), **fields))
        if len(self.samples) % STORE_NOW == 0:
            # A long gap fills many seconds at once: store them as they come
            # so memory stays flat.
            self.flush()
        if len(self.samples) > MAX_BUFFERED:
            del self.samples[: len(self.samples) - MAX_BUFFERED]

    def event(self, kind: str, message: str, details: Mapping[str, Any]) -> None:
        row = Event(timestamp=timezone.now(), kind=kind, message=message)
        row.details = dict(details)
        self.rows.append(row)

    def decision(self, row: DecisionRow) -> None:
        self.rows.append(row)

    def due(self) -> bool:
        if len(self.samples) >= self.batch_size:
            return True
        waited = self.clock() - self._last_flush
        return waited >= self.batch_interval and bool(self.samples or self.rows)

    def flush(self) -> bool:
        """Insert everything buffered; keep it for the next try on failure."""
        self._last_flush = self.clock()
        if not (self.samples or self.rows):
            return True
        try:
            self._insert()
        except DatabaseError as err:
            if not self._failing:
                logger.error(
                    "Could not store %d samples (%s); keeping them in memory "
                    "and retrying every %g s",
                    len(self.samples),
                    err,
                    self.batch_interval,
                )
            self._failing = True
            return False
        if self._failing:
            logger.warning("Storing samples works again")
        self._failing = False
        self.samples, self.rows = [], []
        self.flushed = self.pending or self.flushed
        return True

    def _insert(self) -> None:
        decisions = [r for r in self.rows if isinstance(r, DecisionRow)]
        events = [r for r in self.rows if isinstance(r, Event)]
        with transaction.atomic():
            Sample.objects.bulk_create(self.samples, ignore_conflicts=True)
            DecisionRow.objects.bulk_create(decisions)
            Event.objects.bulk_create(events)


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


# Reservations -----------------------------------------------------------------


class ReservationFeed:
    """The reserved-CPU profile, reloaded when reservations change."""

    def __init__(self) -> None:
        try:
            from reservations.profile import future_profile
        except ImportError:
            future_profile = None
        self._load = future_profile
        self.slots: list[Any] = []
        self._loaded_at: float | None = None
        self._revision: int | None = None
        self.error: str | None = None

    @property
    def available(self) -> bool:
        return self._load is not None

    def due(self, revision: int, mono: float) -> bool:
        if self._load is None:
            return False
        if self._loaded_at is None or revision != self._revision:
            return True
        return mono - self._loaded_at >= PROFILE_REFRESH_S

    def refresh(self, start: int, end: int, revision: int, mono: float) -> bool:
        """Reload slots over ``[start, end)``; True when the list changed."""
        self._loaded_at = mono
        self._revision = revision
        try:
            slots = list(self._load(start, end)) if self._load else []
        except Exception as err:  # a broken reservation must not stop control
            if self.error != str(err):
                logger.error("Could not load the reservation profile: %s", err)
            self.error = str(err)
            return False
        self.error = None
        changed = [_key(s) for s in slots] != [_key(s) for s in self.slots]
        self.slots = slots
        return changed

    def intervals(self) -> list[tuple[int, int, float]]:
        return [(s.start, s.end, s.percent) for s in self.slots]

    def active(self, ts: int) -> Any | None:
        """The largest slot running at second ``ts``, if any."""
        running = [s for s in self.slots if s.start <= ts < s.end]
        return max(running, key=lambda s: s.percent, default=None)


def _key(slot: Any) -> tuple[Any, ...]:
    return (slot.start, slot.end, slot.percent, slot.reservation_id)


# The loop -----------------------------------------------------------------------


@dataclass
class Tick:
    """What one tick saw and decided, for the live state and the log."""

    reading: Reading
    advance: Advance
    decision: Decision
    status: Status
    control: Control
    smoothed: float | None
    reservation: Any | None = None


class Scheduler:
    """One scheduler: sampler, windows, engine, group control, persistence."""

    def __init__(
        self,
        params: Mapping[str, Any],
        backend: Backend,
        sampler: Sampler | None = None,
        clock: Any = None,
        rules: AlertRules | None = None,
        attach_scan: Callable[[], Any] | None = None,
        boot_id: str | None = None,
    ) -> None:
        self.params = dict(params)
        self.backend = backend
        self.clock = clock or SystemClock()
        group = None if backend.kind == "dry-run" else backend
        self.sampler = sampler or Sampler(
            params, group, clock=self.clock.mono, wall=self.clock.wall
        )
        self.batcher = Batcher(params, self.clock.mono)
        self.control = GroupControl(
            backend, params["scheduler.change_threshold"], self.batcher.event
        )
        self.rules = rules or AlertRules(params)
        self.feed = ReservationFeed()
        self.background = BackgroundEstimate()
        self.attach_scan = attach_scan
        self.smoother = self._smoother(params)
        self.boot_id = boot_id or read_boot_id()
        self.started_at = timezone.now()
        self.summary = ""
        self.last: Tick | None = None
        self._revisions: dict[str, int] = {}
        self._config_file = file_signature(config.config_file_path())
        self._config_checked: float | None = None
        self._config_problem: str | None = None
        self._reload_pending = False
        self._full_status: tuple[Status | None, float] = (None, 0.0)
        self._rebuilt = True
        self._cap: float | None = None
        self._tier: str | None = None
        self._disk_free: float | None = None
        self._disk_checked: float | None = None
        self._attach_at: float | None = None
        self._db_failing = False
        self._disabled = False
        self._last_error: str | None = None

    @staticmethod
    def _smoother(params: Mapping[str, Any]) -> Smoother:
        return Smoother(
            params["monitoring.smooth_window"], params["monitoring.anomaly_threshold"]
        )

    # Start -------------------------------------------------------------------

    def start(self) -> str:
        """Prime the counters, rebuild the windows, read the group; the summary."""
        wall = self.clock.wall()
        counters = self.sampler.prime()
        if counters is None:
            raise RuntimeError(
                "Cannot read the CPU counters in /proc/stat; the scheduler "
                "cannot measure anything without them (is /proc mounted?)"
            )
        now = Now(wall, self.sampler.primed_at, counters, self.boot_id)
        snapshot = Snapshot.from_dict(livestate.previous_snapshot())
        restored = restore(self.params, now, self.sampler, snapshot)

        self._store_gap(restored.gap, now)
        self.history = History(window_length(self.params), restored.history)
        self.timeline = Timeline(now.last_ts, now.wall, now.mono)
        self.engine = self._engine()
        self._revisions = self._poll()
        self._refresh_profile(now.mono, force=True)
        self.control.start()
        self._resolve_config_alert()  # the parameters given were loaded cleanly

        self.summary = self._summary(restored)
        self.batcher.event("start", self.summary, {"pid": os.getpid()})
        self._flush()
        return self.summary

    def _store_gap(self, gap: GapFill, now: Now) -> None:
        first = gap.last_ts - gap.count + 1
        for offset, (value, source) in enumerate(gap.values):
            self.batcher.sample(first + offset, {"cpu_usage": value, "source": source})
        if gap.count:
            self.batcher.event("gap_filled", gap.how, {"seconds": gap.count})
        self.batcher.pending = Snapshot(
            gap.last_ts,
            now.wall,
            now.mono,
            now.counters.busy_s,
            now.counters.steal_s,
            self.boot_id,
        )

    def _summary(self, restored: Restored) -> str:
        backend = self.backend
        cpus = self.sampler.cpus
        offered = self.sampler.offered
        cpu_text = f"{cpus} CPUs" + (
            f" (monitoring.vcpus; the machine offers {offered})"
            if cpus != offered
            else ""
        )
        return (
            f"backend {backend.kind}, group {backend.path}, {cpu_text}, "
            f"windows restored from {restored.stored_s} s of stored samples "
            f"(need {window_length(self.params)} s), {restored.gap.how}, "
            f"reservations {'on' if self.feed.available else 'not available'}"
        )

    def _engine(self) -> Engine:
        self._rebuilt = True
        engine = Engine.from_params(
            self.params,
            self.history.values(),
            now=self.timeline.last_ts + 1,
            background=self.background.value,
        )
        if self.feed.slots:
            engine.set_profile(self.feed.intervals())
        return engine

    # One tick ------------------------------------------------------------------

    def tick(self) -> Tick:
        """Sample, record, plan, control, alert and persist one second."""
        reading = self.sampler.sample()
        advance = self.timeline.advance(reading.wall, reading.mono)
        self._note_failures(reading)
        self._record(advance, reading)
        self._follow_changes(reading.mono)
        self._follow_background(advance, reading)

        now = self.timeline.last_ts + 1
        decision = self.engine.decide(now)
        status = self._status(decision, reading.mono)
        smoothed = self._smooth(reading)
        control = self._control(decision, reading)
        tick = Tick(
            reading,
            advance,
            decision,
            status,
            control,
            smoothed,
            self.feed.active(now),
        )
        self._log_decision(tick)
        self._alert(tick)
        self._persist(tick)
        self._scan_attach(reading.mono)
        self.last = tick
        return tick

    def _note_failures(self, reading: Reading) -> None:
        """Record the first failure of each read (the sampler logged it)."""
        for failure in reading.failures:
            name = failure.split(":", 1)[0]
            if self.sampler.failure_streaks.get(name) == 1:
                message = f"Reading {failure}; the last good value stands in"
                self.batcher.event("read_failed", message, {"metric": name})

    def _status(self, decision: Decision, mono: float) -> Status:
        """The engine's figures; the costly run time at 100 % every 10 s.

        ``run_time_at_100`` projects the windows second by second, which
        costs about a millisecond; in between it is counted down.
        """
        cached, at = self._full_status
        if cached is None or mono - at >= RUN_TIME_EVERY_S or self._rebuilt:
            status = self.engine.status()
            self._full_status = (status, mono)
            self._rebuilt = False
            return status
        planner = self.engine.planner
        run_time = cached.run_time_at_100
        if run_time is not None:
            run_time = max(0, run_time - round(mono - at))
        return replace(
            cached,
            avg_mean=planner.avg_mean(),
            avg_remaining_percent=planner.avg_remaining_percent(),
            avg_remaining_cpu_s=planner.avg_remaining_cpu_s(),
            peak_used_s=planner.peak_used_s(),
            peak_remaining_s=planner.peak_remaining_s(),
            bound=decision.bound,
            run_time_at_100=run_time,
            tier=decision.tier,
        )

    def _record(self, advance: Advance, reading: Reading) -> None:
        """Feed the completed seconds to the windows and the sample buffer."""
        if advance.count == 0:
            return
        value = reading.cpu_percent
        if value is None:
            value = float(self.params["monitoring.reboot_gap_percent"])
        if advance.stepped:
            self._clock_stepped(advance)

        length = self.history.length
        expected = max(1, round(self.params["monitoring.interval"]))
        rebuild = advance.stepped or advance.count > length
        first = max(advance.first, advance.last - length + 1)
        for ts in range(first, advance.last + 1):
            self.history.add(value)
            if not rebuild:
                self.engine.record(ts, value)
            filled = advance.last - ts >= expected
            self.batcher.sample(ts, self._sample_fields(reading, value, filled))
        if rebuild:
            self.engine = self._engine()
        if advance.count > LARGE_GAP_S:
            self._gap(advance, value)
        self._remember_counters(reading, advance.last)

    def _sample_fields(
        self, reading: Reading, value: float, filled: bool
    ) -> dict[str, Any]:
        return {
            "cpu_usage": value,
            "memory_usage": reading.memory_percent or 0.0,
            "disk_io_read": reading.disk_read_bps or 0.0,
            "disk_io_write": reading.disk_write_bps or 0.0,
            "network_in": reading.net_in_bps or 0.0,
            "network_out": reading.net_out_bps or 0.0,
            "group_cpu": reading.group_percent,
            "cpu_limit": self._cap,
            "is_peak": value >= self.params["limits.peak_threshold"],
            "source": Sample.FILLED if filled else Sample.MEASURED,
        }

    def _remember_counters(self, reading: Reading, ts: int) -> None:
        counters = reading.cpu_counters
        if counters is None:
            return
        self.batcher.pending = Snapshot(
            ts,
            reading.wall,
            reading.mono,
            counters.busy_s,
            counters.steal_s,
            self.boot_id,
        )

    def _clock_stepped(self, advance: Advance) -> None:
        direction = "forward" if advance.step_s > 0 else "back"
        message = (
            f"Wall clock stepped {direction} by {abs(advance.step_s):.1f} s; "
            f"the windows count the {advance.count} s that really passed "
            "(monotonic clock) and continue from the new time"
        )
        logger.warning(message)
        self.batcher.event(
            "clock_step",
            message,
            {"step_s": round(advance.step_s, 3), "seconds": advance.count},
        )

    def _gap(self, advance: Advance, value: float) -> None:
        message = (
            f"{advance.count} s passed since the last tick (process paused or "
            f"machine busy); filled with their exact average {value:.1f} %"
        )
        logger.info(message)
        self.batcher.event("gap_filled", message, {"seconds": advance.count})

    def _smooth(self, reading: Reading) -> float | None:
        if reading.cpu_percent is None:
            return self.smoother.value
        return self.smoother.add(reading.cpu_percent)

    def _follow_background(self, advance: Advance, reading: Reading) -> None:
        """Plan future seconds for what runs outside the group (docs/planner.md).

        The simulator feeds the same estimate the same way, so a replay shows
        what the service would do.
        """
        if advance.count == 0:
            return
        estimate = self.background.add(self.timeline.last_ts, reading.outside_percent)
        if self.engine.set_background(estimate):
            self._rebuilt = True

    # Changes from outside -------------------------------------------------------

    def _follow_changes(self, mono: float) -> None:
        """Pick up new parameters and reservations (one query per tick)."""
        revisions = self._poll()
        moved = revisions.get("config", 0) != self._revisions.get("config", 0)
        if self._config_file_edited(mono) or moved:
            # A reload the database refused is tried again at the next file check.
            self._reload_pending = not self._reload()
        self._revisions = revisions or self._revisions
        self._refresh_profile(mono)

    def _config_file_edited(self, mono: float) -> bool:
        """Whether config.ini changed since the last look (every few seconds)."""
        checked = self._config_checked
        if checked is not None and mono - checked < CONFIG_FILE_CHECK_S:
            return False
        self._config_checked = mono
        signature = file_signature(config.config_file_path())
        if signature == self._config_file:
            return self._reload_pending
        self._config_file = signature
        return True

    def _poll(self) -> dict[str, int]:
        # Plain SQL: this runs every second and the ORM would rebuild the
        # same query each time (about ten times the cost of running it).
        try:
            with connection.cursor() as cursor:
                cursor.execute(POLL_SQL)
                found = dict(cursor.fetchall())
        except DatabaseError as err:
            self._db_error("poll revisions", err)
            return dict(self._revisions)
        return {"config": found.get("config", 0), **found}

    def _reload(self) -> bool:
        """Load the parameters again; False when it should be retried."""
        try:
            params = config.snapshot()
        except config.ConfigError as err:
            self._config_invalid(err)
            return True
        except Exception as err:  # a database hiccup must not stop control
            if not self._reload_pending:
                logger.error(
                    "Parameters changed but could not be loaded: %s; the last "
                    "good configuration stays in force and the load is retried",
                    err,
                )
            return False
        self._config_valid()
        changed = sorted(k for k in params if params[k] != self.params.get(k))
        if not changed:
            return True
        old, self.params = self.params, params
        for key in RESTART_KEYS:
            if key in changed:
                logger.warning("%s changed: it takes effect after a restart", key)
        self._configure_parts(params)
        if any(params[k] != old[k] for k in WINDOW_KEYS):
            self._rebuild_windows()
        else:
            self.engine = self._engine()
        logger.info("Parameters reloaded: %s", ", ".join(changed))
        self.batcher.event("reload", "Parameters reloaded", {"changed": changed})
        return True

    def _config_invalid(self, err: config.ConfigError) -> None:
        """Keep the last good parameters and say loudly what is wrong."""
        path = config.config_file_path()
        message = (
            f"The configuration cannot be loaded ({err}); the last good "
            f"configuration stays in force. Fix {path} (or the value named) and "
            "it is re-read within seconds"
        )
        if message != self._config_problem:
            logger.error("%s", message)
            self.batcher.event("config_invalid", message, {"problems": err.as_dict()})
        self._config_problem = message
        details = {"file": str(path), "problems": err.as_dict()}
        try:
            alerts.raise_alert(
                CONFIG_ALERT, "config", "critical", message, details, self.params
            )
        except DatabaseError as db_err:
            self._db_error("record the config.invalid alert", db_err)

    def _config_valid(self) -> None:
        """The configuration reads cleanly: resolve an earlier config.invalid."""
        if self._config_problem is None or not self._resolve_config_alert():
            return
        logger.warning("The configuration reads cleanly again; reloaded")
        self._config_problem = None

    def _resolve_config_alert(self) -> bool:
        try:
            alerts.resolve_alert(CONFIG_ALERT)
        except DatabaseError as err:
            self._db_error("resolve the config.invalid alert", err)
            return False
        return True

    def _configure_parts(self, params: Mapping[str, Any]) -> None:
        self.sampler.configure(params)
        self.batcher.configure(params)
        self.control.change_threshold = params["scheduler.change_threshold"]
        self.rules.configure(params)
        self.smoother = self._smoother(params)
        self._attach_at = None

    def _rebuild_windows(self) -> None:
        """New window lengths: rebuild from stored samples (flushed first)."""
        self._flush()
        length = window_length(self.params)
        try:
            stored, _ = load_stored(length)
        except DatabaseError as err:
            self._db_error("rebuild the windows", err)
            stored = self.history.values()
        self.history = History(length, stored)
        self.engine = self._engine()
        logger.info("Windows rebuilt from %d stored seconds", len(stored))

    def _refresh_profile(self, mono: float, force: bool = False) -> None:
        revision = self._revisions.get("reservations", 0)
        if not (force or self.feed.due(revision, mono)):
            return
        start = self.timeline.last_ts + 1
        horizon = window_length(self.params) + 1
        try:
            changed = self.feed.refresh(start, start + horizon, revision, mono)
        except DatabaseError as err:
            self._db_error("load reservations", err)
            return
        if changed or force:
            self.engine.set_profile(self.feed.intervals())
            self._rebuilt = True

    # Control ---------------------------------------------------------------------

    def _control(self, decision: Decision, reading: Reading) -> Control:
        if not self.params["scheduler.enabled"]:
            return self._monitor_only()
        if self._disabled:
            logger.info("scheduler.enabled is on again: the group is capped again")
            self._disabled = False
        outside = self._outside(reading)
        return self.control.apply(decision.cap, outside, decision.action == "decrease")

    def _outside(self, reading: Reading) -> float | None:
        """CPU used outside the group (whole-machine %), for the group's share."""
        outside = reading.outside_percent
        if outside is None:
            return None
        return outside

    def _monitor_only(self) -> Control:
        """scheduler.enabled is off: lift the cap once and only watch."""
        if self._disabled:
            return Control(None, self.control.enforced, error=self.control.error)
        self._disabled = True
        logger.info("scheduler.enabled is off: the group cap is lifted (100 %)")
        return self.control.leave_at(100.0)

    def _log_decision(self, tick: Tick) -> None:
        decision, control = tick.decision, tick.control
        cap_moved = self._cap is None or abs(decision.cap - self._cap) > 1e-6
        tier_moved = decision.tier != self._tier
        if control.wrote:
            self._log_write(tick, tier_moved)
        if cap_moved or tier_moved or control.wrote:
            self.batcher.decision(self._decision_row(tick))
        self._cap = decision.cap
        self._tier = decision.tier

    def _log_write(self, tick: Tick, tier_moved: bool) -> None:
        control = tick.control
        before = control.previous
        change = None if before is None else abs((control.enforced or 100.0) - before)
        big = change is None or change >= self.control.change_threshold
        level = logging.INFO if big or tier_moved or control.reverted else logging.DEBUG
        logger.log(
            level,
            "Group cap %s -> %s (machine cap %.1f %%, outside the group %s): %s",
            _pct(before),
            _pct(control.enforced),
            tick.decision.cap,
            _unknown(tick.reading.outside_percent),
            tick.decision.reason,
        )

    def _decision_row(self, tick: Tick) -> DecisionRow:
        decision, status, slot = tick.decision, tick.status, tick.reservation
        return DecisionRow(
            timestamp=timezone.now(),
            cpu_limit=decision.cap,
            group_limit=tick.control.enforced,
            bound=decision.bound,
            avg_12h=status.avg_mean,
            avg_quota_remaining=status.avg_remaining_percent,
            peak_24h=status.peak_used_s,
            peak_quota_remaining=status.peak_remaining_s,
            available_quota=status.avg_remaining_cpu_s,
            reservation_id=str(slot.reservation_id) if slot else "",
            action=decision.action,
            tier=decision.tier,
            reason=decision.reason,
            scheduler_mode=self.params["scheduler.mode"],
        )

    # Alerts, persistence, attach rules ------------------------------------------

    def _alert(self, tick: Tick) -> None:
        policy = self.engine.policy
        slot = tick.reservation
        facts = Facts(
            avg_remaining_percent=tick.status.avg_remaining_percent,
            peak_remaining_s=tick.status.peak_remaining_s,
            tier=tick.decision.tier,
            cpu_percent=tick.reading.cpu_percent,
            memory_percent=tick.reading.memory_percent,
            disk_free_percent=self._disk_free_percent(tick.reading.mono),
            write_error=tick.control.error,
            degraded_reason=self.backend.degraded_reason,
            bound=policy.bound,
            floor=policy.floor,
            background=self.background.value if self._controlled() else None,
            reservation=slot.name if slot else None,
            read_failures=dict(self.sampler.failure_streaks),
        )
        try:
            self.rules.evaluate(facts, tick.reading.mono)
        except DatabaseError as err:
            self._db_error("record alerts", err)

    def _disk_free_percent(self, mono: float) -> float | None:
        if not self.params["monitoring.enable_disk"]:
            return None
        if self._disk_checked is not None and mono - self._disk_checked < DISK_CHECK_S:
            return self._disk_free
        self._disk_checked = mono
        try:
            stat = os.statvfs(config.data_dir())
            self._disk_free = 100.0 * stat.f_bavail / max(stat.f_blocks, 1)
        except OSError as err:
            logger.debug("Free disk check failed: %s", err)
        return self._disk_free

    def _persist(self, tick: Tick) -> None:
        if self.batcher.due():
            self._flush()
        self._write_live(tick)

    def _flush(self) -> None:
        self.batcher.flush()

    def _write_live(self, tick: Tick | None, stopped: bool = False) -> None:
        try:
            livestate.write(self.live_data(tick, stopped), self.started_at, os.getpid())
        except DatabaseError as err:
            self._db_error("write the live state", err)
            return
        if self._db_failing:
            logger.warning("The database accepts writes again")
        self._db_failing = False

    def _db_error(self, what: str, err: Exception) -> None:
        if not self._db_failing:
            logger.error("Could not %s: %s; control goes on", what, err)
        self._db_failing = True

    def _scan_attach(self, mono: float) -> None:
        if self.attach_scan is None:
            return
        interval = self.params["cgroup.attach_interval"]
        if self._attach_at is not None and mono - self._attach_at < interval:
            return
        self._attach_at = mono
        try:
            self.attach_scan()
        except Exception as err:  # attaching is best effort; control goes on
            logger.warning("Attach rules scan failed: %s", err)

    def live_data(self, tick: Tick | None, stopped: bool = False) -> dict[str, Any]:
        """The live-state row's ``data`` (keys: :mod:`monitoring.livestate`)."""
        data: dict[str, Any] = {
            "ts": self.timeline.last_ts,
            "stopped": stopped,
            "cpus": self.sampler.cpus,
            "cpus_offered": self.sampler.offered,
            "mode": self.params["scheduler.mode"],
            "interval": self.params["monitoring.interval"],
            "avg_window_s": round(self.params["limits.avg_window_hours"] * 3600),
            "avg_limit": self.params["limits.avg_max_usage"],
            "peak_window_s": round(self.params["limits.peak_window_hours"] * 3600),
            "peak_max_s": self.params["limits.peak_max_duration"],
            "backend": {
                "kind": self.backend.kind,
                "path": str(self.backend.path),
                "degraded_reason": self.backend.degraded_reason,
                "error": self.control.error,
            },
            "controlled": self._controlled(),
            "group_cap": self.control.enforced,
            "alerts": dict(self.rules.active),
            "boot_id": self.boot_id,
            "snapshot": asdict(self.batcher.flushed) if self.batcher.flushed else None,
        }
        if tick is not None:
            data.update(self._tick_data(tick))
        return data

    def _controlled(self) -> bool:
        return (
            self.backend.kind != "dry-run"
            and self.control.error is None
            and self.params["scheduler.enabled"]
        )

    def _tick_data(self, tick: Tick) -> dict[str, Any]:
        r, s, d, slot = tick.reading, tick.status, tick.decision, tick.reservation
        show_cpu = self.params["monitoring.enable_cpu"]
        return {
            "cpu_usage": r.cpu_percent if show_cpu else None,
            "cpu_smoothed": tick.smoothed if show_cpu else None,
            "group_cpu": r.group_percent,
            "outside_cpu": r.outside_percent,
            "memory_usage": r.memory_percent,
            "disk_io_read": r.disk_read_bps,
            "disk_io_write": r.disk_write_bps,
            "network_in": r.net_in_bps,
            "network_out": r.net_out_bps,
            "cap": d.cap,
            "bound": d.bound,
            "tier": d.tier,
            "action": d.action,
            "reason": d.reason,
            "group_target": tick.control.target,
            "avg_mean": s.avg_mean,
            "avg_remaining_percent": s.avg_remaining_percent,
            "avg_remaining_cpu_s": s.avg_remaining_cpu_s,
            "peak_used_s": s.peak_used_s,
            "peak_remaining_s": s.peak_remaining_s,
            "run_time_at_100": s.run_time_at_100,
            "reservation": slot.name if slot else None,
            "reservation_id": str(slot.reservation_id) if slot else None,
            "reservation_percent": slot.percent if slot else None,
        }

    # Stop ------------------------------------------------------------------------

    def stop(self) -> Control:
        """Flush, leave the group at the safe cap, write the final live state."""
        cap = safe_cap(self.params)
        control = self.control.leave_at(cap)
        if control.error:
            logger.error("Could not leave the safe cap %.1f %% on the group", cap)
        left = _pct(control.enforced) if self.control.known else "unknown"
        message = f"Stopped; group left at {left} (safe cap {cap:.1f} %)"
        self.batcher.event("stop", message, {"safe_cap": cap})
        self._flush()
        self._write_live(self.last, stopped=True)
        logger.info(message)
        return control

    def run(self, stop: Any, duration: float | None = None) -> int:
        """Tick on every wall-clock second until ``stop`` is set; ticks run."""
        clock = self.clock
        ends = None if duration is None else clock.mono() + duration
        ticks = 0
        while not stop.is_set():
            # The windows hold whole seconds: faster ticks would add nothing.
            interval = max(1.0, float(self.params["monitoring.interval"]))
            gap = FIRST_TICK_AFTER_S if ticks == 0 else 0.1
            deadline = next_deadline(clock.mono(), clock.wall(), interval, gap)
            if ends is not None and deadline > ends + 0.5:
                break
            if _wait(stop, clock, deadline):
                break
            self._safe_tick()
            ticks += 1
        return ticks

    def _safe_tick(self) -> None:
        """One tick; an unexpected error is logged and the loop goes on."""
        try:
            self.tick()
        except Exception as err:  # the group must stay controlled whatever broke
            if repr(err) != self._last_error:
                logger.exception("Tick failed; the loop goes on: %s", err)
            self._last_error = repr(err)
            # Put the engine back on the timeline, whatever step failed.
            self.engine = self._engine()
            return
        self._last_error = None


def _wait(stop: Any, clock: Any, deadline: float) -> bool:
    """Sleep until ``deadline`` (monotonic); True when asked to stop."""
    while True:
        left = deadline - clock.mono()
        if left <= 0:
            return stop.is_set()
        if stop.wait(left):
            return True


def _pct(value: float | None) -> str:
    """A cap for the log: None means no limit (``max``)."""
    return "unlimited" if value is None else f"{value:.1f} %"


def _unknown(value: float | None) -> str:
    """A reading for the log: None means it is not measured."""
    return "unknown" if value is None else f"{value:.1f} %"

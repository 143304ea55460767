"""The scheduler loop's steps, with injected clocks, fake counters and a fake
cgroup: gaps, clock steps, restarts and reboots, batching, drift, failed
writes, hot reload and the clean stop."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from alerts.models import Alert
from cpusched.models import Parameter, Revision
from monitoring import livestate
from monitoring.models import LiveState, Sample
from monitoring.sampler import Sampler
from scheduling.cgroups import Applied, CgroupError, quota_for
from scheduling.control import GroupControl
from scheduling.models import Decision, Event
from scheduling.service import CONFIG_FILE_CHECK_S, Batcher, Scheduler, safe_cap
from scheduling.timeline import TICK_OFFSET_S, History, Timeline, next_deadline
from tests.test_sampler import Clock, Source, params

START = 1_800_000_000.3
WINDOW_S = 60


def short(**changes: Any) -> dict[str, Any]:
    """Defaults with a 60-s average window and a 120-s peak window."""
    values = params(
        limits__avg_window_hours=WINDOW_S / 3600,
        limits__peak_window_hours=120 / 3600,
        limits__peak_max_duration=20,
        limits__peak_warning_threshold=10,
        limits__peak_critical_threshold=5,
        scheduler__mode="aggressive",
    )
    values.update({k.replace("__", "."): v for k, v in changes.items()})
    return values


class Backend:
    """A cgroup that keeps its cap in memory; ``fail`` makes writes raise."""

    kind = "v1"

    def __init__(self) -> None:
        self.path = Path("/sys/fs/cgroup/cpu/fake")
        self.cpus = 2
        self.degraded_reason: str | None = None
        self.usec = 0
        self.cap = Applied(None, None, 100_000)
        self.fail: str | None = None
        self.writes: list[float] = []

    def write_cap(self, percent: float) -> Applied:
        if self.fail:
            raise CgroupError(self.fail)
        self.writes.append(percent)
        self.cap = quota_for(percent, self.cpus, 100_000)
        return self.cap

    def read_cap(self) -> Applied:
        return self.cap

    def usage_usec(self) -> int:
        return self.usec

    def exists(self) -> bool:
        return True

    def prepare(self) -> list[str]:
        return []


class Rig:
    """A scheduler on fake clocks and counters, advanced second by second."""

    def __init__(self, values: dict[str, Any], boot_id: str = "boot-1") -> None:
        self.clock = Clock(mono=1000.0, wall=START)
        self.source = Source()
        self.source.busy = 500.0  # 25 % of 2 CPUs over the 1000 s since boot
        self.backend = Backend()
        sampler = Sampler(
            values, self.backend, self.source, self.clock.mono, self.clock.wall
        )
        self.scheduler = Scheduler(
            values, self.backend, sampler, self.clock, boot_id=boot_id
        )

    def tick(self, seconds: float = 1.0, percent: float = 50.0, group: float = 0.0):
        """Let ``seconds`` pass at ``percent`` whole-machine use, then tick."""
        self.clock.advance(seconds)
        self.source.busy += percent / 100 * 2 * seconds
        self.backend.usec += round(group / 100 * 2 * seconds * 1e6)
        return self.scheduler.tick()

    def engine_total(self) -> float:
        return self.scheduler.engine.planner.avg.total()


# Timing -------------------------------------------------------------------------


@pytest.mark.parametrize("phase", [0.0, 0.01, 0.3, 0.99])
def test_ticks_land_just_after_the_next_wall_clock_second(phase: float) -> None:
    wall = 1000.0 + phase

    deadline = next_deadline(50.0, wall, 1.0)

    landing = wall + (deadline - 50.0)
    assert landing == pytest.approx(
        math.floor(wall - TICK_OFFSET_S) + 1 + TICK_OFFSET_S
    )


def test_a_tick_too_close_to_the_boundary_moves_to_the_next_one() -> None:
    deadline = next_deadline(50.0, 1000.9, 1.0, min_gap=0.5)

    assert deadline == pytest.approx(50.0 + 1.12)


def test_one_second_later_one_second_is_completed() -> None:
    timeline = Timeline(999, 1000.3, 10.0)

    advance = timeline.advance(1001.3, 11.0)

    assert (advance.first, advance.last, advance.stepped) == (1000, 1000, False)


def test_a_paused_process_gets_every_missed_second() -> None:
    timeline = Timeline(999, 1000.3, 10.0)

    advance = timeline.advance(1010.3, 20.0)

    assert (advance.first, advance.last, advance.count) == (1000, 1009, 10)


@pytest.mark.parametrize("step", [-3600.0, 7200.0])
def test_a_clock_step_counts_only_the_seconds_that_really_passed(step: float) -> None:
    timeline = Timeline(999, 1000.3, 10.0)

    advance = timeline.advance(1001.3 + step, 11.0)

    assert advance.count == 1
    assert advance.last == math.floor(1001.3 + step) - 1
    assert advance.step_s == pytest.approx(step)


def test_history_returns_only_the_seconds_it_holds_oldest_first() -> None:
    history = History(3, [1.0, 2.0])
    history.add(3.0)
    history.add(4.0)

    assert history.values() == [2.0, 3.0, 4.0]


# Start-up, gaps and reboots --------------------------------------------------


@pytest.mark.django_db
def test_a_first_start_fills_the_window_with_the_average_since_boot() -> None:
    rig = Rig(short())

    summary = rig.scheduler.start()

    history = rig.scheduler.history.values()
    assert len(history) == 120
    assert history[-1] == pytest.approx(25.0)
    assert "first start: 120 s since boot" in summary


@pytest.mark.django_db
def test_a_paused_loop_fills_the_gap_with_the_exact_average() -> None:
    rig = Rig(short())
    rig.scheduler.start()
    rig.tick()
    before = rig.engine_total()

    tick = rig.tick(seconds=10.0, percent=40.0)

    assert tick.advance.count == 10
    assert rig.engine_total() - before == pytest.approx(10 * 40.0 - 10 * 25.0)
    assert Event.objects.filter(kind="gap_filled").count() >= 1


@pytest.mark.django_db
@pytest.mark.parametrize("step", [-3600.0, 7200.0])
def test_a_clock_step_neither_double_counts_nor_drops_seconds(step: float) -> None:
    rig = Rig(short())
    rig.scheduler.start()
    for _ in range(5):
        rig.tick(percent=30.0)
    last_before = rig.scheduler.timeline.last_ts

    rig.clock.wall_now += step
    rig.tick(percent=80.0)

    planner = rig.scheduler.engine.planner
    assert planner.now == math.floor(rig.clock.wall_now) - 1 + 1
    assert planner.now - 1 == last_before + 1 + step
    # 60-s window: 54 seconds at the 25 % assumed since boot, 5 at 30 %, 1 at 80 %.
    assert planner.avg.total() == pytest.approx(54 * 25.0 + 5 * 30.0 + 80.0)
    rig.scheduler.batcher.flush()
    assert Event.objects.filter(kind="clock_step").count() == 1


@pytest.mark.django_db
def test_a_restart_on_the_same_boot_fills_the_gap_from_the_counters() -> None:
    rig = Rig(short())
    rig.scheduler.start()
    for _ in range(3):
        rig.tick(percent=10.0)
    rig.scheduler.stop()

    # Away 20 s at 70 %, then a new process on the same boot.
    again = Rig(short())
    again.clock = rig.clock
    again.source = rig.source
    again.clock.advance(20.0)
    rig.source.busy += 0.7 * 2 * 20.0
    again.scheduler = Scheduler(
        short(),
        again.backend,
        Sampler(short(), None, rig.source, rig.clock.mono, rig.clock.wall),
        rig.clock,
        boot_id="boot-1",
    )
    summary = again.scheduler.start()

    history = again.scheduler.history.values()
    assert "gap of 20 s filled from the counters (70.0 %)" in summary
    assert history[-20:] == pytest.approx([70.0] * 20)
    assert history[-23:-20] == pytest.approx([10.0] * 3)
    filled = Sample.objects.filter(source=Sample.FILLED).count()
    assert filled == 20


@pytest.mark.django_db
def test_a_restart_after_a_reboot_assumes_the_configured_percent_before_boot() -> None:
    rig = Rig(short())
    rig.scheduler.start()
    rig.tick(percent=10.0)
    rig.scheduler.stop()

    # Rebooted 30 s ago after 40 s down: counters and monotonic clock restart.
    values = short(monitoring__reboot_gap_percent=90.0)
    after = Rig(values, boot_id="boot-2")
    after.clock = Clock(mono=30.0, wall=rig.clock.wall_now + 70.0)
    after.source.busy = 0.2 * 2 * 30.0
    after.scheduler = Scheduler(
        values,
        after.backend,
        Sampler(values, None, after.source, after.clock.mono, after.clock.wall),
        after.clock,
        boot_id="boot-2",
    )
    summary = after.scheduler.start()

    history = after.scheduler.history.values()
    assert "machine rebooted" in summary
    assert history[-30:] == pytest.approx([20.0] * 30)
    assert history[-70:-30] == pytest.approx([90.0] * 40)


# Batching ---------------------------------------------------------------------


@pytest.mark.django_db
def test_samples_are_stored_in_batches_not_every_second() -> None:
    rig = Rig(short(database__batch_size=5, database__batch_interval=600))
    rig.scheduler.start()
    stored_at_start = Sample.objects.count()

    for _ in range(4):
        rig.tick()
    before_batch = Sample.objects.count()
    rig.tick()

    assert before_batch == stored_at_start
    assert Sample.objects.count() == stored_at_start + 5


@pytest.mark.django_db
def test_a_batch_is_also_stored_when_the_interval_has_passed() -> None:
    rig = Rig(short(database__batch_size=1000, database__batch_interval=3))
    rig.scheduler.start()
    stored_at_start = Sample.objects.count()

    for _ in range(3):
        rig.tick()

    assert Sample.objects.count() == stored_at_start + 3


@pytest.mark.django_db
def test_a_duplicate_timestamp_does_not_fail_the_batch() -> None:
    batcher = Batcher(short(), lambda: 0.0)
    batcher.sample(100, {"cpu_usage": 1.0})
    batcher.flush()

    batcher.sample(100, {"cpu_usage": 2.0})
    batcher.sample(101, {"cpu_usage": 3.0})
    stored = batcher.flush()

    assert stored is True
    assert sorted(Sample.objects.values_list("cpu_usage", flat=True)) == [1.0, 3.0]


# Control ----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_group_gets_the_machine_cap_less_what_runs_outside() -> None:
    rig = Rig(short())
    rig.scheduler.start()

    tick = rig.tick(percent=30.0, group=20.0)

    assert tick.control.target == pytest.approx(tick.decision.cap - 10.0)
    assert rig.backend.cap.percent == pytest.approx(tick.control.target, abs=0.01)


def test_small_increases_below_the_change_threshold_are_not_written() -> None:
    backend = Backend()
    control = GroupControl(backend, 2.0, lambda *a: None)
    control.apply(50.0, 0.0, decrease=False)

    control.apply(51.5, 0.0, decrease=False)
    control.apply(49.5, 0.0, decrease=False)
    control.apply(48.5, 0.0, decrease=True)

    assert backend.writes == [50.0, 48.5]


def test_a_cap_reset_by_someone_else_is_rewritten_and_recorded() -> None:
    backend = Backend()
    events: list[tuple[str, str, dict]] = []
    control = GroupControl(backend, 2.0, lambda *a: events.append(a))
    control.apply(40.0, 0.0, decrease=False)

    backend.cap = Applied(None, None, 100_000)  # systemctl daemon-reload
    result = control.apply(40.0, 0.0, decrease=False)

    assert result.reverted is True and result.wrote is True
    assert backend.cap.percent == pytest.approx(40.0)
    assert events[0][0] == "reverted"
    assert "found 'max 100000'" in events[0][1]


@pytest.mark.django_db
def test_a_failed_write_is_reported_retried_and_never_assumed() -> None:
    rig = Rig(short())
    rig.scheduler.start()
    rig.tick()
    rig.backend.cap = Applied(None, None, 100_000)
    rig.backend.fail = "Permission denied writing cpu.cfs_quota_us: run as root"

    failed = rig.tick(percent=90.0)
    retried = rig.tick(percent=90.0)

    assert failed.control.error.startswith("Permission denied")
    assert failed.control.enforced is None  # what the kernel holds: unlimited
    assert retried.control.wrote is False and retried.control.error
    alert = Alert.objects.get(key="cgroup.write_failed", resolved=False)
    assert alert.severity == "critical"
    assert LiveState.objects.get().data["controlled"] is False

    rig.backend.fail = None
    recovered = rig.tick(percent=30.0)
    assert recovered.control.wrote is True
    assert Alert.objects.get(key="cgroup.write_failed").resolved is True


@pytest.mark.django_db
def test_a_decision_row_is_written_when_the_cap_changes() -> None:
    rig = Rig(short(database__batch_size=1))
    rig.scheduler.start()

    rig.tick(percent=10.0)

    row = Decision.objects.get()
    assert row.cpu_limit == pytest.approx(rig.scheduler.last.decision.cap)
    assert row.reason == rig.scheduler.last.decision.reason
    assert row.scheduler_mode == "aggressive"


# Live state, reload, stop -------------------------------------------------------


@pytest.mark.django_db
def test_the_live_state_is_written_every_tick_with_the_window_figures() -> None:
    rig = Rig(short())
    rig.scheduler.start()

    tick = rig.tick(percent=42.0)

    data = livestate.read()
    assert data["cpu_usage"] == pytest.approx(42.0)
    assert data["cap"] == pytest.approx(tick.decision.cap)
    assert data["avg_remaining_percent"] == pytest.approx(
        tick.status.avg_remaining_percent
    )
    assert data["backend"]["kind"] == "v1"
    assert data["snapshot"]["boot_id"] == "boot-1"


@pytest.mark.django_db
def test_a_new_window_length_is_picked_up_without_restart() -> None:
    rig = Rig(short(database__batch_size=1))
    rig.scheduler.start()
    rig.tick()

    Parameter.objects.create(key="limits.avg_window_hours", value=str(30 / 3600))
    Revision.bump("config")
    for key, value in short().items():
        if key != "limits.avg_window_hours":
            Parameter.objects.update_or_create(
                key=key, defaults={"value": str(value).lower()}
            )
    rig.tick()

    planner = rig.scheduler.engine.planner
    assert planner.limits.avg_window_s == 30
    rig.scheduler.batcher.flush()
    assert Event.objects.filter(kind="reload").count() == 1
    assert rig.scheduler.history.length == 120  # the peak window is longer


@pytest.mark.django_db
def test_stop_leaves_the_safe_cap_and_says_stopped() -> None:
    values = short()
    rig = Rig(values)
    rig.scheduler.start()
    rig.tick()

    rig.scheduler.stop()

    assert rig.backend.cap.percent == pytest.approx(safe_cap(values), abs=0.01)
    assert safe_cap(values) == pytest.approx(28.5)
    assert livestate.read()["stopped"] is True
    assert Event.objects.filter(kind="stop").count() == 1


def test_a_group_removed_by_someone_else_is_made_again_on_the_next_try() -> None:
    class Removable(Backend):
        present = True

        def exists(self) -> bool:
            return self.present

        def prepare(self) -> list[str]:
            self.present = True
            return ["Created /sys/fs/cgroup/cpu/fake"]

        def write_cap(self, percent: float) -> Applied:
            if not self.present:
                raise CgroupError("No such group: it was removed")
            return super().write_cap(percent)

    backend = Removable()
    control = GroupControl(backend, 2.0, lambda *a: None)
    control.apply(40.0, 0.0, decrease=False)
    backend.present = False

    failed = control.apply(30.0, 0.0, decrease=True)
    retried = control.apply(30.0, 0.0, decrease=True)

    assert failed.error == "No such group: it was removed"
    assert retried.wrote is True and backend.present is True


@pytest.mark.django_db
def test_a_failed_reading_is_recorded_once_and_the_loop_goes_on() -> None:
    rig = Rig(short(database__batch_size=1))
    rig.scheduler.start()
    rig.source.failing["memory"] = 1000

    first = rig.tick(percent=20.0)
    rig.tick(percent=20.0)

    assert first.reading.failures == ("memory: memory unreadable",)
    assert Event.objects.filter(kind="read_failed").count() == 1
    assert rig.scheduler.last.reading.cpu_percent == pytest.approx(20.0)


@pytest.mark.django_db
def test_an_unexpected_error_in_a_tick_does_not_end_the_loop(caplog) -> None:
    rig = Rig(short())
    rig.scheduler.start()
    rig.scheduler.rules.evaluate = None  # any bug in a step

    rig.clock.advance(1.0)
    rig.scheduler._safe_tick()
    rig.scheduler.rules.evaluate = lambda facts, now: {}
    tick = rig.tick()

    assert "Tick failed; the loop goes on" in caplog.text
    assert tick.advance.count == 1
    assert rig.scheduler.engine.planner.now == rig.scheduler.timeline.last_ts + 1


@pytest.mark.django_db
def test_a_clock_step_while_stopped_counts_the_seconds_that_really_passed() -> None:
    rig = Rig(short())
    rig.scheduler.start()
    rig.tick(percent=10.0)
    rig.scheduler.stop()

    # 20 s away at 70 %, and meanwhile the wall clock jumped two hours ahead.
    rig.clock.advance(20.0)
    rig.clock.wall_now += 7200.0
    rig.source.busy += 0.7 * 2 * 20.0
    again = Scheduler(
        short(),
        Backend(),
        Sampler(short(), None, rig.source, rig.clock.mono, rig.clock.wall),
        rig.clock,
        boot_id="boot-1",
    )
    summary = again.start()

    assert "gap of 20 s filled from the counters (70.0 %)" in summary
    assert again.history.values()[-21:] == pytest.approx([10.0] + [70.0] * 20)


@pytest.mark.django_db
def test_future_seconds_are_planned_for_the_use_outside_the_group() -> None:
    rig = Rig(short(database__batch_size=1000))
    rig.scheduler.start()

    for _ in range(61):
        rig.tick(percent=30.0, group=18.0)

    planner = rig.scheduler.engine.planner
    # The plan follows the estimate as it rose through the first minute, and
    # assumes up to the headroom (0.5 points) more than the estimate.
    assert rig.scheduler.background.value == pytest.approx(12.0, abs=0.01)
    assert 12.0 <= planner.plan_floor <= 12.5
    assert planner.floor_now() == 5.0


@pytest.mark.django_db
def test_a_reload_keeps_planning_for_the_use_outside_the_group() -> None:
    rig = Rig(short(database__batch_size=1000))
    rig.scheduler.start()
    for _ in range(61):
        rig.tick(percent=30.0, group=18.0)
    before = rig.scheduler.engine

    Parameter.objects.create(key="scheduler.mode", value="balanced")
    Revision.bump("config")
    for key, value in short().items():
        if key != "scheduler.mode":
            Parameter.objects.update_or_create(
                key=key, defaults={"value": str(value).lower()}
            )
    rig.tick(percent=30.0, group=18.0)

    assert rig.scheduler.engine is not before
    assert rig.scheduler.engine.planner.plan_floor == pytest.approx(12.5, abs=0.01)


# config.ini edited while running ----------------------------------------------


def store(values: dict[str, Any]) -> None:
    """Put ``values`` in the database so a reload keeps the short windows."""
    for key, value in values.items():
        Parameter.objects.update_or_create(
            key=key, defaults={"value": str(value).lower()}
        )


def tick_past_file_check(rig: Rig) -> None:
    for _ in range(round(CONFIG_FILE_CHECK_S) + 1):
        rig.tick()


@pytest.mark.django_db
def test_a_bad_config_file_keeps_the_last_good_parameters_and_alerts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    config_ini = tmp_path / "config.ini"
    monkeypatch.setenv("CPUSCHED_CONFIG", str(config_ini))
    values = short()
    store(values)
    rig = Rig(values)
    rig.scheduler.start()
    rig.tick()

    config_ini.write_text("[limits]\navg_max_usage = lots\n")
    tick_past_file_check(rig)
    ticks_after = rig.tick()

    assert ticks_after.decision.cap > 0
    assert rig.scheduler.params["limits.avg_max_usage"] == 30
    alert = Alert.objects.get(key="config.invalid", resolved=False)
    assert alert.severity == "critical"
    assert str(config_ini) in alert.message
    assert "limits.avg_max_usage: 'lots' is refused" in alert.message
    assert "the last good configuration stays in force" in alert.message
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("limits.avg_max_usage: 'lots'" in r.getMessage() for r in errors)

    config_ini.write_text("[limits]\navg_max_usage = 25\n")
    tick_past_file_check(rig)

    assert rig.scheduler.params["limits.avg_max_usage"] == 25
    assert rig.scheduler.engine.planner.limits.avg_limit == 25
    assert not Alert.objects.filter(key="config.invalid", resolved=False).exists()
    assert Alert.objects.get(key="config.invalid").resolved is True


@pytest.mark.django_db
def test_an_edited_config_file_is_reloaded_without_a_revision_bump(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_ini = tmp_path / "config.ini"
    monkeypatch.setenv("CPUSCHED_CONFIG", str(config_ini))
    values = short()
    store(values)
    rig = Rig(short(database__batch_size=1))
    rig.scheduler.start()
    revision = Revision.current("config")

    config_ini.write_text("[scheduler]\nmode = balanced\n")
    tick_past_file_check(rig)

    assert Revision.current("config") == revision
    assert rig.scheduler.params["scheduler.mode"] == "balanced"
    rig.scheduler.batcher.flush()
    assert Event.objects.filter(kind="reload").count() == 1


# Reservations -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_active_reservation_lifts_the_cap_and_is_named_everywhere() -> None:
    from datetime import UTC, datetime

    from reservations.models import Reservation

    reservation = Reservation.objects.create(
        name="nightly backup",
        # Short: 40 % fits a 60-s window at 30 % only for a few seconds.
        start_time=datetime.fromtimestamp(int(START) - 1, tz=UTC),
        end_time=datetime.fromtimestamp(int(START) + 5, tz=UTC),
        cpu_quota=40.0,
    )
    Revision.bump("reservations")
    rig = Rig(short(scheduler__mode="conservative", database__batch_size=1))
    rig.scheduler.start()

    tick = rig.tick(percent=10.0)

    assert tick.reservation.name == "nightly backup"
    assert tick.decision.cap >= 40.0
    data = livestate.read()
    assert data["reservation"] == "nightly backup"
    assert data["reservation_percent"] == 40.0
    row = Decision.objects.latest("timestamp")
    assert row.reservation_id == str(reservation.id)


@pytest.mark.django_db
def test_without_a_reservation_the_conservative_cap_stays_below_it() -> None:
    rig = Rig(short(scheduler__mode="conservative"))
    rig.scheduler.start()

    tick = rig.tick(percent=10.0)

    assert tick.reservation is None
    assert tick.decision.cap < 40.0


@pytest.mark.django_db
def test_a_reservation_the_rules_cannot_honour_raises_an_alert_and_the_rules_win():
    from datetime import UTC, datetime

    from reservations.models import Reservation

    Reservation.objects.create(
        name="too big",
        start_time=datetime.fromtimestamp(int(START) - 1, tz=UTC),
        end_time=datetime.fromtimestamp(int(START) + 3600, tz=UTC),
        cpu_quota=40.0,
    )
    Revision.bump("reservations")
    rig = Rig(short(scheduler__mode="conservative"))
    rig.scheduler.start()

    tick = rig.tick(percent=10.0)

    assert tick.decision.cap == tick.decision.bound < 40.0
    alert = Alert.objects.get(key="reservation.not_honoured")
    assert "Cannot honour reservation 'too big' (40.0 %)" in alert.message

"""The sampler's rates from cumulative counters, and the smoother."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cpusched.params import PARAMS
from monitoring.sampler import (
    WRAP_32,
    CpuCounters,
    Sampler,
    counter_delta,
    device_rates,
)
from monitoring.smoothing import Smoother


def params(**changes: Any) -> dict[str, Any]:
    values = {key: p.default for key, p in PARAMS.items()}
    values.update({k.replace("__", "."): v for k, v in changes.items()})
    return values


class Clock:
    def __init__(self, mono: float = 1000.0, wall: float = 1_800_000_000.0) -> None:
        self.mono_now = mono
        self.wall_now = wall

    def mono(self) -> float:
        return self.mono_now

    def wall(self) -> float:
        return self.wall_now

    def advance(self, seconds: float) -> None:
        self.mono_now += seconds
        self.wall_now += seconds


class Source:
    """Counters a test sets by hand; a name in ``failing`` raises on read."""

    def __init__(self, cpus: int = 2) -> None:
        self.busy = 0.0
        self.steal = 0.0
        self.memory = 40.0
        self.disk: dict[str, tuple[int, int]] = {"vda": (0, 0)}
        self.net: dict[str, tuple[int, int]] = {"eth0": (0, 0)}
        self.offered = cpus
        self.failing: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.failing.get(name, 0) > 0:
            self.failing[name] -= 1
            raise OSError(f"{name} unreadable")

    def cpu(self) -> CpuCounters:
        self._call("cpu")
        return CpuCounters(self.busy, self.steal)

    def memory_percent(self) -> float:
        self._call("memory")
        return self.memory

    def disks(self) -> dict[str, tuple[int, int]]:
        self._call("disk")
        return dict(self.disk)

    def nics(self) -> dict[str, tuple[int, int]]:
        self._call("network")
        return dict(self.net)

    def cpus_offered(self) -> int:
        return self.offered


class Group:
    def __init__(self) -> None:
        self.usec = 0

    def usage_usec(self) -> int:
        return self.usec


def make(source: Source, clock: Clock, group: Group | None = None, **changes: Any):
    sampler = Sampler(params(**changes), group, source, clock.mono, clock.wall)
    sampler.prime()
    return sampler


def test_the_first_reading_is_measured_over_the_interval_since_prime() -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock)

    clock.advance(1.0)
    source.busy += 1.0
    reading = sampler.sample()

    assert reading.cpu_percent == pytest.approx(50.0)
    assert reading.elapsed_s == pytest.approx(1.0)


def test_cpu_percent_uses_the_real_elapsed_time() -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock)

    clock.advance(2.5)
    source.busy += 1.25
    reading = sampler.sample()

    assert reading.cpu_percent == pytest.approx(25.0)


def test_steal_counts_as_busy_by_default() -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock)

    clock.advance(1.0)
    source.busy += 0.6
    source.steal += 0.4
    reading = sampler.sample()

    assert reading.cpu_percent == pytest.approx(30.0)


def test_steal_is_left_out_when_count_steal_is_off() -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock, monitoring__count_steal=False)

    clock.advance(1.0)
    source.busy += 0.6
    source.steal += 0.4
    reading = sampler.sample()

    assert reading.cpu_percent == pytest.approx(10.0)


def test_vcpus_override_what_100_percent_means_and_warns(caplog) -> None:
    source, clock = Source(cpus=2), Clock()
    with caplog.at_level(logging.WARNING):
        sampler = make(source, clock, monitoring__vcpus=4)

    clock.advance(1.0)
    source.busy += 2.0
    reading = sampler.sample()

    assert sampler.cpus == 4
    assert reading.cpu_percent == pytest.approx(50.0)
    assert "monitoring.vcpus is 4 but this machine offers 2 CPUs" in caplog.text


def test_group_percent_comes_from_the_groups_own_usage() -> None:
    source, clock, group = Source(), Clock(), Group()
    sampler = make(source, clock, group)

    clock.advance(1.0)
    source.busy += 1.2
    group.usec += 1_000_000
    reading = sampler.sample()

    assert reading.group_percent == pytest.approx(50.0)
    assert reading.outside_percent == pytest.approx(10.0)


def test_a_recreated_group_gives_no_rate_for_that_interval() -> None:
    source, clock, group = Source(), Clock(), Group()
    group.usec = 5_000_000
    sampler = make(source, clock, group)

    clock.advance(1.0)
    group.usec = 100
    reading = sampler.sample()

    assert reading.group_percent is None


def test_a_counter_that_wrapped_at_32_bits_counts_the_growth() -> None:
    assert counter_delta(WRAP_32 - 100, 50) == 150


def test_a_counter_that_was_reset_counts_the_interval_as_zero() -> None:
    assert counter_delta(10_000_000_000, 500) == 0


def test_devices_that_appear_or_vanish_cost_only_their_own_interval() -> None:
    before = {"vda": (1000, 2000), "gone": (5, 5)}
    after = {"vda": (3000, 2500), "new": (10**9, 10**9)}

    read, write = device_rates(before, after, 2.0)

    assert (read, write) == (1000.0, 250.0)


def test_disk_and_network_rates_are_bytes_per_second() -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock)

    clock.advance(2.0)
    source.disk = {"vda": (4096, 8192)}
    source.net = {"eth0": (1000, 3000)}
    reading = sampler.sample()

    assert (reading.disk_read_bps, reading.disk_write_bps) == (2048.0, 4096.0)
    assert (reading.net_in_bps, reading.net_out_bps) == (500.0, 1500.0)


def test_a_failed_read_is_retried_before_giving_up() -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock)

    source.failing["memory"] = 2
    clock.advance(1.0)
    reading = sampler.sample()

    assert reading.memory_percent == 40.0
    assert reading.failures == ()


def test_a_read_failing_every_retry_keeps_the_last_good_value(caplog) -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock)
    clock.advance(1.0)
    sampler.sample()

    source.memory = 90.0
    source.failing["memory"] = 100
    clock.advance(1.0)
    with caplog.at_level(logging.WARNING):
        reading = sampler.sample()

    assert reading.memory_percent == 40.0
    assert reading.failures == ("memory: memory unreadable",)
    assert sampler.failure_streaks == {"memory": 1}
    assert "Reading memory failed after 4 attempts" in caplog.text


def test_a_failed_cpu_read_stretches_the_next_interval_instead_of_losing_it() -> None:
    source, clock = Source(), Clock()
    sampler = make(source, clock)
    clock.advance(1.0)
    source.busy += 0.2
    sampler.sample()

    source.failing["cpu"] = 100
    clock.advance(1.0)
    source.busy += 1.8
    failed = sampler.sample()
    source.failing["cpu"] = 0
    clock.advance(1.0)
    source.busy += 1.8
    recovered = sampler.sample()

    assert failed.cpu_percent == pytest.approx(10.0)
    assert recovered.cpu_percent == pytest.approx(90.0)


def test_switched_off_metrics_are_not_read() -> None:
    source, clock, group = Source(), Clock(), Group()
    sampler = make(
        source,
        clock,
        group,
        monitoring__enable_disk=False,
        monitoring__enable_network=False,
        monitoring__enable_memory=False,
        monitoring__enable_cpu=False,
    )

    clock.advance(1.0)
    source.busy += 1.0
    reading = sampler.sample()

    assert "disk" not in source.calls and "network" not in source.calls
    assert reading.memory_percent is None and reading.disk_read_bps is None
    assert reading.group_percent is None
    assert reading.cpu_percent == pytest.approx(50.0)


def test_the_smoother_leaves_one_odd_second_out() -> None:
    smoother = Smoother(5, 3.0)
    for value in (20.0, 21.0, 19.0, 20.0):
        smoother.add(value)

    smoothed = smoother.add(95.0)

    assert smoother.last_was_outlier is True
    assert smoothed == pytest.approx(20.0)


def test_the_smoother_follows_a_level_that_lasts() -> None:
    smoother = Smoother(5, 3.0)
    for value in (20.0, 21.0, 19.0, 20.0):
        smoother.add(value)

    for _ in range(3):
        smoothed = smoother.add(80.0)

    assert smoothed == pytest.approx(80.0)

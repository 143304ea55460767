"""Once-a-second readings of the machine from cumulative kernel counters.

Every rate here is a difference of two cumulative counters divided by the
real time between the two reads, taken from the monotonic clock:

- whole-machine CPU % from ``/proc/stat`` (:func:`psutil.cpu_times`), where
  100 % means every CPU the machine is billed for was busy for the whole
  interval; steal time counts as busy unless ``monitoring.count_steal`` is
  off;
- the managed group's CPU % from its own cgroup accounting
  (``backend.usage_usec()``), on the same scale;
- disk read/write and network in/out in bytes per second, per device, so a
  device that appears, vanishes, wraps or resets its counters costs one
  interval of that device and nothing else.

Memory % is a level, not a rate (:func:`psutil.virtual_memory`).

Whole-machine CPU is always read, because the windows cannot be kept without
it; ``monitoring.enable_cpu`` switches off the group's reading and the CPU
figures shown to people. The other ``monitoring.enable_*`` switches stop
their reads entirely.

The first reading after :meth:`Sampler.prime` is measured over the real
interval since the prime, never assumed to be 0 %. A failed read is retried
(``monitoring.retry_count`` times, while ``monitoring.timeout`` allows), then
the last good value stands in and the failure is reported in
:attr:`Reading.failures`; the caller logs and records it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

logger = logging.getLogger(__name__)

WRAP_32 = 1 << 32
"""Some drivers still export 32-bit byte counters."""

SKIPPED_DISKS = ("loop", "ram", "zram", "sr")
"""Pseudo and optical devices: their traffic is not the workload's disk."""


class GroupUsage(Protocol):
    def usage_usec(self) -> int: ...


@dataclass(frozen=True)
class CpuCounters:
    """Cumulative CPU time since boot, summed over all CPUs, in seconds."""

    busy_s: float
    steal_s: float


@dataclass(frozen=True)
class Reading:
    """One interval's measurements; ``None`` means switched off or unknown."""

    wall: float
    mono: float
    elapsed_s: float
    cpu_percent: float | None
    cpu_counters: CpuCounters | None
    group_percent: float | None = None
    group_usec: int | None = None
    memory_percent: float | None = None
    disk_read_bps: float | None = None
    disk_write_bps: float | None = None
    net_in_bps: float | None = None
    net_out_bps: float | None = None
    failures: tuple[str, ...] = ()

    @property
    def outside_percent(self) -> float | None:
        """CPU % used outside the managed group (total less the group)."""
        if self.cpu_percent is None or self.group_percent is None:
            return None
        return max(0.0, self.cpu_percent - self.group_percent)


class Source:
    """The kernel counters, through psutil; tests pass a fake with these methods."""

    def cpu(self) -> CpuCounters:
        t = psutil.cpu_times()
        # guest and guest_nice are already inside user and nice on Linux.
        busy = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
        return CpuCounters(busy_s=busy, steal_s=t.steal)

    def memory_percent(self) -> float:
        return psutil.virtual_memory().percent

    def disks(self) -> dict[str, tuple[int, int]]:
        found = psutil.disk_io_counters(perdisk=True, nowrap=False) or {}
        return {
            name: (c.read_bytes, c.write_bytes)
            for name, c in found.items()
            if not name.startswith(SKIPPED_DISKS)
        }

    def nics(self) -> dict[str, tuple[int, int]]:
        found = psutil.net_io_counters(pernic=True, nowrap=False) or {}
        return {
            name: (c.bytes_recv, c.bytes_sent)
            for name, c in found.items()
            if name != "lo"
        }

    def cpus_offered(self) -> int:
        return psutil.cpu_count(logical=True) or os.cpu_count() or 1


def counter_delta(previous: int, current: int) -> int:
    """Growth of a cumulative counter, surviving a 32-bit wrap and a reset.

    A counter that went down either wrapped at 2**32 (it was near the top)
    or was reset (driver reload, device re-created): a reset counts the
    interval as 0, because when it happened inside the interval is unknown.
    """
    if current >= previous:
        return current - previous
    if previous < WRAP_32 and previous > WRAP_32 // 2:
        return current + WRAP_32 - previous
    return 0


def device_rates(
    previous: Mapping[str, tuple[int, int]],
    current: Mapping[str, tuple[int, int]],
    elapsed_s: float,
) -> tuple[float, float]:
    """Bytes per second in both directions, summed over devices seen twice."""
    first = second = 0
    for name, (a, b) in current.items():
        before = previous.get(name)
        if before is None:
            continue
        first += counter_delta(before[0], a)
        second += counter_delta(before[1], b)
    return first / elapsed_s, second / elapsed_s


def resolve_cpus(offered: int, configured: int) -> int:
    """The CPUs that make 100 %: ``monitoring.vcpus`` when set, else offered."""
    if configured <= 0:
        return offered
    if configured != offered:
        logger.warning(
            "monitoring.vcpus is %d but this machine offers %d CPUs: CPU %% is "
            "computed against %d; set monitoring.vcpus=0 to use what the "
            "machine offers",
            configured,
            offered,
            configured,
        )
    return configured


class Sampler:
    """Reads the counters and turns two successive reads into a :class:`Reading`.

    Call :meth:`prime` once, then :meth:`sample` once per tick. Not
    thread-safe; one sampler per process.
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        group: GroupUsage | None = None,
        source: Source | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.source = source or Source()
        self.group = group
        self.clock = clock
        self.wall = wall
        self.offered = self.source.cpus_offered()
        self.configure(params)
        self._mono: float | None = None
        # Per counter: (monotonic time of the read, cumulative value). Each
        # has its own time so a failed read stretches only its own interval.
        self._bases: dict[str, tuple[float, Any]] = {}
        self._last: dict[str, Any] = {}
        self.failure_streaks: dict[str, int] = {}

    def configure(self, params: Mapping[str, Any]) -> None:
        """Take new parameter values (hot reload); counters are kept."""
        self.enabled = {
            "cpu": params["monitoring.enable_cpu"],
            "memory": params["monitoring.enable_memory"],
            "disk": params["monitoring.enable_disk"],
            "network": params["monitoring.enable_network"],
        }
        self.count_steal = params["monitoring.count_steal"]
        self.retries = params["monitoring.retry_count"]
        self.timeout_s = params["monitoring.timeout"]
        self.cpus = resolve_cpus(self.offered, params["monitoring.vcpus"])

    @property
    def primed_at(self) -> float:
        """Monotonic time of the base read by :meth:`prime`."""
        return self._bases["cpu"][0]

    def prime(self) -> CpuCounters | None:
        """Take the base counters the first :meth:`sample` is measured from.

        Returns the CPU counters read (None if they could not be read).
        """
        self._mono = mono = self.clock()
        failures: list[str] = []
        counters = self._read("cpu", self.source.cpu, failures)
        self._bases["cpu"] = (mono, counters)
        self._bases["group"] = (mono, self._read_group(failures))
        if self.enabled["disk"]:
            self._bases["disk"] = (
                mono,
                self._read("disk", self.source.disks, failures),
            )
        if self.enabled["network"]:
            self._bases["network"] = (
                mono,
                self._read("network", self.source.nics, failures),
            )
        return counters

    def sample(self) -> Reading:
        """Measure everything over the interval since the previous call."""
        if self._mono is None:
            raise RuntimeError("Sampler.prime() must run before the first sample")
        wall = self.wall()
        mono = self.clock()
        elapsed = max(mono - self._mono, 1e-6)
        self._mono = mono
        failures: list[str] = []

        cpu_percent, counters = self._cpu_percent(mono, failures)
        group_percent, group_usec = self._group_percent(mono, failures)
        return Reading(
            wall=wall,
            mono=mono,
            elapsed_s=elapsed,
            cpu_percent=cpu_percent,
            cpu_counters=counters,
            group_percent=group_percent,
            group_usec=group_usec,
            memory_percent=self._memory(failures),
            **self._disk_rates(mono, failures),
            **self._net_rates(mono, failures),
            failures=tuple(failures),
        )

    # CPU ----------------------------------------------------------------

    def busy(self, counters: CpuCounters) -> float:
        """Busy CPU-seconds by this machine's definition (steal or not)."""
        if self.count_steal:
            return counters.busy_s
        return counters.busy_s - counters.steal_s

    def percent(self, busy_delta_s: float, elapsed_s: float, cpus: int) -> float:
        """CPU-seconds over an interval as a percent of the whole machine."""
        value = 100.0 * busy_delta_s / (elapsed_s * cpus)
        return min(100.0, max(0.0, value))

    def _advance(self, name: str, mono: float, value: Any) -> tuple[float, Any]:
        """Swap in a new base; return the seconds since the old one and it."""
        before_mono, before = self._bases.get(name, (mono, None))
        self._bases[name] = (mono, value)
        return max(mono - before_mono, 1e-6), before

    def _cpu_percent(
        self, mono: float, failures: list[str]
    ) -> tuple[float | None, CpuCounters | None]:
        counters = self._read("cpu", self.source.cpu, failures)
        if counters is None:
            # Keep the old base: the next good read covers this interval too.
            return self._last.get("cpu"), None
        elapsed, before = self._advance("cpu", mono, counters)
        if before is None:
            return self._last.get("cpu"), counters
        busy = self.busy(counters) - self.busy(before)
        value = self.percent(busy, elapsed, self.cpus)
        self._last["cpu"] = value
        return value, counters

    def _read_group(self, failures: list[str]) -> int | None:
        if self.group is None or not self.enabled["cpu"]:
            return None
        return self._read("group", self.group.usage_usec, failures)

    def _group_percent(
        self, mono: float, failures: list[str]
    ) -> tuple[float | None, int | None]:
        usec = self._read_group(failures)
        if usec is None:
            return self._last.get("group"), None
        elapsed, before = self._advance("group", mono, usec)
        if before is None or usec < before:
            # A re-created group restarts its counter: no rate this interval.
            return self._last.get("group"), usec
        value = self.percent((usec - before) / 1e6, elapsed, self.cpus)
        self._last["group"] = value
        return value, usec

    # Memory, disk, network ------------------------------------------------

    def _memory(self, failures: list[str]) -> float | None:
        if not self.enabled["memory"]:
            return None
        value = self._read("memory", self.source.memory_percent, failures)
        if value is None:
            return self._last.get("memory")
        self._last["memory"] = value
        return value

    def _disk_rates(self, mono: float, failures: list[str]) -> dict[str, Any]:
        if not self.enabled["disk"]:
            self._bases.pop("disk", None)
            return {}
        rates = self._rates("disk", self.source.disks, mono, failures)
        return {"disk_read_bps": rates[0], "disk_write_bps": rates[1]}

    def _net_rates(self, mono: float, failures: list[str]) -> dict[str, Any]:
        if not self.enabled["network"]:
            self._bases.pop("network", None)
            return {}
        rates = self._rates("network", self.source.nics, mono, failures)
        return {"net_in_bps": rates[0], "net_out_bps": rates[1]}

    def _rates(
        self,
        name: str,
        read: Callable[[], dict[str, tuple[int, int]]],
        mono: float,
        failures: list[str],
    ) -> tuple[float | None, float | None]:
        current = self._read(name, read, failures)
        if current is None:
            return self._last.get(name, (None, None))
        elapsed, before = self._advance(name, mono, current)
        if before is None:
            # Switched on (or the first read failed): a rate needs two reads.
            return self._last.get(name, (None, None))
        rates = device_rates(before, current, elapsed)
        self._last[name] = rates
        return rates

    # Retries ------------------------------------------------------------

    def _read(self, name: str, read: Callable[[], Any], failures: list[str]) -> Any:
        """Call ``read`` with retries; on final failure note it and return None.

        A read that blocks inside the kernel cannot be interrupted from
        Python; ``monitoring.timeout`` only stops further retries.
        """
        started = self.clock()
        error: Exception | None = None
        for _ in range(1 + self.retries):
            try:
                value = read()
            except Exception as exc:  # any failed read must not end the loop
                error = exc
                if self.clock() - started >= self.timeout_s:
                    break
                continue
            self.failure_streaks.pop(name, None)
            return value
        streak = self.failure_streaks.get(name, 0) + 1
        self.failure_streaks[name] = streak
        failures.append(f"{name}: {error}")
        if streak == 1:
            logger.warning(
                "Reading %s failed after %d attempts (%s); using the last good "
                "value until it recovers",
                name,
                1 + self.retries,
                error,
            )
        return None

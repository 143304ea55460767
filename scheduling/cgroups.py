"""cgroup backends: cap the managed group's CPU and read what it used.

Three backends share one interface (:class:`Backend`):

- :class:`CgroupV2` writes ``cpu.max`` in a group below a cgroup2 mount that
  really has the cpu controller, enabling ``+cpu`` in every parent's
  ``cgroup.subtree_control`` and moving processes out of the way of the
  no-internal-processes rule;
- :class:`CgroupV1` writes ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` in
  the cpu hierarchy and reads usage from the cpuacct hierarchy;
- :class:`DryRun` decides and remembers, writes nothing.

Percent always means percent of the whole machine: 100 % is every CPU busy.
It becomes ``quota_us = percent / 100 * cpus * period_us``, kept inside the
kernel's bounds (quota at least 1 ms, period from 1 ms to 1 s).

Errors: every failure is a :class:`CgroupError` whose message says what failed
and what to do about it. :class:`CgroupFS` is the one place where ``OSError``
from the cgroup filesystem becomes a :class:`CgroupError` (with ``errno`` and
``path`` kept for callers that react to a particular cause).
"""

from __future__ import annotations

import errno as errnos
import logging
import math
import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_ROOT = Path("/sys/fs/cgroup")
MOUNTS = Path("/proc/self/mounts")
CPU_ONLINE = Path("/sys/devices/system/cpu/online")

# Kernel bounds for CFS bandwidth control (kernel/sched/core.c).
MIN_QUOTA_US = 1_000
MIN_PERIOD_US = 1_000
MAX_PERIOD_US = 1_000_000

# A leaf next to the managed group for processes that must leave a parent
# (no-internal-processes rule) or are detached from the managed group.
OUTSIDE_LEAF = "cpusched-outside"

KINDS = ("auto", "v2", "v1", "dry-run")

# PF_KTHREAD in /proc/PID/stat field 9 (include/linux/sched.h).
PF_KTHREAD = 0x00200000


class CgroupError(Exception):
    """A cgroup operation failed; the message says what to do about it."""

    def __init__(
        self, message: str, *, errno: int | None = None, path: Path | None = None
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = path


@dataclass(frozen=True)
class Applied:
    """A cap as the kernel holds it.

    ``percent`` is of the whole machine (None: unlimited, ``max``); ``note``
    explains a clamp and is ignored when comparing.
    """

    percent: float | None
    quota_us: int | None
    period_us: int
    note: str = field(default="", compare=False)

    @property
    def unlimited(self) -> bool:
        return self.quota_us is None

    def cpu_max(self) -> str:
        """The line for cgroup v2 ``cpu.max``."""
        quota = "max" if self.quota_us is None else str(self.quota_us)
        return f"{quota} {self.period_us}"


# Conversions -----------------------------------------------------------------


def check_period(period_us: int) -> int:
    """Return ``period_us`` if the kernel accepts it, else raise CgroupError."""
    if not MIN_PERIOD_US <= period_us <= MAX_PERIOD_US:
        raise CgroupError(
            f"cgroup.period_us {period_us!r} is out of range: the kernel accepts "
            f"{MIN_PERIOD_US} to {MAX_PERIOD_US} us (1 ms to 1 s); "
            "set cgroup.period_us inside that range (100000 is the usual value)"
        )
    return period_us


def percent_of(quota_us: int | None, period_us: int, cpus: float) -> float | None:
    """Percent of the machine that ``quota_us`` per ``period_us`` allows."""
    if quota_us is None:
        return None
    return round(quota_us / period_us / cpus * 100, 6)


def quota_for(percent: float, cpus: float, period_us: int) -> Applied:
    """Convert percent of the whole machine into a legal quota/period pair.

    ``math.inf`` means unlimited. Above 100 % the cap is 100 %. A cap whose
    quota would fall below 1 ms keeps its ratio with a longer period (up to
    1 s); below that it is clamped to 1 ms per second and ``note`` says so.
    """
    check_period(period_us)
    if math.isnan(percent) or percent < 0:
        raise ValueError(f"Cap {percent!r} % is not allowed: use 0 to 100 or inf")
    if math.isinf(percent):
        return Applied(None, None, period_us)

    # Ratio = CPUs' worth of run time per period.
    ratio = min(percent, 100.0) / 100 * cpus
    quota = _floor(ratio * period_us)
    if quota >= MIN_QUOTA_US:
        return Applied(percent_of(quota, period_us, cpus), quota, period_us)

    # 0.4 % of one CPU is 1000 us every 250 ms: "400 100000" is refused.
    period = math.ceil(MIN_QUOTA_US / ratio) if ratio > 0 else MAX_PERIOD_US + 1
    if period <= MAX_PERIOD_US:
        quota = max(MIN_QUOTA_US, _floor(ratio * period))
        return Applied(percent_of(quota, period, cpus), quota, period)

    smallest = percent_of(MIN_QUOTA_US, MAX_PERIOD_US, cpus)
    note = (
        f"Cap {percent:g} % is below the smallest the kernel enforces "
        f"({smallest:g} % = {MIN_QUOTA_US} us per {MAX_PERIOD_US} us); "
        "wrote that instead"
    )
    return Applied(smallest, MIN_QUOTA_US, MAX_PERIOD_US, note)


def _floor(value: float) -> int:
    # Round down (the safe side) but forgive float noise: 0.3 * 100000 must
    # give 30000, not 29999.
    return math.floor(value + 1e-6)


def parse_cpu_max(text: str, cpus: float) -> Applied:
    """Read a cgroup v2 ``cpu.max`` line; extra fields are ignored."""
    fields = text.split()
    try:
        quota = None if fields[0] == "max" else int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except (IndexError, ValueError):
        raise CgroupError(
            f"Cannot parse cpu.max {text!r}: expected 'QUOTA PERIOD' or "
            "'max PERIOD'; is this really a cgroup v2 cpu.max file?"
        ) from None
    return Applied(percent_of(quota, period, cpus), quota, period)


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Read ``cpu.stat``-style 'key value' lines into a dict."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def machine_cpus(online: Path = CPU_ONLINE) -> int:
    """CPUs the machine offers (online CPUs), the base of 100 %."""
    try:
        text = online.read_text().strip()
    except OSError:
        return os.cpu_count() or 1
    return _count_cpu_list(text) or os.cpu_count() or 1


def _count_cpu_list(text: str) -> int:
    count = 0
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def clean_group(group: str) -> str:
    """Validate ``cgroup.group``: a relative path without '..' parts."""
    cleaned = group.strip().strip("/")
    parts = cleaned.split("/")
    if not cleaned or any(p in ("", ".", "..") for p in parts):
        raise CgroupError(
            f"cgroup.group {group!r} is not usable: give a path below the cgroup "
            "mount without '.' or '..' parts, like 'cpusched/workload'"
        )
    return cleaned


# The filesystem layer ---------------------------------------------------------


def _advice(err: OSError, action: str, path: Path) -> str:
    """What an operator should do about ``err`` while doing ``action``."""
    name = path.name
    code = err.errno
    if code in (errnos.EACCES, errnos.EPERM):
        return (
            "run the scheduler (and cgrun/cgroup) as root, or delegate the group "
            "to this user (chown the directory and its cgroup.procs, "
            "cgroup.subtree_control and cpu files)"
        )
    if code == errnos.ENOENT:
        return (
            "the group or file is missing: it was removed, or the cpu controller "
            "is not enabled for it; restart runscheduler to recreate it, and "
            "check cgroup.group and cgroup.backend"
        )
    if code == errnos.EROFS:
        return (
            "the cgroup filesystem is mounted read-only (a container?); run the "
            "scheduler on the host or mount the cgroup filesystem read-write"
        )
    if code == errnos.ESRCH:
        return "no such process: it may have exited already"
    if code == errnos.EBUSY and name == "cgroup.procs":
        return (
            "the group has controllers enabled in its cgroup.subtree_control, so "
            "it may not hold processes (no-internal-processes rule); choose a "
            "leaf group for cgroup.group"
        )
    if code == errnos.EBUSY and action == "remove":
        return "the group still has processes or child groups; move them out first"
    if code == errnos.EINVAL and name == "cgroup.procs":
        return "the kernel refuses to move this process (a kernel thread?)"
    if code == errnos.EINVAL and name.startswith("cpu.cfs_"):
        return (
            "cgroup v1 refuses a quota above a parent group's quota, a parent "
            "quota below a child's, and values outside 1000..1000000 us; "
            "check the parents' cpu.cfs_quota_us and cpu.cfs_burst_us"
        )
    if code == errnos.EINVAL:
        return "the kernel rejected the value; check the kernel log (dmesg)"
    return "check that the cgroup filesystem is mounted and writable"


class CgroupFS:
    """Reads and writes cgroup files; the one place OSError becomes CgroupError.

    Tests subclass it and override the ``_raw`` methods to mimic the kernel.
    """

    def read(self, path: Path) -> str:
        try:
            return self._read_raw(path)
        except OSError as err:
            raise self._error(err, "read", path) from err

    def write(self, path: Path, text: str) -> None:
        try:
            self._write_raw(path, text)
        except OSError as err:
            raise self._error(err, "write", path, text) from err

    def mkdir(self, path: Path) -> bool:
        """Create the group; False if it existed already."""
        try:
            self._mkdir_raw(path)
        except FileExistsError:
            return False
        except OSError as err:
            raise self._error(err, "create", path) from err
        return True

    def rmdir(self, path: Path) -> None:
        try:
            self._rmdir_raw(path)
        except OSError as err:
            raise self._error(err, "remove", path) from err

    def exists(self, path: Path) -> bool:
        return os.path.exists(path)

    def _read_raw(self, path: Path) -> str:
        with open(path) as handle:
            return handle.read()

    def _write_raw(self, path: Path, text: str) -> None:
        # One write(2) per value: cgroup files act on each write call.
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def _mkdir_raw(self, path: Path) -> None:
        os.mkdir(path)

    def _rmdir_raw(self, path: Path) -> None:
        os.rmdir(path)

    def _error(
        self, err: OSError, action: str, path: Path, value: str | None = None
    ) -> CgroupError:
        what = f"write {value.strip()!r} to" if value is not None else action
        reason = err.strerror or str(err)
        return CgroupError(
            f"Cannot {what} {path}: {reason}; {_advice(err, action, path)}",
            errno=err.errno,
            path=path,
        )


# Mounts and detection --------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    point: Path
    fstype: str
    options: frozenset[str]


def read_mounts(mounts_file: Path = MOUNTS) -> list[Mount]:
    """The cgroup and cgroup2 mounts listed in ``mounts_file``."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
            point = Path(_unescape(fields[1]))
            mounts.append(Mount(point, fields[2], frozenset(fields[3].split(","))))
    return mounts


def _unescape(text: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mounts_under(root: Path, mounts_file: Path) -> list[Mount]:
    return [m for m in read_mounts(mounts_file) if m.point.is_relative_to(root)]


def _controllers(group: Path) -> set[str]:
    try:
        return set((group / "cgroup.controllers").read_text().split())
    except OSError:
        return set()


def detect(root: Path = DEFAULT_ROOT, *, mounts_file: Path = MOUNTS) -> str:
    """Which cgroup version really has the cpu controller: v2, v1 or none.

    A cgroup2 mount counts only when its ``cgroup.controllers`` lists cpu, so
    a hybrid host (controller-less cgroup2 at ``unified`` next to v1 mounts)
    is v1. When nothing is mounted below ``root`` (a test tree), the files
    decide.
    """
    mounts = _mounts_under(root, mounts_file)
    if not mounts:
        return _detect_files(root)
    if any(m.fstype == "cgroup2" and "cpu" in _controllers(m.point) for m in mounts):
        return "v2"
    if any(m.fstype == "cgroup" and "cpu" in m.options for m in mounts):
        return "v1"
    return "none"


def _detect_files(root: Path) -> str:
    if "cpu" in _controllers(root):
        return "v2"
    if _v1_dir(root, "cpu", "cpu.cfs_quota_us") is not None:
        return "v1"
    return "none"


def _v1_dir(root: Path, controller: str, probe: str) -> Path | None:
    names = (controller, "cpu,cpuacct", "cpuacct,cpu")
    for candidate in (root, *(root / n for n in names)):
        if (candidate / probe).exists():
            return candidate
    return None


def _v2_root(root: Path | None, mounts_file: Path) -> Path:
    base = root or DEFAULT_ROOT
    mounts = [m for m in _mounts_under(base, mounts_file) if m.fstype == "cgroup2"]
    if not mounts:
        if root is not None:
            return root
        raise CgroupError(
            "No cgroup2 filesystem is mounted: mount one "
            "(mount -t cgroup2 none /sys/fs/cgroup) or use cgroup.backend=v1"
        )
    with_cpu = [m for m in mounts if "cpu" in _controllers(m.point)]
    return (with_cpu or mounts)[0].point


def _v1_roots(root: Path | None, mounts_file: Path) -> tuple[Path, Path | None]:
    base = root or DEFAULT_ROOT
    mounts = [m for m in _mounts_under(base, mounts_file) if m.fstype == "cgroup"]
    cpu = next((m.point for m in mounts if "cpu" in m.options), None)
    acct = next((m.point for m in mounts if "cpuacct" in m.options), None)
    if cpu is None and not mounts:
        cpu = _v1_dir(base, "cpu", "cpu.cfs_quota_us")
        acct = _v1_dir(base, "cpuacct", "cpuacct.usage")
    if cpu is None:
        raise CgroupError(
            f"No cgroup v1 hierarchy with the cpu controller below {base}: mount "
            "one (mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu) or use "
            "cgroup.backend=v2"
        )
    return cpu, acct


# Process helpers ---------------------------------------------------------------


def describe(pids: Iterable[int]) -> str:
    """'123 (python3), 456 (bash)' for messages."""
    return ", ".join(f"{pid} ({process_name(pid)})" for pid in pids)


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "exited"


def is_kernel_thread(pid: int) -> bool:
    """Whether ``pid`` is a kernel thread (PF_KTHREAD in /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return bool(int(stat[stat.rindex(")") + 2 :].split()[6]) & PF_KTHREAD)


def refuse_protected(pid: int) -> None:
    """Raise CgroupError for PIDs that must never be capped."""
    if pid <= 1:
        raise CgroupError(
            f"Refusing to attach PID {pid}: PID 1 (init) and below are never "
            "capped, or every service on the machine would be throttled"
        )
    if is_kernel_thread(pid):
        raise CgroupError(
            f"Refusing to attach PID {pid} ({process_name(pid)}): it is a kernel "
            "thread; only user processes belong in the managed group"
        )


def _pids(text: str) -> list[int]:
    return sorted({int(line) for line in text.split()})


# Backends ----------------------------------------------------------------------


class Backend(ABC):
    """The managed group: cap it, read its usage, move processes in and out."""

    kind: str = ""

    def __init__(
        self,
        path: Path,
        period_us: int,
        cpus: float,
        fs: CgroupFS | None = None,
    ) -> None:
        self.path = path
        self.period_us = check_period(period_us)
        self.cpus = cpus
        self.fs = fs or CgroupFS()
        self.degraded_reason: str | None = None
        self._created: list[Path] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path} cpus={self.cpus:g}>"

    def convert(self, percent: float) -> Applied:
        """The legal quota/period pair for ``percent`` of the machine."""
        return quota_for(percent, self.cpus, self.period_us)

    @abstractmethod
    def prepare(self) -> list[str]:
        """Create the group and make it controllable; notes for the log."""

    @abstractmethod
    def write_cap(self, percent: float) -> Applied:
        """Write the cap, read it back; raise CgroupError on any mismatch."""

    @abstractmethod
    def read_cap(self) -> Applied:
        """The cap the kernel holds now."""

    @abstractmethod
    def usage_usec(self) -> int:
        """The group's own cumulative CPU time in microseconds."""

    def attach(self, pid: int) -> None:
        """Move the whole process (all its threads) into the group.

        PID 1 and kernel threads are refused: capping them would throttle
        the whole system.
        """
        refuse_protected(pid)
        self._attach(pid)

    @abstractmethod
    def _attach(self, pid: int) -> None:
        """Write ``pid`` into the group's ``cgroup.procs``."""

    @abstractmethod
    def detach(self, pid: int) -> None:
        """Move the process out of the group, next to it."""

    @abstractmethod
    def members(self) -> list[int]:
        """PIDs of the processes in the group."""

    def exists(self) -> bool:
        """Whether the group's directory is there."""
        return self.fs.exists(self.path)

    def cpu_stat(self) -> dict[str, int]:
        """The group's ``cpu.stat`` (throttling counters); empty if unknown."""
        return {}

    def remove(self) -> None:
        """Move the members out and delete the group and what prepare made."""
        self._empty()
        for group in self._groups_to_remove():
            self._rmdir(group)
        self._remove_created()

    def clear_cap(self) -> Applied:
        """Write no limit (``max``)."""
        return self.write_cap(math.inf)

    def _groups_to_remove(self) -> list[Path]:
        return [self.path]

    def _empty(self) -> None:
        # New children can be forked while the members move; repeat a few times.
        for _ in range(10):
            pids = self.members() if self.exists() else []
            if not pids:
                return
            for pid in pids:
                self._detach_quietly(pid)

    def _detach_quietly(self, pid: int) -> None:
        try:
            self.detach(pid)
        except CgroupError as err:
            if err.errno != errnos.ESRCH:
                raise

    def _rmdir(self, group: Path) -> None:
        # A process that just exited may still count for a moment.
        for attempt in range(20):
            if not self.fs.exists(group):
                return
            try:
                self.fs.rmdir(group)
                return
            except CgroupError as err:
                if err.errno != errnos.EBUSY or attempt == 19:
                    raise
                time.sleep(0.05)

    def _remove_created(self) -> None:
        for group in reversed(self._created):
            if group in self._groups_to_remove() or not self.fs.exists(group):
                continue
            try:
                self.fs.rmdir(group)
            except CgroupError:
                logger.debug("Left %s in place: not empty", group)
        self._created = []

    def _mkdir(self, group: Path, notes: list[str]) -> None:
        if self.fs.mkdir(group):
            self._created.append(group)
            notes.append(f"Created {group}")

    def _check_readback(self, wanted: Applied, got: Applied, where: Path) -> None:
        if (wanted.quota_us, wanted.period_us) != (got.quota_us, got.period_us):
            raise CgroupError(
                f"Wrote {wanted.cpu_max()!r} to {where} but the kernel reports "
                f"{got.cpu_max()!r}; something else manages this group "
                "(systemd? another scheduler?): give cpusched a group of its own"
            )


class CgroupV2(Backend):
    """cgroup v2: ``cpu.max`` in a group below the cgroup2 mount ``root``."""

    kind = "v2"

    def __init__(
        self,
        root: Path,
        group: str,
        period_us: int = 100_000,
        cpus: float | None = None,
        fs: CgroupFS | None = None,
    ) -> None:
        super().__init__(
            root / clean_group(group), period_us, cpus or machine_cpus(), fs
        )
        self.root = root

    def prepare(self) -> list[str]:
        """Create the group; enable +cpu top-down, moving processes aside.

        A non-root group with processes cannot enable controllers for its
        children (no-internal-processes rule), so its processes, this one
        included, first move into ``<parent>/cpusched-outside``.
        """
        self._require_cpu()
        notes: list[str] = []
        above = reversed(self.path.relative_to(self.root).parents)
        chain = [self.root / p for p in above][1:] + [self.path]
        parent = self.root
        for group in chain:
            self._enable_cpu(parent, notes)
            self._mkdir(group, notes)
            parent = group
        self._require_cpu_in_group()
        self._leave_group(notes)
        return notes

    def write_cap(self, percent: float) -> Applied:
        wanted = self.convert(percent)
        self.fs.write(self.path / "cpu.max", wanted.cpu_max())
        got = self.read_cap()
        self._check_readback(wanted, got, self.path / "cpu.max")
        if wanted.note:
            logger.warning("%s", wanted.note)
        return wanted

    def read_cap(self) -> Applied:
        return parse_cpu_max(self.fs.read(self.path / "cpu.max"), self.cpus)

    def usage_usec(self) -> int:
        stat = self.cpu_stat()
        if "usage_usec" not in stat:
            raise CgroupError(
                f"{self.path / 'cpu.stat'} has no usage_usec line; is this a "
                "cgroup v2 group? check cgroup.backend"
            )
        return stat["usage_usec"]

    def cpu_stat(self) -> dict[str, int]:
        return parse_flat_keyed(self.fs.read(self.path / "cpu.stat"))

    def _attach(self, pid: int) -> None:
        # cgroup.procs moves the whole thread group, whichever thread is named.
        self.fs.write(self.path / "cgroup.procs", str(pid))

    def detach(self, pid: int) -> None:
        self._require_member(pid)
        self.fs.write(self.outside() / "cgroup.procs", str(pid))

    def members(self) -> list[int]:
        return _pids(self.fs.read(self.path / "cgroup.procs"))

    def outside(self) -> Path:
        """Where processes leaving the group go.

        The parent itself when it may hold processes (the root, or no
        controllers enabled for its children); otherwise the sibling leaf
        ``cpusched-outside``, because with +cpu enabled the parent may not.
        """
        parent = self.path.parent
        if self._may_hold_processes(parent):
            return parent
        leaf = parent / OUTSIDE_LEAF
        self._mkdir(leaf, [])
        return leaf

    def _may_hold_processes(self, group: Path) -> bool:
        # Only the real root lacks cgroup.type; a cgroup-namespace root has it
        # and obeys the rule like any other group.
        if not self.fs.exists(group / "cgroup.type"):
            return True
        return not self.fs.read(group / "cgroup.subtree_control").split()

    def _require_cpu(self) -> None:
        if "cpu" not in self.fs.read(self.root / "cgroup.controllers").split():
            raise CgroupError(
                f"The cpu controller is not available in the cgroup2 hierarchy at "
                f"{self.root}; on a hybrid host it is bound to cgroup v1: use "
                "cgroup.backend=v1 (or auto), or boot with "
                "systemd.unified_cgroup_hierarchy=1"
            )

    def _require_cpu_in_group(self) -> None:
        if not self.fs.exists(self.path / "cpu.max"):
            raise CgroupError(
                f"{self.path} has no cpu.max although +cpu was enabled above it; "
                "is it a threaded group or managed by someone else? choose "
                "another cgroup.group"
            )

    def _enable_cpu(self, group: Path, notes: list[str]) -> None:
        control = group / "cgroup.subtree_control"
        if "cpu" in self.fs.read(control).split():
            return
        if self.fs.exists(group / "cgroup.type"):
            self._move_aside(group, notes)
        try:
            self.fs.write(control, "+cpu")
        except CgroupError as err:
            raise self._enable_failed(group, err) from err
        notes.append(f"Enabled +cpu in {control}")

    def _move_aside(self, group: Path, notes: list[str]) -> None:
        pids = _pids(self.fs.read(group / "cgroup.procs"))
        if not pids:
            return
        leaf = group / OUTSIDE_LEAF
        self._mkdir(leaf, notes)
        for pid in pids:
            self._move_quietly(pid, leaf)
        notes.append(
            f"Moved {describe(pids)} from {group} to {leaf} so +cpu can be "
            "enabled there (no-internal-processes rule)"
        )
        logger.info("%s", notes[-1])

    def _move_quietly(self, pid: int, group: Path) -> None:
        try:
            self.fs.write(group / "cgroup.procs", str(pid))
        except CgroupError as err:
            # Exited meanwhile, or unmovable; the EBUSY that follows names it.
            logger.debug("Could not move %s: %s", pid, err)

    def _enable_failed(self, group: Path, err: CgroupError) -> CgroupError:
        if err.errno != errnos.EBUSY:
            return err
        pids = _pids(self.fs.read(group / "cgroup.procs"))
        in_the_way = describe(pids) if pids else "none listed (threaded group?)"
        return CgroupError(
            f"Cannot enable +cpu in {group / 'cgroup.subtree_control'}: processes "
            f"in the way: {in_the_way}; the no-internal-processes rule forbids "
            f"it; move them into a child group (echo PID > "
            f"{group / OUTSIDE_LEAF}/cgroup.procs) and start again",
            errno=err.errno,
            path=err.path,
        )

    def _leave_group(self, notes: list[str]) -> None:
        me = os.getpid()
        if me in self.members():
            self.detach(me)
            notes.append(
                f"The scheduler (PID {me}) was inside the managed group; moved it "
                f"to {self.outside()} so it is never throttled"
            )

    def _require_member(self, pid: int) -> None:
        if pid not in self.members():
            raise CgroupError(
                f"PID {pid} is not in {self.path}; nothing to detach "
                "(see 'manage.py cgroup list')",
                errno=errnos.ESRCH,
            )


class CgroupV1(Backend):
    """cgroup v1: ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, usage from cpuacct."""

    kind = "v1"

    def __init__(
        self,
        cpu_root: Path,
        group: str,
        period_us: int = 100_000,
        cpus: float | None = None,
        fs: CgroupFS | None = None,
        acct_root: Path | None = None,
    ) -> None:
        group = clean_group(group)
        super().__init__(cpu_root / group, period_us, cpus or machine_cpus(), fs)
        self.root = cpu_root

        # None when cpuacct is co-mounted with cpu (or not mounted at all).
        separate = acct_root is not None and acct_root != cpu_root
        self._acct_root = acct_root if separate else None
        self.acct_path = acct_root / group if separate and acct_root else None

    def prepare(self) -> list[str]:
        notes: list[str] = []
        for root, path in self._hierarchies():
            for group in [*reversed(path.relative_to(root).parents)][1:]:
                self._mkdir(root / group, notes)
            self._mkdir(path, notes)
        limit = self.parent_limit()
        if limit is not None:
            notes.append(
                f"A parent of {self.path} caps it at {limit.percent:g} % of the "
                "machine; higher caps are clamped to that"
            )
        return notes

    def write_cap(self, percent: float) -> Applied:
        wanted = self._clamped(self.convert(percent))
        self._write_pair(wanted)
        got = self.read_cap()
        self._check_readback(wanted, got, self.path / "cpu.cfs_quota_us")
        if wanted.note:
            logger.warning("%s", wanted.note)
        return wanted

    def read_cap(self) -> Applied:
        quota, period = self._read_pair(self.path)
        return Applied(percent_of(quota, period, self.cpus), quota, period)

    def usage_usec(self) -> int:
        if self.acct_path is not None or self._co_mounted():
            where = self.acct_path or self.path
            return int(self.fs.read(where / "cpuacct.usage")) // 1000
        stat = self.cpu_stat()
        if "usage_usec" in stat:
            return stat["usage_usec"]
        raise CgroupError(
            f"No CPU accounting for {self.path}: the cpuacct controller is not "
            "mounted; mount it (mount -t cgroup -o cpuacct cgroup "
            "/sys/fs/cgroup/cpuacct)"
        )

    def cpu_stat(self) -> dict[str, int]:
        return parse_flat_keyed(self.fs.read(self.path / "cpu.stat"))

    def _attach(self, pid: int) -> None:
        # v1 hierarchies are independent: join the cpuacct group too, or the
        # usage would not be the group's own.
        for _, path in self._hierarchies():
            self.fs.write(path / "cgroup.procs", str(pid))

    def detach(self, pid: int) -> None:
        if pid not in self.members():
            raise CgroupError(
                f"PID {pid} is not in {self.path}; nothing to detach "
                "(see 'manage.py cgroup list')",
                errno=errnos.ESRCH,
            )
        for _, path in self._hierarchies():
            self.fs.write(path.parent / "cgroup.procs", str(pid))

    def members(self) -> list[int]:
        return _pids(self.fs.read(self.path / "cgroup.procs"))

    def exists(self) -> bool:
        return all(self.fs.exists(path) for _, path in self._hierarchies())

    def outside(self) -> Path:
        return self.path.parent

    def parent_limit(self) -> Applied | None:
        """The tightest quota among the group's ancestors, as a cap."""
        best: tuple[float, int, int] | None = None
        group = self.path.parent
        while group.is_relative_to(self.root):
            quota, period = self._read_pair(group)
            if quota is not None and (best is None or quota / period < best[0]):
                best = (quota / period, quota, period)
            group = group.parent
        if best is None:
            return None
        return Applied(percent_of(best[1], best[2], self.cpus), best[1], best[2])

    def _co_mounted(self) -> bool:
        return self.fs.exists(self.path / "cpuacct.usage")

    def _hierarchies(self) -> list[tuple[Path, Path]]:
        pairs = [(self.root, self.path)]
        if self.acct_path is not None and self._acct_root is not None:
            pairs.append((self._acct_root, self.acct_path))
        return pairs

    def _groups_to_remove(self) -> list[Path]:
        return [path for _, path in self._hierarchies()]

    def _read_pair(self, group: Path) -> tuple[int | None, int]:
        quota = int(self.fs.read(group / "cpu.cfs_quota_us"))
        period = int(self.fs.read(group / "cpu.cfs_period_us"))
        return (None if quota < 0 else quota), period

    def _clamped(self, wanted: Applied) -> Applied:
        # v1 refuses (EINVAL) a child quota above the parent's ratio, where v2
        # would silently take the smaller: clamp and say so.
        limit = self.parent_limit()
        if wanted.quota_us is None or limit is None or limit.quota_us is None:
            return wanted
        if wanted.quota_us / wanted.period_us <= limit.quota_us / limit.period_us:
            return wanted
        clamped = quota_for(limit.percent or 0.0, self.cpus, self.period_us)
        note = (
            f"Cap {wanted.percent:g} % is above the {limit.percent:g} % a parent "
            f"of {self.path} allows (cgroup v1 refuses a child quota above its "
            f"parent's); wrote {clamped.percent:g} %"
        )
        return Applied(clamped.percent, clamped.quota_us, clamped.period_us, note)

    def _write_pair(self, wanted: Applied) -> None:
        quota_file = self.path / "cpu.cfs_quota_us"
        period_file = self.path / "cpu.cfs_period_us"
        old_quota, old_period = self._read_pair(self.path)
        quota, period = wanted.quota_us, wanted.period_us

        # Quota and period are two files, so every intermediate pair must be
        # legal too. Unlimited is always legal. Between two limited pairs, of
        # the two intermediates (q_old/p_new, q_new/p_old) the smaller is at
        # most the geometric mean of the old and new ratios, so it is legal
        # whenever both ends are.
        steps: list[tuple[Path, int]]
        if quota is None:
            steps = [(quota_file, -1), (period_file, period)]
        elif old_quota is None or old_quota / period <= quota / old_period:
            steps = [(period_file, period), (quota_file, quota)]
        else:
            steps = [(quota_file, quota), (period_file, period)]
        current = {quota_file: old_quota or -1, period_file: old_period}
        for path, value in steps:
            if current[path] != value:
                self.fs.write(path, str(value))


class DryRun(Backend):
    """Decides and remembers; writes nothing to any cgroup.

    ``usage_usec`` is 0: nothing is controlled, so all CPU counts as outside
    the group.
    """

    kind = "dry-run"

    def __init__(
        self,
        path: Path,
        period_us: int = 100_000,
        cpus: float | None = None,
        degraded_reason: str | None = None,
    ) -> None:
        super().__init__(path, period_us, cpus or machine_cpus())
        self.degraded_reason = degraded_reason
        self._applied = Applied(None, None, self.period_us)
        self._members: set[int] = set()

    def prepare(self) -> list[str]:
        note = f"Dry run: caps are decided and logged, nothing is written ({self.path})"
        return [note] + ([self.degraded_reason] if self.degraded_reason else [])

    def write_cap(self, percent: float) -> Applied:
        self._applied = self.convert(percent)
        logger.debug("Dry run: would write %s", self._applied.cpu_max())
        return self._applied

    def read_cap(self) -> Applied:
        return self._applied

    def usage_usec(self) -> int:
        return 0

    def _attach(self, pid: int) -> None:
        if not os.path.exists(f"/proc/{pid}"):
            raise CgroupError(
                f"Cannot attach PID {pid}: no such process", errno=errnos.ESRCH
            )
        self._members.add(pid)

    def detach(self, pid: int) -> None:
        self._members.discard(pid)

    def members(self) -> list[int]:
        self._members = {p for p in self._members if os.path.exists(f"/proc/{p}")}
        return sorted(self._members)

    def exists(self) -> bool:
        return True

    def remove(self) -> None:
        self._members.clear()


# Opening ---------------------------------------------------------------------------


def open_backend(
    kind: str,
    group: str,
    period_us: int = 100_000,
    *,
    root: Path | None = None,
    cpus: float | None = None,
    mounts_file: Path = MOUNTS,
    fs: CgroupFS | None = None,
) -> Backend:
    """The backend for ``cgroup.backend`` = ``kind``; nothing is written yet.

    ``auto`` prefers v2, then v1; with neither usable it returns a
    :class:`DryRun` whose ``degraded_reason`` the caller should raise as a
    critical alert. ``root`` overrides where the hierarchies are looked for
    (default: the mounts below /sys/fs/cgroup). Raises CgroupError for a bad
    kind, group or period, or an explicit kind that is not mounted.
    """
    check_period(period_us)
    group = clean_group(group)
    cpus = cpus or machine_cpus()
    if kind == "auto":
        kind = detect(root or DEFAULT_ROOT, mounts_file=mounts_file)
        if kind == "none":
            return DryRun(
                (root or DEFAULT_ROOT) / group, period_us, cpus, _nothing_usable(root)
            )
    if kind == "v2":
        return CgroupV2(_v2_root(root, mounts_file), group, period_us, cpus, fs)
    if kind == "v1":
        cpu_root, acct_root = _v1_roots(root, mounts_file)
        return CgroupV1(cpu_root, group, period_us, cpus, fs, acct_root)
    if kind == "dry-run":
        return DryRun((root or DEFAULT_ROOT) / group, period_us, cpus)
    raise CgroupError(f"Unknown cgroup backend {kind!r}: use one of {', '.join(KINDS)}")


def open_from_params(
    params: Mapping[str, Any],
    *,
    backend: str | None = None,
    group: str | None = None,
    root: Path | None = None,
) -> Backend:
    """open_backend() from a config snapshot, with one-run overrides."""
    return open_backend(
        backend or params["cgroup.backend"],
        group or params["cgroup.group"],
        params["cgroup.period_us"],
        root=root,
        cpus=params.get("monitoring.vcpus") or None,
    )


def _nothing_usable(root: Path | None) -> str:
    return (
        f"No cgroup hierarchy with the cpu controller was found below "
        f"{root or DEFAULT_ROOT}: the scheduler only monitors and logs caps "
        "(dry run); mount cgroup2 with the cpu controller or a cgroup v1 cpu "
        "hierarchy, or set cgroup.backend=dry-run to run without control"
    )

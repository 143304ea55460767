"""Turning the planned whole-machine cap into the managed group's cap.

The group may use what the whole machine may use less what runs outside it:
``group cap = planned cap - (total use - group use)``. The cgroup file is
rewritten only when that moves by ``scheduler.change_threshold`` or more,
except that a decrease the planner asks for is written at once.

Every write is read back by the backend. Every tick the cap is read again,
so a group reset to ``max`` by something else (``systemctl daemon-reload``,
an operator) is noticed within a second, rewritten and recorded as
"reverted". A failed write is reported with the backend's advice, retried
next tick, and never assumed: :attr:`GroupControl.enforced` is always what
the kernel reported last, or None when even reading failed.

Only one scheduler may control a group: :func:`take_lock` holds an exclusive
``flock`` for the life of the process (see :func:`group_lock_path`). The
kernel drops the lock when the process dies, however it dies, so a lock file
left behind never blocks the next start.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduling.cgroups import Applied, Backend, CgroupError

logger = logging.getLogger(__name__)

MIN_GROUP_PERCENT = 0.1
"""Smallest group cap written: the backend turns it into the kernel's
smallest legal quota. Zero would mean "no CPU at all", which the kernel
cannot express and the workload cannot survive."""

DRIFT_TOLERANCE = 0.05
"""Percentage points a read-back may differ from the write (rounding of the
quota to whole microseconds) before it counts as changed by someone else."""

EventSink = Callable[[str, str, dict[str, Any]], None]

LOCK_DIRS = (Path("/run/lock"), Path("/tmp"))
"""Where per-group locks live: shared by every checkout on the machine."""


@dataclass(frozen=True)
class Control:
    """What this tick did to the group."""

    target: float | None
    enforced: float | None
    wrote: bool = False
    reverted: bool = False
    error: str | None = None
    previous: float | None = None


def group_target(cap: float, outside: float | None) -> float:
    """The group's share of ``cap`` (% of the machine) given outside use."""
    target = cap - (outside or 0.0)
    return min(100.0, max(MIN_GROUP_PERCENT, target))


class GroupControl:
    """Writes, re-reads and restores the managed group's cap."""

    def __init__(
        self, backend: Backend, change_threshold: float, record: EventSink
    ) -> None:
        self.backend = backend
        self.change_threshold = change_threshold
        self.record = record
        self.requested: float | None = None
        self.applied: Applied | None = None
        self.error: str | None = None
        self.enforced: float | None = None
        self.known = False

    def start(self) -> None:
        """Read the cap left by whoever ran before (the next write replaces it)."""
        current = self._read()
        if current is not None:
            self.enforced = current.percent
            self.known = True

    def apply(self, cap: float, outside: float | None, decrease: bool) -> Control:
        """Bring the group to ``cap`` less ``outside`` when that is worth a write."""
        target = group_target(cap, outside)
        reverted = self._drifted()
        if not (reverted or self._worth_writing(target, decrease)):
            return Control(target, self.enforced)
        return self._write(target, reverted)

    def leave_at(self, percent: float) -> Control:
        """Write ``percent`` whatever the threshold (stop, monitor-only)."""
        return self._write(min(100.0, max(MIN_GROUP_PERCENT, percent)), False)

    def _worth_writing(self, target: float, decrease: bool) -> bool:
        if self.error is not None or self.requested is None:
            return True
        change = target - self.requested
        if change < -1e-6 and decrease:
            return True
        return abs(change) >= self.change_threshold

    def _drifted(self) -> bool:
        """Whether the kernel no longer holds what was last written."""
        if self.applied is None or self.error is not None:
            return False
        current = self._read()
        if current is None:
            return False
        wanted = self.applied.percent
        changed = (current.percent is None) != (wanted is None) or (
            current.percent is not None
            and wanted is not None
            and abs(current.percent - wanted) > DRIFT_TOLERANCE
        )
        if not changed:
            return False
        message = (
            f"The group cap was changed outside cpusched (found "
            f"{current.cpu_max()!r}, wrote {self.applied.cpu_max()!r}); rewriting it"
        )
        logger.warning("%s at %s", message, self.backend.path)
        self.record(
            "reverted",
            message,
            {"found": current.cpu_max(), "wrote": self.applied.cpu_max()},
        )
        self.enforced = current.percent
        return True

    def _write(self, target: float, reverted: bool) -> Control:
        previous = self.enforced
        try:
            self._recreate_if_gone()
            applied = self.backend.write_cap(target)
        except CgroupError as err:
            return self._failed(target, str(err), previous)
        if self.error is not None:
            logger.warning("Writing the group cap works again: %s", applied.cpu_max())
            self.record(
                "cgroup_write_recovered", "Writing the group cap works again", {}
            )
        self.error = None
        self.requested = target
        self.applied = applied
        self.enforced = applied.percent
        self.known = True
        if applied.note:
            logger.warning(
                "Group cap adjusted by the kernel's bounds: %s", applied.note
            )
        return Control(target, self.enforced, True, reverted, None, previous)

    def _failed(self, target: float, message: str, previous: float | None) -> Control:
        if self.error != message:
            logger.error("Could not write the group cap %.1f %%: %s", target, message)
            self.record("cgroup_write_failed", message, {"target": round(target, 3)})
        self.error = message
        current = self._read()
        self.enforced = None if current is None else current.percent
        self.known = current is not None
        return Control(target, self.enforced, False, False, message, previous)

    def _recreate_if_gone(self) -> None:
        """After a failure, make the group again if someone removed it."""
        if self.error is None or self.backend.exists():
            return
        for note in self.backend.prepare():
            logger.warning("Managed group was missing: %s", note)

    def _read(self) -> Applied | None:
        try:
            return self.backend.read_cap()
        except CgroupError as err:
            logger.debug("Reading the group cap failed: %s", err)
            return None


# One scheduler per data directory and per group ------------------------------


class AlreadyRunning(Exception):
    """Another process holds the lock; ``pid`` is what it wrote, if readable."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"{holder}, lock {path}")


@dataclass
class InstanceLock:
    """An exclusive ``flock`` held until :meth:`release` or process exit."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def group_lock_path(group: Path, lock_dirs: tuple[Path, ...] | None = None) -> Path:
    """The lock file for the cgroup directory ``group``.

    Named after the group's absolute path, so two checkouts (different data
    directories) that manage the same group take the same lock.
    """
    lock_dirs = lock_dirs or LOCK_DIRS
    name = "cpusched-" + str(group).strip("/").replace("/", "-") + ".lock"
    for folder in lock_dirs:
        if folder.is_dir() and os.access(folder, os.W_OK):
            return folder / name
    return lock_dirs[-1] / name


def take_lock(path: Path) -> InstanceLock:
    """Lock ``path`` exclusively without waiting and write our PID into it.

    Raises :class:`AlreadyRunning` when another process holds it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _read_pid(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise AlreadyRunning(path, holder) from None
        raise
    _write_pid(fd, path)
    return InstanceLock(path, fd)


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file; read-only when it belongs to another user.

    An existing file is opened without O_CREAT: in a sticky world-writable
    directory (/run/lock, /tmp) the kernel refuses O_CREAT on another
    user's file even to root (fs.protected_regular).
    """
    flags = os.O_CLOEXEC
    for _ in range(3):
        try:
            return os.open(path, flags | os.O_RDWR)
        except PermissionError:
            return os.open(path, flags | os.O_RDONLY)
        except FileNotFoundError:
            pass
        try:
            return os.open(path, flags | os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # another starter created it between the two opens
    return os.open(path, flags | os.O_RDONLY)


def _write_pid(fd: int, path: Path) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as err:
        # The lock holds without it; only the refusal message loses the pid.
        logger.warning("Could not write the pid into %s: %s", path, err)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

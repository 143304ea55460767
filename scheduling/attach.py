"""Attach rules: put matching processes into the managed group automatically.

A process matches when its name (``/proc/PID/comm``, or the file name of
``argv[0]`` for names longer than the kernel's 15 characters) is one of
``cgroup.attach_names``, when its command line contains one of
``cgroup.attach_cmdline``, or when its effective user (as ``ps`` shows it) is one of
``cgroup.attach_users``. The scheduler itself, any other ``runscheduler``,
PID 1 and kernel threads are never attached, whatever the rules say.

:func:`scan` is cheap enough for the loop to call every
``cgroup.attach_interval`` seconds: it reads ``/proc`` once and writes only
for processes that are not members yet.
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduling.cgroups import PF_KTHREAD, Backend, CgroupError

logger = logging.getLogger(__name__)

PROC = Path("/proc")

# Failures already logged, so a process that cannot be moved is reported
# once, not every scan. Keyed by (pid, start time) to survive PID reuse.
_reported: set[tuple[int, int]] = set()


@dataclass(frozen=True)
class Rules:
    """Which processes to attach: names, command-line substrings, user ids."""

    names: frozenset[str] = frozenset()
    cmdline: tuple[str, ...] = ()
    uids: frozenset[int] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.names or self.cmdline or self.uids)


@dataclass(frozen=True)
class Process:
    pid: int
    name: str
    argv: tuple[str, ...]
    uid: int
    start: int
    kernel: bool


def split_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [item.strip() for item in text.split(",") if item.strip()]


def rules_from_params(params: Mapping[str, Any]) -> Rules:
    """Rules from ``cgroup.attach_*``; raises ValueError for an unknown user."""
    users = split_list(params.get("cgroup.attach_users", ""))
    return Rules(
        names=frozenset(split_list(params.get("cgroup.attach_names", ""))),
        cmdline=tuple(split_list(params.get("cgroup.attach_cmdline", ""))),
        uids=frozenset(uid_of(user) for user in users),
    )


def uid_of(user: str) -> int:
    """The uid of a user name or number."""
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise ValueError(
            f"cgroup.attach_users names {user!r}, which is not a user on this "
            "machine; give an existing user name or a numeric uid"
        ) from None


def matches(process: Process, rules: Rules) -> bool:
    """Whether a rule selects ``process`` (protection is checked elsewhere)."""
    if process.name in rules.names:
        return True
    if process.argv and os.path.basename(process.argv[0]) in rules.names:
        return True
    line = " ".join(process.argv)
    if any(needle in line for needle in rules.cmdline):
        return True
    return process.uid in rules.uids


def protected(process: Process, me: int | None = None) -> bool:
    """Never attach: this process, PID 1, kernel threads, any runscheduler."""
    if process.pid in (1, me if me is not None else os.getpid()):
        return True
    if process.kernel or not process.argv:
        return True
    return "runscheduler" in process.argv


def scan(backend: Backend, rules: Rules, proc: Path = PROC) -> list[int]:
    """Attach every matching process that is not a member yet; the new PIDs."""
    if rules.empty:
        return []
    members = set(backend.members())
    attached = []
    for process in processes(proc):
        if process.pid in members or protected(process):
            continue
        if matches(process, rules) and _attach(backend, process):
            attached.append(process.pid)
    if attached:
        logger.info("Attached by rule: %s", ", ".join(map(str, attached)))
    return attached


def _attach(backend: Backend, process: Process) -> bool:
    try:
        backend.attach(process.pid)
    except CgroupError as err:
        if err.errno != errno.ESRCH:
            _report_once(process, err)
        return False
    return True


def _report_once(process: Process, err: CgroupError) -> None:
    key = (process.pid, process.start)
    if key in _reported:
        return
    if len(_reported) > 10_000:
        _reported.clear()
    _reported.add(key)
    logger.warning(
        "Attach rule matched %s (%s) but: %s", process.pid, process.name, err
    )


def processes(proc: Path = PROC) -> Iterator[Process]:
    """Every process in ``proc`` by PID; those exiting meanwhile are skipped."""
    pids = sorted(int(entry.name) for entry in os.scandir(proc) if entry.name.isdigit())
    for pid in pids:
        process = read_process(proc, pid)
        if process is not None:
            yield process


def read_process(proc: Path, pid: int) -> Process | None:
    """One process from /proc, or None if it is gone."""
    base = proc / str(pid)
    try:
        stat = (base / "stat").read_text()
        argv = (base / "cmdline").read_bytes().split(b"\0")
        status = (base / "status").read_text()
    except OSError:
        return None

    # comm may contain spaces and parentheses: split at the last ')'.
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    flags, start = int(fields[6]), int(fields[19])
    words = tuple(a.decode(errors="replace") for a in argv if a)
    uid = _effective_uid(status)
    return Process(pid, name, words, uid, start, bool(flags & PF_KTHREAD))


def _effective_uid(status: str) -> int:
    # "Uid:	real	effective	saved	fs"; ps shows the effective one.
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])
    return -1

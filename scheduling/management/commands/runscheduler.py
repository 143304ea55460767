"""``manage.py runscheduler``: sample, plan and cap the workload once a second.

Runs as root (it owns the cgroup). SIGTERM or SIGINT stop it cleanly: the
samples are flushed, the group is left at the safe cap
(``limits.safe_cap``), the live state says "stopped", and it exits 0.
docs/runscheduler.md describes what it does each second.

Only one runscheduler may run per data directory and per cgroup group: each
is guarded by an exclusive ``flock`` held for the life of the process, and a
second start is refused before it touches the database or the group.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from cpusched import config
from scheduling.attach import rules_from_params, scan
from scheduling.cgroups import Backend, CgroupError
from scheduling.control import AlreadyRunning, InstanceLock, group_lock_path, take_lock
from scheduling.management.commands.cgroup import add_backend_options, open_configured
from scheduling.service import Scheduler

logger = logging.getLogger("scheduling.runscheduler")

SAMPLER_NICE = -5
"""The sampler runs ahead of the workload it throttles (nice -5)."""


class Command(BaseCommand):
    help = "Sample the machine, plan the cap and write it to the managed cgroup"
    # A daemon needs no URL or admin checks; skipping them keeps the web
    # modules (and their memory) out of this process.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_backend_options(parser)
        parser.add_argument(
            "--duration",
            type=float,
            metavar="SECONDS",
            help="Stop by itself after this long (tests and benchmarks)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with ExitStack() as locks:
            locks.enter_context(lock_data_dir(Path(settings.DATA_DIR)))
            params = load_params()
            stop = stop_on_signals()
            raise_priority()
            backend = open_configured(options)
            if backend.kind != "dry-run":
                locks.enter_context(lock_group(backend))
            prepare(backend)
            stay_outside(backend)

            scheduler = Scheduler(params, backend)
            scheduler.attach_scan = lambda: attach_by_rules(scheduler, backend)
            logger.info("Running: %s", scheduler.start())
            ticks = scheduler.run(stop, options["duration"])
            scheduler.stop()
        self.stdout.write(f"Stopped after {ticks} ticks")


def lock_data_dir(data_dir: Path) -> InstanceLock:
    """One scheduler per database: a second one would double every sample."""
    path = data_dir / "run" / "runscheduler.lock"
    try:
        return take_lock(path)
    except AlreadyRunning as held:
        raise CommandError(
            f"runscheduler is already running for this data directory "
            f"{data_dir} ({held}); stop it first"
        ) from None
    except OSError as err:
        raise CommandError(
            f"Cannot take the lock {path} ({err}); the data directory must be "
            "writable by the user running runscheduler"
        ) from err


def lock_group(backend: Backend) -> InstanceLock:
    """One scheduler per group: two would rewrite each other's cap every second."""
    path = group_lock_path(backend.path)
    try:
        return take_lock(path)
    except AlreadyRunning as held:
        raise CommandError(
            f"runscheduler already controls cgroup group {backend.path} ({held}); "
            "stop it first, or give this one another cgroup.group"
        ) from None
    except OSError as err:
        raise CommandError(
            f"Cannot take the group lock {path} ({err}); run runscheduler as root "
            "so it can write to /run/lock"
        ) from err


def load_params() -> dict[str, Any]:
    """The effective parameters; a missing database is an operator mistake."""
    try:
        return config.snapshot()
    except DatabaseError as err:
        raise CommandError(
            f"Cannot read the database ({err}); run 'manage.py migrate' first"
        ) from err
    except config.ConfigError as err:
        raise CommandError(f"Bad configuration: {err}") from err


def stop_on_signals() -> threading.Event:
    """An Event set by SIGTERM or SIGINT: the loop finishes its tick and stops."""
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        logger.info("Got %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def raise_priority() -> None:
    """Run at nice -5 so a saturated workload cannot starve the sampler."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) > SAMPLER_NICE:
            os.setpriority(os.PRIO_PROCESS, 0, SAMPLER_NICE)
    except OSError as err:
        logger.warning(
            "Could not raise the scheduler's priority to nice %d (%s); run it as "
            "root so a busy workload cannot delay its ticks",
            SAMPLER_NICE,
            err,
        )


def prepare(backend: Backend) -> None:
    """Create the group; on failure keep monitoring (the loop retries and alerts)."""
    try:
        for note in backend.prepare():
            logger.info("%s", note)
    except CgroupError as err:
        logger.error("Cannot prepare the managed group: %s", err)


def stay_outside(backend: Backend) -> None:
    """The scheduler must never throttle itself: leave the group if inside."""
    if backend.kind == "dry-run":
        return
    try:
        if os.getpid() in backend.members():
            backend.detach(os.getpid())
            logger.warning("The scheduler was inside %s; moved it out", backend.path)
    except CgroupError as err:
        logger.error("Cannot check that the scheduler is outside the group: %s", err)


def attach_by_rules(scheduler: Scheduler, backend: Backend) -> None:
    """Attach processes matching cgroup.attach_* (current parameters)."""
    try:
        rules = rules_from_params(scheduler.params)
    except ValueError as err:
        logger.warning("Attach rules ignored: %s", err)
        return
    scan(backend, rules)

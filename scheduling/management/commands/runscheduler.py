"""``manage.py runscheduler``: sample, plan and cap the workload once a second.

Runs as root (it owns the cgroup). SIGTERM or SIGINT stop it cleanly: the
samples are flushed, the group is left at the safe cap
(``limits.safe_cap``), the live state says "stopped", and it exits 0.
docs/runscheduler.md describes what it does each second.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from cpusched import config
from scheduling.attach import rules_from_params, scan
from scheduling.cgroups import Backend, CgroupError
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
        params = load_params()
        stop = stop_on_signals()
        raise_priority()
        backend = open_configured(options)
        prepare(backend)
        stay_outside(backend)

        scheduler = Scheduler(params, backend)
        scheduler.attach_scan = lambda: attach_by_rules(scheduler, backend)
        logger.info("Running: %s", scheduler.start())
        ticks = scheduler.run(stop, options["duration"])
        scheduler.stop()
        self.stdout.write(f"Stopped after {ticks} ticks")


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

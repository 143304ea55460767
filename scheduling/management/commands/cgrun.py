"""``manage.py cgrun -- COMMAND ARGS...``: run a program inside the managed group.

This process moves itself into the group, then ``exec``s the command, so the
command and every child it forks start inside and stay there (membership is
inherited). Exit status is the command's own; 127 if it cannot be started.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from scheduling.cgroups import Backend, CgroupError
from scheduling.management.commands.cgroup import (
    add_backend_options,
    ensure_group,
    open_configured,
)


class Command(BaseCommand):
    help = "Run COMMAND inside the managed cgroup: manage.py cgrun -- COMMAND ARGS..."
    # Start fast and never depend on the web side: no URL or model checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_backend_options(parser)
        parser.add_argument(
            "argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS ...]"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        argv = command_line(options["argv"])
        backend = open_configured(options)
        self.enter(backend, options["verbosity"])

        # Nothing of Django may leak into the program: no open database.
        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execvp(argv[0], argv)
        except OSError as err:
            raise CommandError(
                f"Cannot run {argv[0]!r}: {err.strerror}; check the name and PATH",
                returncode=127,
            ) from err

    def enter(self, backend: Backend, verbosity: int) -> None:
        """Move this process into the group (dry run: say it is not capped)."""
        if backend.kind == "dry-run":
            reason = backend.degraded_reason or "cgroup.backend is dry-run"
            self.stderr.write(f"Not capped: {reason}")
            return
        try:
            notes = ensure_group(backend)
            backend.attach(os.getpid())
        except CgroupError as err:
            raise CommandError(str(err)) from err
        if verbosity >= 2:
            for note in notes + [f"Running inside {backend.path}"]:
                self.stderr.write(note)


def command_line(words: list[str]) -> list[str]:
    """The program and its arguments, without the separating '--'."""
    if words[:1] == ["--"]:
        words = words[1:]
    if not words:
        raise CommandError(
            "Give the program to run after '--', like: manage.py cgrun -- make -j2"
        )
    return words

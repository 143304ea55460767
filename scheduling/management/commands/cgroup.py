"""``manage.py cgroup attach|detach|list|status``: the managed group by hand.

Uses ``cgroup.backend``, ``cgroup.group`` and ``cgroup.period_us`` from the
configuration (environment, config.ini, database), so it acts on the group a
``runscheduler`` with the same environment controls; ``--backend`` and
``--group`` override them for one call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from cpusched import config
from scheduling.cgroups import (
    KINDS,
    Backend,
    CgroupError,
    describe,
    open_from_params,
    process_name,
)


def add_backend_options(parser: CommandParser) -> None:
    """--backend, --group and --root, shared with cgrun."""
    parser.add_argument(
        "--backend", choices=KINDS, help="Override cgroup.backend for this call"
    )
    parser.add_argument(
        "--group", help="Override cgroup.group (relative to the cgroup mount)"
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="Where the cgroup hierarchies are (default: found in /proc/self/mounts)",
    )


def open_configured(options: dict[str, Any]) -> Backend:
    """The backend the configuration names, with the command-line overrides."""
    try:
        params = config.snapshot()
    except DatabaseError as err:
        # A fresh install may have no tables yet; the environment and
        # config.ini still say which group is meant.
        sys.stderr.write(f"Database not readable ({err}); using env and file only\n")
        params = config.snapshot(use_database=False)
    try:
        return open_from_params(
            params,
            backend=options.get("backend"),
            group=options.get("group"),
            root=options.get("root"),
        )
    except CgroupError as err:
        raise CommandError(str(err)) from err


def ensure_group(backend: Backend) -> list[str]:
    """Create the group if it is missing; the notes prepare() made."""
    if backend.exists():
        return []
    return backend.prepare()


class Command(BaseCommand):
    help = "Attach, detach and list processes of the managed cgroup; show its state"
    # Start fast and never depend on the web side: no URL or model checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        add_backend_options(parser)
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        attach = sub.add_parser("attach", help="Move processes (all threads) in")
        attach.add_argument("pids", nargs="+", type=int, metavar="PID")
        detach = sub.add_parser("detach", help="Move processes out, next to it")
        detach.add_argument("pids", nargs="+", type=int, metavar="PID")
        sub.add_parser("list", help="The processes in the group")
        status = sub.add_parser("status", help="Backend, path, cap, usage, members")
        status.add_argument("--json", action="store_true", help="Print JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        backend = open_configured(options)
        action = options["action"]
        try:
            if action == "status":
                self.status(backend, options["json"])
            elif action == "list":
                self.list(backend)
            else:
                self.move(backend, action, options["pids"])
        except CgroupError as err:
            raise CommandError(str(err)) from err

    def move(self, backend: Backend, action: str, pids: list[int]) -> None:
        if action == "attach":
            for note in ensure_group(backend):
                self.stdout.write(note)
        failed = []
        for pid in pids:
            name = process_name(pid)
            try:
                getattr(backend, action)(pid)
            except CgroupError as err:
                self.stderr.write(str(err))
                failed.append(pid)
                continue
            where = (
                backend.path if action == "attach" else "out of " + str(backend.path)
            )
            self.stdout.write(
                f"{action.capitalize()}ed {pid} ({name}) {_to(action)}{where}"
            )
        if failed:
            raise CommandError(f"Could not {action} {', '.join(map(str, failed))}")

    def list(self, backend: Backend) -> None:
        if not backend.exists():
            self.stdout.write(f"{backend.path} does not exist yet")
            return
        for pid in backend.members():
            self.stdout.write(f"{pid:>7}  {process_name(pid):<16} {_cmdline(pid)}")

    def status(self, backend: Backend, as_json: bool) -> None:
        state = collect_status(backend)
        if as_json:
            self.stdout.write(json.dumps(state, indent=2))
            return
        for line in format_status(state):
            self.stdout.write(line)


def _to(action: str) -> str:
    return "into " if action == "attach" else ""


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def collect_status(backend: Backend) -> dict[str, Any]:
    """What ``status`` shows, as plain data."""
    state: dict[str, Any] = {
        "backend": backend.kind,
        "path": str(backend.path),
        "cpus": backend.cpus,
        "exists": backend.exists(),
        "degraded_reason": backend.degraded_reason,
    }
    if not state["exists"]:
        return state
    cap = backend.read_cap()
    members = backend.members()
    state.update(
        cap_percent=cap.percent,
        quota_us=cap.quota_us,
        period_us=cap.period_us,
        usage_usec=backend.usage_usec(),
        cpu_stat=backend.cpu_stat(),
        members=members,
    )
    return state


def format_status(state: dict[str, Any]) -> list[str]:
    """``collect_status`` as aligned lines for a terminal."""
    lines = [f"backend   {state['backend']}", f"path      {state['path']}"]
    lines.append(f"cpus      {state['cpus']:g} (100 % = all of them busy)")
    if state["degraded_reason"]:
        lines.append(f"degraded  {state['degraded_reason']}")
    if not state["exists"]:
        lines.append("group     not created yet (runscheduler or cgrun creates it)")
        return lines
    lines.append(f"cap       {_cap_text(state)}")
    lines.append(f"usage     {state['usage_usec'] / 1e6:.3f} s of CPU since created")
    stat = state["cpu_stat"]
    if "nr_periods" in stat:
        throttled = f"{stat.get('nr_throttled', 0)} of {stat['nr_periods']} periods"
        lines.append(f"throttled {throttled}")
    members = state["members"]
    lines.append(
        f"members   {len(members)}{': ' if members else ''}{describe(members)}"
    )
    return lines


def _cap_text(state: dict[str, Any]) -> str:
    if state["quota_us"] is None:
        return f"unlimited (max, period {state['period_us']} us)"
    return (
        f"{state['cap_percent']:g} % of the machine "
        f"({state['quota_us']} us per {state['period_us']} us)"
    )

"""``manage.py simulate --trace FILE.csv``: replay a CPU trace offline.

Runs the same windows, planner and policy as ``runscheduler`` in simulated
time (see :mod:`scheduling.simulator`) with the effective configuration,
changed for this run only by ``--mode`` and ``--set key=value``. A trace
spanning more than ``--max-days`` days (default 120) is refused before any
per-second memory is taken.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from cpusched import config
from scheduling.policy import MODES
from scheduling.simulator import (
    DEMAND_MODELS,
    MAX_DAYS,
    Summary,
    TraceError,
    check_span,
    load_trace,
    simulate,
    write_report,
    write_timeline,
)

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Replay a CPU trace through the planner and policy in simulated time"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--trace", required=True, type=Path, help="Trace CSV")
        parser.add_argument("--mode", choices=MODES, help="Override scheduler.mode")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Override any parameter for this run (repeatable)",
        )
        parser.add_argument(
            "--scale",
            type=float,
            default=1.0,
            help="Multiply demand by this factor (clipped at 100 %%)",
        )
        parser.add_argument(
            "--demand-model",
            choices=DEMAND_MODELS,
            default="drop",
            help="Unserved demand is lost (drop) or queued and served later (defer)",
        )
        parser.add_argument("--timeline", type=Path, help="Write t,demand,cap,usage")
        parser.add_argument("--report", type=Path, help="Write an HTML report")
        parser.add_argument(
            "--json", action="store_true", help="Print the summary as JSON only"
        )
        parser.add_argument(
            "--sort", action="store_true", help="Sort rows by timestamp first"
        )
        parser.add_argument(
            "--max-days",
            type=float,
            default=MAX_DAYS,
            help=f"Refuse a trace spanning more days than this (default {MAX_DAYS:g}); "
            "memory grows with every simulated second",
        )
        parser.add_argument(
            "--dedup",
            action="store_true",
            help="Keep the last row of each repeated timestamp",
        )

    def handle(self, *args: Any, **options: Any) -> str | None:
        params = self._params(options)
        if options["scale"] <= 0:
            raise CommandError(f"--scale must be above 0, got {options['scale']!r}")
        if not options["max_days"] > 0:
            raise CommandError(
                f"--max-days must be above 0, got {options['max_days']!r}"
            )
        trace = self._trace(options)

        result = simulate(
            trace,
            params,
            scale=options["scale"],
            demand_model=options["demand_model"],
        )

        self._write_files(result, options)
        if options["json"]:
            self.stdout.write(json.dumps(result.summary.as_dict(), indent=2))
            return None
        self._print(result.summary)
        return None

    def _params(self, options: dict[str, Any]) -> dict[str, Any]:
        """Effective configuration with this run's overrides, validated."""
        overrides = dict(_pair(item) for item in options["set"])
        if options["mode"]:
            overrides["scheduler.mode"] = options["mode"]
        try:
            return config.snapshot(overrides=overrides)
        except config.ConfigError as err:
            raise CommandError(f"Invalid --set: {err}") from None
        except DatabaseError as err:
            # A fresh checkout may have no tables; a replay needs none.
            logger.warning("Database not readable (%s); using env and file", err)
            try:
                return config.snapshot(overrides=overrides, use_database=False)
            except config.ConfigError as inner:
                raise CommandError(f"Invalid --set: {inner}") from None

    def _trace(self, options: dict[str, Any]):
        try:
            trace = load_trace(
                options["trace"], sort=options["sort"], dedup=options["dedup"]
            )
            check_span(trace, options["max_days"])
            return trace
        except TraceError as err:
            raise CommandError(str(err)) from None
        except OSError as err:
            raise CommandError(f"Cannot read trace {options['trace']}: {err}") from None

    def _write_files(self, result, options: dict[str, Any]) -> None:
        for key, writer in (("timeline", write_timeline), ("report", write_report)):
            path = options[key]
            if path is None:
                continue
            try:
                with path.open("w", encoding="utf-8", newline="") as out:
                    writer(result, out)
            except OSError as err:
                raise CommandError(f"Cannot write --{key} {path}: {err}") from None

    def _print(self, s: Summary) -> None:
        verdict = "no rule broken" if s.break_s == 0 else "RULES BROKEN"
        lines = [
            f"{s.source}: {s.simulated_s} simulated seconds, mode {s.mode}, "
            f"scale {s.scale:g}, demand model {s.demand_model}",
            f"demanded  {s.demanded_cpu_s:,.1f} CPU-s",
            f"delivered {s.delivered_cpu_s:,.1f} CPU-s "
            f"({100 * s.delivered_ratio:.2f} % of demand)",
            f"highest average-window mean {s.max_avg_mean:.3f} % "
            f"(limit {s.avg_limit:g} %)",
            f"highest peak-window count {s.max_peak_count} s "
            f"(budget {s.peak_budget_s} s)",
            f"seconds breaking a rule {s.break_s} "
            f"(average {s.avg_break_s}, peak {s.peak_break_s}): {verdict}",
            f"seconds below the floor {s.below_floor_s}",
        ]
        if s.demand_model == "defer":
            lines.append(f"backlog left {s.backlog_cpu_s:,.1f} CPU-s")
        self.stdout.write("\n".join(lines))


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"--set expects KEY=VALUE, got {item!r}")
    return key.strip(), value.strip()

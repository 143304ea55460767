"""Replay a CPU trace through the engine in simulated time.

A trace is a CSV file with the header ``timestamp,cpu_percent`` and an
optional ``background_percent`` column: ISO-8601 timestamps (naive ones are
UTC), any interval, each value holding until the next row and the last one
for the trace's median interval. ``cpu_percent`` is the managed workload's
demand and ``background_percent`` the use outside the managed group, both as
percent of the whole machine.

Each simulated second the engine decides a whole-machine cap; the managed
group may use the cap minus the background (the controller subtracts what
runs outside the group, and the simulator lets it know the background of
the current second exactly); the whole machine then uses the served demand
plus the background, and that is what the engine records. After each
second the background feeds the same :class:`BackgroundEstimate` the service
keeps, and the engine plans future seconds for it as in the service
(:meth:`Engine.set_background`).

Unserved demand is lost (``drop``) or queued and served as soon as the cap
allows (``defer``). The windows start empty: the machine was idle before
the trace. Rule breaks are recomputed from the usage timeline by
:func:`check_rules`, which shares no code with the planner.

Every simulated second costs memory (the timeline arrays and the windows),
so a trace may span at most :data:`MAX_DAYS` days unless the caller allows
more (:func:`check_span`, ``--max-days``): two rows a year apart would
otherwise take about 600 MB before anything is printed.

Errors: :class:`TraceError` (bad input, naming the file and the line).
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import statistics
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from scheduling.background import BackgroundEstimate
from scheduling.engine import Engine, limits_from_params

logger = logging.getLogger(__name__)

COLUMNS = ("timestamp", "cpu_percent", "background_percent")
DEMAND_MODELS = ("drop", "defer")
CHECK_UNITS = 1_000_000
"""Units per percent in :func:`check_rules`: exact integer window sums."""
MAX_DAYS = 120.0
"""Default longest span a replay accepts (``--max-days``), in days."""


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the line."""


@dataclass
class Trace:
    """Rows of a trace: UNIX seconds and percent values, in time order."""

    times: list[int]
    demand: list[float]
    background: list[float] | None = None
    source: str = "trace"
    lines: list[int] = field(default_factory=list)
    """The file line of each row (empty for a trace built in code)."""

    def hold_last_s(self) -> int:
        """How long the last row holds: the median interval (1 s if alone)."""
        if len(self.times) < 2:
            return 1
        steps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        return max(1, round(statistics.median(steps)))

    def duration_s(self) -> int:
        return self.times[-1] - self.times[0] + self.hold_last_s()


@dataclass
class _Row:
    line: int
    ts: int
    text: str
    cpu: float
    background: float


def parse_trace(
    lines: Iterable[str],
    *,
    sort: bool = False,
    dedup: bool = False,
    source: str = "trace",
) -> Trace:
    """Read and validate a trace; raise :class:`TraceError` naming the line.

    Rows must be in strictly increasing time order unless ``sort`` (stable
    sort by time) or ``dedup`` (keep the last row of each timestamp) says
    otherwise.
    """
    reader = csv.reader(lines)
    header = next(reader, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(reader, None)
    if header is None:
        raise TraceError(
            f"{source}: empty file, expected the header 'timestamp,cpu_percent'"
        )
    columns = _columns(header, reader.line_num, source)

    rows = [
        _row(cells, reader.line_num, columns, source)
        for cells in reader
        if _filled(cells)
    ]
    if not rows:
        raise TraceError(
            f"{source}: no data rows after the header on line {reader.line_num}"
        )
    rows = _ordered(rows, sort, dedup, source)

    background = (
        [r.background for r in rows] if "background_percent" in columns else None
    )
    return Trace(
        [r.ts for r in rows],
        [r.cpu for r in rows],
        background,
        source,
        [r.line for r in rows],
    )


def load_trace(path: str | Path, *, sort: bool = False, dedup: bool = False) -> Trace:
    """Read a trace file (see :func:`parse_trace`).

    A missing file, a directory or text that is not UTF-8 raise
    :class:`TraceError`; other ``OSError`` pass through.
    """
    path = Path(path)
    if not path.exists():
        raise TraceError(f"Trace file {str(path)!r} does not exist")
    if path.is_dir():
        raise TraceError(f"Trace {str(path)!r} is a directory, expected a CSV file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return parse_trace(handle, sort=sort, dedup=dedup, source=path.name)
    except UnicodeDecodeError:
        raise TraceError(_not_utf8(path)) from None


def _not_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 sits, found line by line so a
    large file is never held whole."""
    offset = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = offset + err.start
                return (
                    f"{path.name} line {number} (byte {bad}): byte "
                    f"0x{raw[err.start]:02x} is not UTF-8: save the trace as "
                    "UTF-8 text"
                )
            offset += len(raw)
    return f"{path.name}: not UTF-8 text: save the trace as UTF-8 text"


def check_span(trace: Trace, max_days: float = MAX_DAYS) -> None:
    """Refuse a trace spanning more than ``max_days`` days, before any
    per-second memory is taken."""
    span_s = trace.duration_s()
    if span_s <= max_days * 86_400:
        return
    first, last = _where(trace, 0), _where(trace, -1)
    raise TraceError(
        f"{trace.source}: the trace covers {_days(span_s)} ({span_s:,} simulated "
        f"seconds): rows from {first} to {last}, the last one held for "
        f"{_days(trace.hold_last_s())} (the median interval); at most "
        f"{max_days:g} days are simulated: raise the limit with --max-days "
        "(memory grows with every simulated second) or split the trace"
    )


def _days(seconds: int) -> str:
    if seconds < 86_400:
        return f"{seconds:,} s"
    return f"{seconds / 86_400:,.1f} days"


def _where(trace: Trace, index: int) -> str:
    when = _iso(trace.times[index])
    if not trace.lines:
        return when
    return f"{when} (line {trace.lines[index]})"


def _filled(cells: list[str]) -> bool:
    return any(cell.strip() for cell in cells)


def _columns(header: list[str], line: int, source: str) -> dict[str, int]:
    names = [cell.strip().lstrip("\ufeff").lower() for cell in header]
    for name in names:
        if name not in COLUMNS:
            raise TraceError(
                f"{source} line {line}: unknown column {name!r}, expected the header "
                "'timestamp,cpu_percent' and optionally 'background_percent'"
            )
    if "timestamp" not in names or "cpu_percent" not in names:
        raise TraceError(
            f"{source} line {line}: missing header, expected 'timestamp,cpu_percent' "
            f"but found {','.join(header)!r}"
        )
    return {name: names.index(name) for name in names}


def _row(cells: list[str], line: int, columns: dict[str, int], source: str) -> _Row:
    where = f"{source} line {line}"
    if len(cells) != len(columns):
        raise TraceError(f"{where}: expected {len(columns)} values, found {len(cells)}")
    text = cells[columns["timestamp"]].strip()
    ts = _timestamp(text, where)
    cpu = _percent(cells[columns["cpu_percent"]], "cpu_percent", where)
    background = 0.0
    if "background_percent" in columns:
        raw = cells[columns["background_percent"]]
        background = _percent(raw, "background_percent", where)
    return _Row(line, ts, text, cpu, background)


def _timestamp(text: str, where: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(
            f"{where}: timestamp {text!r} is not ISO-8601 (e.g. 2014-02-14T14:30:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def _percent(raw: str, name: str, where: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise TraceError(f"{where}: {name} {raw.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise TraceError(f"{where}: {name} {raw.strip()!r} is not a finite number")
    if value < 0:
        raise TraceError(f"{where}: {name} {value!r} is negative")
    if value > 100:
        raise TraceError(f"{where}: {name} {value!r} is over 100")
    return value


def _ordered(rows: list[_Row], sort: bool, dedup: bool, source: str) -> list[_Row]:
    """Check (or, when asked, establish) strictly increasing timestamps."""
    if sort:
        rows = sorted(rows, key=lambda r: r.ts)
    if dedup:
        last = {r.ts: r for r in rows}
        rows = [r for r in rows if last[r.ts] is r]

    for before, row in zip(rows, rows[1:], strict=False):
        if row.ts == before.ts:
            raise TraceError(
                f"{source} line {row.line}: timestamp {row.text!r} repeats line "
                f"{before.line} (--dedup keeps the last row of each timestamp)"
            )
        if row.ts < before.ts:
            raise TraceError(
                f"{source} line {row.line}: timestamp {row.text!r} is earlier than "
                f"line {before.line} ({before.text!r}); --sort sorts the rows"
            )
    return rows


# Replay --------------------------------------------------------------------


@dataclass
class RuleCheck:
    """Rule breaks recomputed from a usage timeline.

    A second "breaks" when the window ending at it is over the rule's own
    limit (not the planner's margin-reduced budget).
    """

    avg_break_s: int
    peak_break_s: int
    break_s: int
    max_avg_mean: float
    max_peak_count: int
    avg_mean: array = field(repr=False)
    peak_count: array = field(repr=False)


@dataclass
class Summary:
    """What a replay did, in numbers (CPU-seconds: whole-machine seconds)."""

    source: str
    mode: str
    scale: float
    demand_model: str
    start: int
    simulated_s: int
    demanded_cpu_s: float
    delivered_cpu_s: float
    delivered_ratio: float
    backlog_cpu_s: float
    max_avg_mean: float
    max_peak_count: int
    break_s: int
    avg_break_s: int
    peak_break_s: int
    below_floor_s: int
    avg_limit: float
    peak_budget_s: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Result:
    """A replay's summary and its per-second timeline."""

    summary: Summary
    demand: array = field(repr=False)
    cap: array = field(repr=False)
    usage: array = field(repr=False)
    check: RuleCheck = field(repr=False)


def expand(
    trace: Trace, scale: float = 1.0
) -> tuple[list[tuple[float, float, int]], int]:
    """Rows as ``(demand, background, seconds)`` runs, demand scaled and clipped."""
    runs = []
    ends = [*trace.times[1:], trace.times[-1] + trace.hold_last_s()]
    background = trace.background or [0.0] * len(trace.times)
    for ts, end, cpu, bg in zip(
        trace.times, ends, trace.demand, background, strict=True
    ):
        runs.append((min(100.0, cpu * scale), bg, end - ts))
    return runs, trace.times[0]


def simulate(
    trace: Trace,
    params: Mapping[str, Any],
    *,
    scale: float = 1.0,
    demand_model: str = "drop",
    engine: Engine | None = None,
) -> Result:
    """Replay ``trace`` second by second through an :class:`Engine`.

    ``engine`` defaults to one built from ``params`` at the trace's start
    with empty windows; benches pass their own to compare baselines.
    """
    if demand_model not in DEMAND_MODELS:
        raise ValueError(
            f"Unknown demand model {demand_model!r}, expected drop or defer"
        )
    runs, start = expand(trace, scale)
    if engine is None:
        engine = Engine.from_params(params, now=start)
    demand, cap, usage, totals = _replay(engine, runs, start, demand_model == "defer")

    limits = limits_from_params(params)
    check = check_rules(
        usage,
        limits.avg_window_s,
        limits.avg_limit,
        limits.peak_window_s,
        limits.peak_threshold,
        limits.peak_budget_s,
    )
    summary = _summary(trace, params, scale, demand_model, start, totals, check)
    logger.debug(
        "Simulated %d s of %s: delivered %.1f%%, %d break seconds",
        summary.simulated_s,
        trace.source,
        100 * summary.delivered_ratio,
        summary.break_s,
    )
    return Result(summary, demand, cap, usage, check)


def _replay(
    engine: Engine, runs: list[tuple[float, float, int]], start: int, defer: bool
) -> tuple[array, array, array, tuple[float, float, float, int]]:
    """The per-second loop, kept flat because it runs millions of times."""
    total = sum(seconds for _, _, seconds in runs)
    demand_out = array("d", bytes(8 * total))
    cap_out = array("d", bytes(8 * total))
    usage_out = array("d", bytes(8 * total))
    cap_for = engine.cap_for
    record = engine.record
    policy = engine.policy
    follow = _background_follower(engine, runs)
    demanded = served_total = backlog = 0.0
    below = 0
    i = 0
    t = start
    for want, bg, seconds in runs:
        for _ in range(seconds):
            cap = cap_for(t)
            if cap < policy.floor - 1e-9:
                below += 1
            room = cap - bg if cap > bg else 0.0
            pending = want + backlog if defer else want
            served = pending if pending < room else room
            if served > 100.0 - bg:
                served = 100.0 - bg
            if defer:
                backlog = pending - served
            use = served + bg
            record(t, use)
            if follow is not None:
                follow(t, bg)
            demand_out[i] = want
            cap_out[i] = cap
            usage_out[i] = use
            served_total += served
            i += 1
            t += 1
        demanded += want * seconds
    return demand_out, cap_out, usage_out, (demanded, served_total, backlog, below)


def _background_follower(engine: Engine, runs: list[tuple[float, float, int]]) -> Any:
    """The per-second background step of the service, or None when idle.

    The estimate never exceeds the largest background, and an estimate at
    or below the floor never raises the plan, so without such background the
    replay skips the estimate and stays as fast as before.
    """
    top = max((bg for _, bg, _ in runs), default=0.0)
    if top <= engine.planner.limits.floor:
        return None
    estimate = BackgroundEstimate()
    add = estimate.add
    set_background = engine.set_background

    def follow(ts: int, bg: float) -> None:
        set_background(add(ts, bg))

    return follow


def _summary(
    trace: Trace,
    params: Mapping[str, Any],
    scale: float,
    demand_model: str,
    start: int,
    totals: tuple[float, float, float, int],
    check: RuleCheck,
) -> Summary:
    demanded, served, backlog, below = totals
    limits = limits_from_params(params)
    return Summary(
        source=trace.source,
        mode=str(params.get("scheduler.mode", "balanced")),
        scale=scale,
        demand_model=demand_model,
        start=start,
        simulated_s=len(check.avg_mean),
        demanded_cpu_s=demanded / 100.0,
        delivered_cpu_s=served / 100.0,
        delivered_ratio=served / demanded if demanded > 0 else 1.0,
        backlog_cpu_s=backlog / 100.0,
        max_avg_mean=check.max_avg_mean,
        max_peak_count=check.max_peak_count,
        break_s=check.break_s,
        avg_break_s=check.avg_break_s,
        peak_break_s=check.peak_break_s,
        below_floor_s=below,
        avg_limit=limits.avg_limit,
        peak_budget_s=limits.peak_budget_s,
    )


def check_rules(
    usage: Iterable[float],
    avg_window_s: int,
    avg_limit: float,
    peak_window_s: int,
    peak_threshold: float,
    peak_budget_s: int,
) -> RuleCheck:
    """Recompute both rules from whole-machine use, one window per second.

    Sums are exact integers of 1e-6 % so a schedule that spends its budget
    to the last unit is not flagged by float rounding. Seconds before the
    timeline count as idle.
    """
    values = [round(u * CHECK_UNITS) for u in usage]
    peaks = [1 if u >= peak_threshold else 0 for u in usage]
    budget = round(avg_limit * CHECK_UNITS) * avg_window_s
    means = array("d", bytes(8 * len(values)))
    counts = array("l", bytes(array("l").itemsize * len(values)))
    running = 0
    peak_running = 0
    avg_breaks = peak_breaks = both = 0
    for i, value in enumerate(values):
        running += value - (values[i - avg_window_s] if i >= avg_window_s else 0)
        peak_running += peaks[i] - (
            peaks[i - peak_window_s] if i >= peak_window_s else 0
        )
        over_avg = running > budget
        over_peak = peak_running > peak_budget_s
        avg_breaks += over_avg
        peak_breaks += over_peak
        both += over_avg or over_peak
        means[i] = running / CHECK_UNITS / avg_window_s
        counts[i] = peak_running
    return RuleCheck(
        avg_break_s=avg_breaks,
        peak_break_s=peak_breaks,
        break_s=both,
        max_avg_mean=max(means, default=0.0),
        max_peak_count=max(counts, default=0),
        avg_mean=means,
        peak_count=counts,
    )


# Output ---------------------------------------------------------------------


def write_timeline(result: Result, out: IO[str]) -> None:
    """One CSV row per simulated second: ``t,demand,cap,usage``.

    ``t`` is the UNIX second; values are written exactly (``repr``) so a
    recomputation from the file sees what the engine saw.
    """
    out.write("t,demand,cap,usage\n")
    t = result.summary.start
    chunk: list[str] = []
    for d, c, u in zip(result.demand, result.cap, result.usage, strict=True):
        chunk.append(f"{t},{d!r},{c!r},{u!r}\n")
        t += 1
        if len(chunk) >= 10_000:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk))


def read_timeline(handle: IO[str]) -> list[tuple[int, float, float, float]]:
    """Rows of a timeline written by :func:`write_timeline`."""
    reader = csv.reader(handle)
    header = next(reader)
    if header != ["t", "demand", "cap", "usage"]:
        raise TraceError(f"timeline line 1: unexpected header {','.join(header)!r}")
    return [(int(t), float(d), float(c), float(u)) for t, d, c, u in reader]


def timeline_text(result: Result) -> str:
    buffer = io.StringIO()
    write_timeline(result, buffer)
    return buffer.getvalue()


# HTML report ----------------------------------------------------------------

CHART_POINTS = 1000
"""Points per chart line: enough to see a day's shape in a month of data."""


def _buckets(values: array, size: int, how: str) -> list[float]:
    """Downsample by ``size`` seconds per point, keeping the mean or the max."""
    out = []
    for i in range(0, len(values), size):
        part = values[i : i + size]
        out.append(max(part) if how == "max" else math.fsum(part) / len(part))
    return out


def _svg_chart(
    title: str,
    lines: list[tuple[str, str, list[float]]],
    top: float,
    refs: list[tuple[str, float]],
    axis: tuple[str, str],
) -> str:
    """One inline SVG line chart with horizontal reference lines."""
    width, height, pad = 960, 200, 40
    inner_w, inner_h = width - 2 * pad, height - 2 * pad
    top = top or 1.0

    def y(v: float) -> float:
        return pad + inner_h * (1 - min(v, top) / top)

    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{title}">',
        f'<rect x="{pad}" y="{pad}" width="{inner_w}" height="{inner_h}" '
        'fill="#fafafa" stroke="#ccc"/>',
        f'<text x="{pad}" y="{pad - 12}" class="t">{title}</text>',
        f'<text x="{pad - 6}" y="{pad + 4}" class="a" text-anchor="end">{top:g}</text>',
        f'<text x="{pad - 6}" y="{pad + inner_h}" class="a" text-anchor="end">0</text>',
        f'<text x="{pad}" y="{height - 14}" class="a">{axis[0]}</text>',
        f'<text x="{width - pad}" y="{height - 14}" class="a" '
        f'text-anchor="end">{axis[1]}</text>',
    ]
    for label, value in refs:
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}" stroke="#c00" stroke-dasharray="6 4"/>'
            f'<text x="{width - pad - 4}" y="{y(value) - 4:.1f}" class="a" '
            f'text-anchor="end" fill="#c00">{label}</text>'
        )
    for n, (label, color, values) in enumerate(lines):
        step = inner_w / max(1, len(values) - 1)
        points = " ".join(
            f"{pad + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.2" '
            f'points="{points}"/>'
            f'<text x="{width - pad - 110 * (len(lines) - n)}" y="{pad - 12}" '
            f'class="a" fill="{color}">&#9632; {label}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def report_html(result: Result) -> str:
    """A self-contained HTML page: summary table and inline SVG charts."""
    s = result.summary
    size = max(1, math.ceil(len(result.usage) / CHART_POINTS))
    axis = (_iso(s.start), _iso(s.start + s.simulated_s))
    per = f"{size} s per point"
    charts = [
        _svg_chart(
            f"CPU % of the whole machine ({per}, mean)",
            [
                ("demand", "#999", _buckets(result.demand, size, "mean")),
                ("cap", "#1f77b4", _buckets(result.cap, size, "mean")),
                ("usage", "#2ca02c", _buckets(result.usage, size, "mean")),
            ],
            100.0,
            [],
            axis,
        ),
        _svg_chart(
            f"Average-window mean CPU % ({per}, max)",
            [("rolling mean", "#9467bd", _buckets(result.check.avg_mean, size, "max"))],
            max(s.avg_limit * 1.2, s.max_avg_mean * 1.05),
            [(f"limit {s.avg_limit:g} %", s.avg_limit)],
            axis,
        ),
        _svg_chart(
            f"Peak seconds in the peak window ({per}, max)",
            [
                (
                    "peak seconds",
                    "#d62728",
                    _buckets(result.check.peak_count, size, "max"),
                )
            ],
            max(s.peak_budget_s * 1.2, s.max_peak_count * 1.05, 1.0),
            [(f"budget {s.peak_budget_s} s", float(s.peak_budget_s))],
            axis,
        ),
    ]
    rows = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in s.as_dict().items()
    )
    verdict = (
        "no rule broken" if s.break_s == 0 else f"{s.break_s} seconds broke a rule"
    )
    return _PAGE.format(
        title=html.escape(f"cpusched simulation: {s.source}"),
        verdict=html.escape(verdict),
        rows=rows,
        charts="\n".join(charts),
    )


def write_report(result: Result, out: IO[str]) -> None:
    out.write(report_html(result))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ text-align: left; padding: 2px 12px 2px 0; }}
th {{ font-weight: normal; color: #555; }}
svg {{ width: 100%; max-width: 960px; display: block; margin-bottom: 1em; }}
.t {{ font-size: 14px; }} .a {{ font-size: 11px; fill: #555; }}
</style></head>
<body>
<h1>{title}</h1>
<p><strong>{verdict}</strong></p>
<table>
{rows}
</table>
{charts}
</body></html>
"""

"""Trace replay: input validation, every mode inside the rules, outputs."""

import io
import json
from pathlib import Path

import pytest

from scheduling.simulator import (
    TraceError,
    check_span,
    load_trace,
    parse_trace,
    read_timeline,
    simulate,
    write_timeline,
)

TRACES = sorted(Path("/work/shared/traces").glob("*.csv"))

# Short windows so a few hundred trace rows cross many of them.
SHORT = {
    "limits.avg_window_hours": 0.5,
    "limits.avg_max_usage": 30.0,
    "limits.peak_window_hours": 1.0,
    "limits.peak_max_duration": 120,
    "limits.safety_margin": 0.0,
}


def recheck(rows, window_s, limit, peak_window_s, threshold, peak_budget):
    """Seconds whose window breaks a rule, from the timeline alone.

    Written apart from the simulator's own check: exact sums of usage in
    micro-percent, every window summed from a prefix array.
    """
    usage = [round(u * 1_000_000) for _, _, _, u in rows]
    peaks = [int(u >= threshold) for _, _, _, u in rows]
    prefix = [0]
    peak_prefix = [0]
    for u, p in zip(usage, peaks, strict=True):
        prefix.append(prefix[-1] + u)
        peak_prefix.append(peak_prefix[-1] + p)
    budget = round(limit * 1_000_000) * window_s
    breaks = 0
    for end in range(1, len(usage) + 1):
        used = prefix[end] - prefix[max(0, end - window_s)]
        peak = peak_prefix[end] - peak_prefix[max(0, end - peak_window_s)]
        breaks += used > budget or peak > peak_budget
    return breaks


def head(path, rows):
    lines = path.read_text().splitlines(keepends=True)
    return parse_trace(lines[: rows + 1], source=path.name)


def test_all_shared_traces_parse():
    assert len(TRACES) == 9

    for path in TRACES:
        trace = load_trace(path)

        assert trace.hold_last_s() == 300
        assert len(trace.times) in (4032, 8004)


@pytest.mark.parametrize("mode", ["aggressive", "balanced", "conservative"])
@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.stem)
def test_no_mode_breaks_a_rule_on_any_trace(path, mode):
    trace = head(path, 60)
    params = {**SHORT, "scheduler.mode": mode}

    result = simulate(trace, params, scale=3.0)
    out = io.StringIO()
    write_timeline(result, out)
    out.seek(0)
    rows = read_timeline(out)

    assert len(rows) == trace.duration_s()
    assert recheck(rows, 1800, 30.0, 3600, 95.0, 120) == 0
    assert result.summary.break_s == 0
    assert result.summary.below_floor_s == 0
    assert all(u <= c + 1e-9 for _, _, c, u in rows)


def test_the_bound_keeps_balanced_mode_inside_the_rule_under_full_demand():
    trace = parse_trace(["timestamp,cpu_percent\n", "2024-01-01T00:00:00Z,100\n"])
    trace.times.append(trace.times[0] + 4 * 3600)
    trace.demand.append(100.0)
    params = {**SHORT, "scheduler.mode": "balanced"}

    result = simulate(trace, params)

    # The 85 % tier alone would push the 30-minute mean far past 30 %.
    assert result.summary.break_s == 0
    assert result.summary.max_avg_mean == pytest.approx(30.0, abs=1e-6)
    assert result.summary.simulated_s == 4 * 3600 + 4 * 3600


def test_aggressive_delivers_the_whole_budget_under_full_demand():
    trace = parse_trace(
        [
            "timestamp,cpu_percent\n",
            "2024-01-01T00:00:00Z,100\n",
            "2024-01-01T02:00:00Z,100\n",
        ]
    )
    params = {**SHORT, "limits.absolute_min_cpu": 0.0, "scheduler.mode": "aggressive"}

    result = simulate(trace, params)

    # 4 windows of 1800 s at 30 % plus the peak seconds are the most possible.
    assert result.summary.simulated_s == 7200 + 7200
    assert result.summary.max_avg_mean == pytest.approx(30.0, abs=1e-6)
    assert result.summary.break_s == 0


def test_deferred_demand_is_served_later():
    trace = parse_trace(
        [
            "timestamp,cpu_percent\n",
            "2024-01-01T00:00:00Z,90\n",
            "2024-01-01T00:10:00Z,0\n",
            "2024-01-01T01:10:00Z,0\n",
        ]
    )
    params = {**SHORT, "scheduler.mode": "aggressive"}

    dropped = simulate(trace, params, demand_model="drop")
    deferred = simulate(trace, params, demand_model="defer")

    assert dropped.summary.delivered_ratio < 1.0
    assert deferred.summary.delivered_cpu_s > dropped.summary.delivered_cpu_s
    assert deferred.summary.break_s == 0


def background_trace():
    return parse_trace(
        [
            "timestamp,cpu_percent,background_percent\n",
            "2024-01-01T00:00:00Z,100,10\n",
            "2024-01-01T00:30:00Z,100,10\n",
        ]
    )


def test_background_use_is_subtracted_from_the_group_cap():
    params = {**SHORT, "scheduler.mode": "aggressive", "limits.absolute_min_cpu": 10.0}

    result = simulate(background_trace(), params)

    assert result.summary.break_s == 0
    assert result.summary.below_floor_s == 0
    assert all(u <= c + 1e-9 for c, u in zip(result.cap, result.usage, strict=True))
    assert min(result.usage) == 10.0


@pytest.mark.parametrize("mode", ["aggressive", "balanced", "conservative"])
def test_background_above_the_floor_never_breaks_the_rule(mode):
    params = {**SHORT, "scheduler.mode": mode, "limits.absolute_min_cpu": 5.0}

    result = simulate(background_trace(), params)

    # Before the planner followed the background it kept only the 5 % floor
    # for each future second while 10 % ran anyway: the window went over.
    assert result.summary.break_s == 0
    assert result.summary.max_avg_mean <= 30.0
    assert min(result.usage) >= 10.0


@pytest.mark.parametrize("mode", ["aggressive", "balanced", "conservative"])
@pytest.mark.parametrize("model", ["drop", "defer"])
def test_a_steady_background_of_12_percent_keeps_short_windows_in_the_rules(
    mode, model
):
    trace = parse_trace(
        [
            "timestamp,cpu_percent,background_percent\n",
            "2024-01-01T00:00:00Z,100,12\n",
            "2024-01-01T02:00:00Z,100,12\n",
        ]
    )
    params = {
        **SHORT,
        "limits.avg_window_hours": 600 / 3600,
        "scheduler.mode": mode,
        "limits.absolute_min_cpu": 5.0,
    }

    result = simulate(trace, params, demand_model=model)

    assert result.summary.break_s == 0
    assert result.summary.max_avg_mean <= 30.0
    # The budget is still spent: the group gets what the background leaves.
    assert result.summary.max_avg_mean > 29.0


def test_without_following_the_background_the_same_trace_breaks_the_rule():
    # The proof that the test above tests something: an engine that is told
    # nothing about the background (as before) lets the window go over.
    from scheduling import simulator

    params = {**SHORT, "scheduler.mode": "aggressive", "limits.absolute_min_cpu": 5.0}
    original = simulator._background_follower
    simulator._background_follower = lambda engine, runs: None
    try:
        result = simulate(background_trace(), params)
    finally:
        simulator._background_follower = original

    assert result.summary.avg_break_s > 0
    assert result.summary.max_avg_mean > 30.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file, expected the header 'timestamp,cpu_percent'"),
        ("time,cpu\n1,2\n", "line 1: unknown column 'time'"),
        ("cpu_percent\n5\n", "line 1: missing header"),
        ("timestamp,cpu_percent\n", "no data rows after the header on line 1"),
        (
            "timestamp,cpu_percent\n2024-01-01T00:00:00Z,abc\n",
            "line 2: cpu_percent 'abc' is not a number",
        ),
        (
            "timestamp,cpu_percent\n2024-01-01T00:00:00Z,-1\n",
            "line 2: cpu_percent -1.0 is negative",
        ),
        (
            "timestamp,cpu_percent\n2024-01-01T00:00:00Z,100.5\n",
            "line 2: cpu_percent 100.5 is over 100",
        ),
        (
            "timestamp,cpu_percent\nyesterday,5\n",
            "line 2: timestamp 'yesterday' is not ISO-8601",
        ),
        (
            "timestamp,cpu_percent\n2024-01-01T00:05:00Z,5\n2024-01-01T00:00:00Z,5\n",
            "line 3: timestamp '2024-01-01T00:00:00Z' is earlier than line 2",
        ),
        (
            "timestamp,cpu_percent\n2024-01-01T00:00:00Z,5\n2024-01-01T00:00:00Z,6\n",
            "line 3: timestamp '2024-01-01T00:00:00Z' repeats line 2",
        ),
        (
            "timestamp,cpu_percent\n2024-01-01T00:00:00Z,5,7\n",
            "line 2: expected 2 values, found 3",
        ),
    ],
)
def test_bad_input_is_reported_with_its_line(text, message):
    with pytest.raises(TraceError) as caught:
        parse_trace(io.StringIO(text), source="t.csv")

    assert message in str(caught.value)
    assert str(caught.value).startswith("t.csv")


def test_sorting_and_deduplication_happen_only_when_asked():
    text = (
        "timestamp,cpu_percent\n"
        "2024-01-01T00:05:00Z,5\n"
        "2024-01-01T00:00:00Z,7\n"
        "2024-01-01T00:05:00Z,9\n"
    )

    trace = parse_trace(io.StringIO(text), sort=True, dedup=True)

    assert trace.demand == [7.0, 9.0]
    assert trace.times[1] - trace.times[0] == 300
    with pytest.raises(TraceError, match="line 4: timestamp .* repeats line 2"):
        parse_trace(io.StringIO(text), sort=True)


@pytest.mark.django_db
def test_the_command_prints_a_json_summary_and_writes_files(tmp_path):
    from django.core.management import call_command

    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,cpu_percent\n2024-01-01T00:00:00Z,100\n")
    timeline = tmp_path / "timeline.csv"
    report = tmp_path / "report.html"
    out = io.StringIO()

    call_command(
        "simulate",
        "--trace",
        str(trace),
        "--mode",
        "aggressive",
        "--set",
        "limits.avg_window_hours=0.01",
        "--timeline",
        str(timeline),
        "--report",
        str(report),
        "--json",
        stdout=out,
    )

    summary = json.loads(out.getvalue())
    assert summary["mode"] == "aggressive"
    assert summary["simulated_s"] == 1
    assert summary["break_s"] == 0
    assert timeline.read_text().splitlines()[0] == "t,demand,cap,usage"
    assert "<svg" in report.read_text()
    assert "cdn" not in report.read_text().lower()


@pytest.mark.django_db
def test_the_command_names_a_bad_parameter_and_a_bad_line(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    trace = tmp_path / "t.csv"
    trace.write_text("timestamp,cpu_percent\n2024-01-01T00:00:00Z,120\n")

    with pytest.raises(CommandError, match="limits.safety_margin: 'x' is refused"):
        call_command(
            "simulate", "--trace", str(trace), "--set", "limits.safety_margin=x"
        )
    with pytest.raises(
        CommandError, match="t.csv line 2: cpu_percent 120.0 is over 100"
    ):
        call_command("simulate", "--trace", str(trace))


def never_simulate(*args, **kwargs):
    raise AssertionError("simulate() ran: the span should have been refused first")


@pytest.mark.django_db
def test_a_trace_spanning_a_year_is_refused_before_anything_is_allocated(
    tmp_path, monkeypatch
):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    monkeypatch.setattr(
        "scheduling.management.commands.simulate.simulate", never_simulate
    )
    trace = tmp_path / "year.csv"
    trace.write_text(
        "timestamp,cpu_percent\n2025-01-01T00:00:00Z,50\n\n2026-01-01T00:00:00Z,50\n"
    )

    with pytest.raises(CommandError) as caught:
        call_command("simulate", "--trace", str(trace))

    assert str(caught.value) == (
        "year.csv: the trace covers 730.0 days (63,072,000 simulated seconds): "
        "rows from 2025-01-01 00:00:00Z (line 2) to 2026-01-01 00:00:00Z (line 4), "
        "the last one held for 365.0 days (the median interval); at most 120 days "
        "are simulated: raise the limit with --max-days (memory grows with every "
        "simulated second) or split the trace"
    )


@pytest.mark.django_db
def test_max_days_raises_or_lowers_the_span_limit(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    trace = tmp_path / "t.csv"
    trace.write_text(
        "timestamp,cpu_percent\n2024-01-01T00:00:00Z,10\n2024-01-01T00:10:00Z,20\n"
    )
    out = io.StringIO()

    with pytest.raises(CommandError, match=r"covers 1,200 s .* at most 0.01 days"):
        call_command("simulate", "--trace", str(trace), "--max-days", "0.01")
    call_command(
        "simulate", "--trace", str(trace), "--max-days", "0.02", "--json", stdout=out
    )

    assert json.loads(out.getvalue())["simulated_s"] == 1200
    with pytest.raises(CommandError, match="--max-days must be above 0, got 0.0"):
        call_command("simulate", "--trace", str(trace), "--max-days", "0")


def test_check_span_accepts_a_trace_up_to_the_limit():
    trace = parse_trace(
        io.StringIO("timestamp,cpu_percent\n2024-01-01T00:00:00Z,10\n"), source="t"
    )

    check_span(trace, max_days=1 / 86_400)

    with pytest.raises(TraceError, match="t: the trace covers 1 s"):
        check_span(trace, max_days=0.5 / 86_400)


@pytest.mark.django_db
def test_a_trace_that_is_not_utf8_names_the_line_and_byte(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    trace = tmp_path / "latin1.csv"
    trace.write_bytes(
        b"timestamp,cpu_percent\n2024-01-01T00:00:00Z,10\n2024-01-01T00:00:01Z,2\xe9\n"
    )

    with pytest.raises(CommandError) as caught:
        call_command("simulate", "--trace", str(trace))

    assert str(caught.value) == (
        "latin1.csv line 3 (byte 68): byte 0xe9 is not UTF-8: save the trace as "
        "UTF-8 text"
    )


def test_a_utf8_trace_with_a_byte_order_mark_still_loads(tmp_path):
    trace = tmp_path / "bom.csv"
    trace.write_bytes(b"\xef\xbb\xbftimestamp,cpu_percent\n2024-01-01T00:00:00Z,10\n")

    assert load_trace(trace).demand == [10.0]


@pytest.mark.django_db
def test_a_missing_trace_or_a_directory_is_a_clear_error(tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    missing = tmp_path / "nope.csv"

    with pytest.raises(CommandError) as caught:
        call_command("simulate", "--trace", str(missing))
    assert str(caught.value) == f"Trace file {str(missing)!r} does not exist"

    with pytest.raises(CommandError) as caught:
        call_command("simulate", "--trace", str(tmp_path))
    assert str(caught.value) == (
        f"Trace {str(tmp_path)!r} is a directory, expected a CSV file"
    )

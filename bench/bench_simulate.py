"""Simulation speed: the O(1) planner beside a planner that re-sums windows.

Replays the first 7 days of a shared trace through the engine (planner plus
policy, every mode) and reports simulated seconds per wall second and per
CPU second of this process (the machine is shared, so CPU time shows what
one dedicated core would do). A naive planner that re-sums the whole window
every second runs over the first hour of the same trace in the same run,
and its caps are checked against the fast planner's.

Usage: ``python bench/bench_simulate.py [TRACE.csv]``
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.engine import Engine  # noqa: E402
from scheduling.planner import PEAK_GAP, SCALE, Limits, quantize  # noqa: E402
from scheduling.simulator import _replay, expand, load_trace  # noqa: E402

logger = logging.getLogger(__name__)

TRACE = Path("/work/shared/traces/nab_ec2_cpu_utilization_825cc2.csv")
WEEK_ROWS = 7 * 288
NAIVE_S = 3600
PARAMS = {"limits.safety_margin": 0.0}


class NaivePlanner:
    """The same bound as :class:`Planner`, re-summed from scratch each second.

    Only the parts the engine calls: ``_now``, ``limits``, ``record`` and
    ``inputs``. No reservations: the floor is the only plan.
    """

    def __init__(self, limits: Limits, now: int, history: list[float]) -> None:
        self.limits = limits
        self._now = now - len(history)
        self._units: deque[int] = deque(maxlen=limits.avg_window_s)
        self._values: deque[float] = deque(maxlen=limits.avg_window_s)
        self._peaks: deque[int] = deque(maxlen=limits.peak_window_s)
        for value in history:
            self.record(value)

    def record(self, cpu_percent: float) -> None:
        u = max(cpu_percent, 0.0)
        self._units.append(quantize(u))
        self._values.append(u)
        self._peaks.append(int(u >= self.limits.peak_threshold))
        self._now += 1

    def inputs(self) -> tuple[float, float, float]:
        limits = self.limits
        w = limits.avg_window_s
        floor = quantize(limits.floor)
        past = list(self._units)[-(w - 1) :] if w > 1 else []
        # Window starting j seconds ago: the last j seconds plus the floor of
        # the w - 1 - j seconds after now.
        back = list(accumulate(reversed(past), initial=0))
        worst = max(s + floor * (w - 1 - j) for j, s in enumerate(back))
        cap = (limits.avg_budget_units - worst) / SCALE

        peaks = list(self._peaks)[-(limits.peak_window_s - 1) :]
        if (
            cap >= limits.peak_threshold
            and sum(peaks) + 1 > limits.peak_budget_effective
        ):
            cap = limits.peak_threshold - PEAK_GAP
        bound = min(max(cap, 0.0), 100.0)

        budget = w * limits.avg_limit_effective
        remaining = 100.0 * (budget - sum(self._values)) / budget
        return bound, remaining, limits.floor


def timed(engine: Engine, runs, start: int) -> tuple[float, float, object]:
    wall = time.perf_counter()
    cpu = time.process_time()
    out = _replay(engine, runs, start, False)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def clip(runs, seconds: int):
    """The first ``seconds`` of a run list."""
    out, left = [], seconds
    for want, bg, length in runs:
        if left <= 0:
            break
        out.append((want, bg, min(length, left)))
        left -= length
    return out


def main(path: Path = TRACE) -> list[dict]:
    trace = load_trace(path)
    trace.times = trace.times[:WEEK_ROWS]
    trace.demand = trace.demand[:WEEK_ROWS]
    runs, start = expand(trace)
    simulated = sum(length for _, _, length in runs)
    rows = []

    for mode in ("aggressive", "balanced", "conservative"):
        params = {**PARAMS, "scheduler.mode": mode}
        engine = Engine.from_params(params, now=start)
        wall, cpu, _ = timed(engine, runs, start)
        rows.append(_row(f"O(1) planner, {mode}", simulated, wall, cpu))

    # Both planners start with full windows (a day at 30 %), so the naive
    # one re-sums 43,200 seconds every second from the first second on.
    short = clip(runs, NAIVE_S)
    history = [30.0] * 86_400
    params = {**PARAMS, "scheduler.mode": "aggressive"}
    fast = Engine.from_params(params, history, now=start)
    _, _, fast_out = timed(fast, short, start)
    naive = Engine.from_params(params, now=start)
    naive.planner = NaivePlanner(fast.planner.limits, start, history)
    wall, cpu, naive_out = timed(naive, short, start)
    same = list(fast_out[1]) == list(naive_out[1])
    rows.append(_row("naive re-summing planner, aggressive", NAIVE_S, wall, cpu))
    rows[-1]["same_caps"] = same
    return rows


def _row(name: str, simulated: int, wall: float, cpu: float) -> dict:
    return {
        "name": name,
        "simulated_s": simulated,
        "wall_s": wall,
        "per_wall_s": simulated / wall,
        "per_cpu_s": simulated / cpu,
    }


def table(rows: list[dict], trace: str) -> str:
    fast = rows[0]["per_cpu_s"]
    lines = [
        f"Trace: first 7 days of `{trace}` (604,800 simulated seconds for the "
        "O(1) rows; the naive row replays the first hour after a full day of "
        "history), default parameters with `limits.safety_margin=0`.",
        "",
        "| planner, mode | simulated s | wall s | sim s / wall s | sim s / CPU s "
        "| O(1) aggressive is faster by |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = fast / r["per_cpu_s"]
        lines.append(
            f"| {r['name']} | {r['simulated_s']:,} | {r['wall_s']:.2f} | "
            f"{r['per_wall_s']:,.0f} | {r['per_cpu_s']:,.0f} | {ratio:,.0f}x |"
        )
    same = rows[-1].get("same_caps")
    lines += ["", f"Naive and O(1) caps identical over the naive hour: {same}."]
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else TRACE
    print(table(main(path), path.name))

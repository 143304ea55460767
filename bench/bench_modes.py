"""Delivered work per mode and trace, beside an offline optimum and baselines.

For every trace in /work/shared/traces, at scale 1 and at a scale that
makes it exceed the average limit, this replays the three modes and two
baselines (a static cap at the limit; the tiered limits of ``balanced``
without the planner's bound) with ``limits.safety_margin=0`` and otherwise
default parameters, counts rule breaks from each timeline, and compares the
delivered work with two offline optima computed with scipy's HiGHS linear
programming solver:

- **promise optimum**: the most any schedule can deliver while keeping, at
  every moment, the promise the service makes (each future second can still
  get the 5 % floor without breaking a window). This is the yardstick.
- **rules-only optimum**: the same without the promise, as if the schedule
  knew that idle seconds will stay idle. No online scheduler can know that;
  it is shown for scale.

Both LPs use one variable per 5-minute block (the traces' own resolution):
per-second demand is constant within a block, and every per-second schedule
that keeps the rules and the promise at every second also keeps them at
block ends over block-aligned windows, so each LP is a relaxation of the
per-second problem and its optimum an upper bound. A ratio to it is
therefore a lower bound on the ratio to the true optimum.

The promise constraints (one per block and window start) are expressed with
a sparse table of running maxima so the LP stays small: O(n log W) rows
instead of O(n W).

Usage: ``python bench/bench_modes.py [--jobs N] [--json OUT.json]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.engine import Engine, limits_from_params  # noqa: E402
from scheduling.simulator import expand, load_trace, simulate  # noqa: E402

TRACES = sorted(Path("/work/shared/traces").glob("*.csv"))
BLOCK_S = 300
BASE = {"limits.safety_margin": 0.0}
MODES = ("aggressive", "balanced", "conservative")


class StaticEngine(Engine):
    """Baseline: the cap is the average limit, every second."""

    def cap_for(self, now: int) -> float:
        planner = self.planner
        self.policy.floor = planner.floor_now()
        cap = planner.limits.avg_limit
        planner_now = planner.now
        if now != planner_now:
            raise ValueError(f"Asked for {now}, engine is at {planner_now}")
        return cap


class TieredEngine(Engine):
    """Baseline: balanced mode's tiers with the planner's bound left out."""

    def cap_for(self, now: int) -> float:
        _, remaining, floor = self.planner.inputs()
        return self.policy.step(now, 100.0, remaining, floor)


def exceed_scale(trace) -> float:
    """A scale at which the trace's mean is at least 1.5 x the 30 % limit."""
    mean = sum(trace.demand) / len(trace.demand)
    scale = max(2.0, 45.0 / mean)
    digits = 1 - math.floor(math.log10(scale))
    return round(scale, digits)


# Offline optimum -------------------------------------------------------------


def blocks(trace, scale: float) -> list[float]:
    """Demand per 5-minute block, scaled and clipped at 100 %."""
    runs, _ = expand(trace, scale)
    out: list[float] = []
    for want, _, length in runs:
        if length % BLOCK_S:
            raise ValueError(f"Row of {length} s is not a whole number of blocks")
        out += [want] * (length // BLOCK_S)
    return out


class _Rows:
    """Sparse ``A_ub x <= b_ub`` built row by row."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.rhs: list[float] = []

    def add(self, terms: list[tuple[int | None, float]], rhs: float) -> None:
        row = len(self.rhs)
        for col, value in terms:
            if col is not None:
                self.rows.append(row)
                self.cols.append(col)
                self.vals.append(value)
        self.rhs.append(rhs)

    def matrix(self, columns: int) -> csr_matrix:
        return csr_matrix(
            (self.vals, (self.rows, self.cols)), shape=(len(self.rhs), columns)
        )


def optimum(demand: list[float], params: dict, promise: bool) -> float:
    """Most CPU-seconds any schedule delivers (an upper bound, see above)."""
    limits = limits_from_params(params)
    amax = float(params.get("limits.absolute_max_cpu", 95.0))
    n = len(demand)
    w = limits.avg_window_s // BLOCK_S
    budget = limits.avg_window_s * limits.avg_limit
    floor_block = BLOCK_S * limits.floor

    # Column of the cumulative use S_j after block j (S_0 is the constant 0).
    def s(j: int) -> int | None:
        return None if j == 0 else j - 1

    rows = _Rows()
    columns = n
    for b, want in enumerate(demand):
        rows.add([(s(b + 1), -1.0), (s(b), 1.0)], 0.0)
        rows.add([(s(b + 1), 1.0), (s(b), -1.0)], BLOCK_S * min(want, amax))
    if promise:
        columns = _promise_rows(rows, n, w, budget, floor_block, s)
    else:
        for b in range(max(1, n - w + 1)):
            rows.add([(s(min(b + w, n)), 1.0), (s(b), -1.0)], budget)

    cost = np.zeros(columns)
    cost[s(n)] = -1.0
    bounds = [(0, None)] * n + [(None, None)] * (columns - n)
    result = linprog(
        cost,
        A_ub=rows.matrix(columns),
        b_ub=np.array(rows.rhs),
        bounds=bounds,
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"LP failed: {result.message}")
    return -result.fun / 100.0


def _promise_rows(rows: _Rows, n: int, w: int, budget: float, floor_block, s) -> int:
    """Add ``S[b+1] - S[k] + floor x (k + w - 1 - b) <= budget`` for all k.

    With ``y[k] = floor x k - S[k]`` each block ``b`` needs
    ``S[b+1] + max(y[k] for k in the window) <= budget - floor x (w-1-b)``;
    the maxima come from a sparse table ``T[j][i] >= max(y[i : i + 2**j])``.
    """
    columns = n
    level: dict[tuple[int, int], int] = {}
    top = max(0, int(math.log2(min(w, n))))
    for j in range(1, top + 1):
        half = 1 << (j - 1)
        for i in range(n - (1 << j) + 1):
            level[(j, i)] = columns
            for part in (i, i + half):
                if j == 1:
                    # T >= y[part] = floor x part - S[part]
                    rows.add([(columns, -1.0), (s(part), -1.0)], -floor_block * part)
                else:
                    rows.add([(level[(j - 1, part)], 1.0), (columns, -1.0)], 0.0)
            columns += 1

    for b in range(n):
        span = min(w, b + 1)
        low = b - span + 1
        rhs = budget - floor_block * (w - 1 - b)
        if span == 1:
            rows.add([(s(b + 1), 1.0), (s(b), -1.0)], rhs - floor_block * b)
            continue
        j = int(math.log2(span))
        for start in {low, b - (1 << j) + 1}:
            rows.add([(s(b + 1), 1.0), (level[(j, start)], 1.0)], rhs)
    return columns


# Replays -------------------------------------------------------------------


def replay(trace, scale: float, name: str, params: dict) -> dict:
    """One simulation; returns delivered work and breaks."""
    start = trace.times[0]
    engine = None
    if name == "static cap at the limit":
        engine = StaticEngine.from_params(
            {**params, "scheduler.mode": "balanced"}, now=start
        )
    elif name == "tiers without the bound":
        engine = TieredEngine.from_params(
            {**params, "scheduler.mode": "balanced"}, now=start
        )
    else:
        params = {**params, "scheduler.mode": name}
    began = time.process_time()
    result = simulate(trace, params, scale=scale, engine=engine)
    s = result.summary
    return {
        "policy": name,
        "delivered_cpu_s": s.delivered_cpu_s,
        "demanded_cpu_s": s.demanded_cpu_s,
        "break_s": s.break_s,
        "max_avg_mean": s.max_avg_mean,
        "max_peak_count": s.max_peak_count,
        "cpu_s": time.process_time() - began,
    }


def run_case(case: tuple[str, float | None]) -> dict:
    path, scale = case
    trace = load_trace(path)
    if scale is None:
        scale = exceed_scale(trace)
    demand = blocks(trace, scale)
    began = time.process_time()
    best = optimum(demand, BASE, promise=True)
    loose = optimum(demand, BASE, promise=False)
    lp_s = time.process_time() - began
    names = [*MODES, "static cap at the limit", "tiers without the bound"]
    runs = [replay(trace, scale, name, BASE) for name in names]
    margin = replay(trace, scale, "aggressive", {})
    margin["policy"] = "aggressive, default margin 5 %"
    runs.append(margin)
    return {
        "trace": Path(path).name,
        "scale": scale,
        "promise_optimum_cpu_s": best,
        "rules_optimum_cpu_s": loose,
        "lp_cpu_s": lp_s,
        "runs": runs,
    }


def markdown(cases: list[dict]) -> str:
    lines = [
        "| trace | scale | policy | delivered CPU-s | rule breaks (s) | "
        "highest 12 h mean % | highest peak s | vs promise optimum | "
        "vs rules-only optimum |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        name = case["trace"].removesuffix(".csv")
        for run in case["runs"]:
            work = run["delivered_cpu_s"]
            best = 100 * work / case["promise_optimum_cpu_s"]
            loose = 100 * work / case["rules_optimum_cpu_s"]
            lines.append(
                f"| {name} | {case['scale']:g} | {run['policy']} | {work:,.0f} | "
                f"{run['break_s']:,} | {run['max_avg_mean']:.2f} | "
                f"{run['max_peak_count']} | {best:.2f} % | {loose:.2f} % |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--trace", action="append", help="Only these trace files")
    args = parser.parse_args()

    paths = [str(p) for p in TRACES if not args.trace or p.name in args.trace]
    cases = [(p, s) for p in paths for s in (1.0, None)]
    with Pool(args.jobs) as pool:
        results = pool.map(run_case, cases, chunksize=1)

    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()

"""Cost of one ``Planner.check_interval`` call with the default windows.

The reservations form asks the planner on every save and on every live
validation keystroke, so one call is what a user waits for. This builds a
planner with the default limits (12 h average window, 24 h peak window) and
a full day of seeded, realistic history (a quiet base load with busy hours
and a few short bursts to 100 %), a handful of other reservations, and times
each scenario: slots that fit and slots refused by either rule.

Reports the first call on a fresh planner and the median wall and CPU time
per call over ``--repeat`` later calls, and
prints every verdict so two runs (before and after a change) can be diffed
for equal answers.

Usage: ``python bench/bench_check_interval.py [--repeat N]``
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scheduling.planner import Limits, Planner  # noqa: E402

NOW = 1_750_000_000
HOUR = 3600


def history(seconds: int, seed: int = 7) -> list[float]:
    """Seeded CPU % per second: base load, busy hours, rare 100 % bursts."""
    rng = random.Random(seed)
    out: list[float] = []
    level = 12.0
    while len(out) < seconds:
        busy = (len(out) // HOUR) % 6 == 2
        level += rng.uniform(-1.0, 1.0)
        level = min(max(level, 4.0), 35.0 if busy else 22.0)
        if rng.random() < 0.00015:
            out.extend([100.0] * rng.randint(5, 20))
        out.append(level + rng.uniform(-3.0, 3.0))
    return [max(0.0, u) for u in out[:seconds]]


OTHERS = [
    (NOW + 1 * HOUR, NOW + 3 * HOUR, 20.0),
    (NOW + 5 * HOUR, NOW + 6 * HOUR, 40.0),
    (NOW + 30 * HOUR, NOW + 31 * HOUR, 60.0),
]

SCENARIOS = {
    "fits, 1 h at 20 % in 8 h": (NOW + 8 * HOUR, NOW + 9 * HOUR, 20.0),
    "fits, overlapping others": (NOW + 2 * HOUR, NOW + 5 * HOUR + 1800, 10.0),
    "fits, starts now": (NOW, NOW + 1800, 25.0),
    "fits, next day": (NOW + 28 * HOUR, NOW + 32 * HOUR, 15.0),
    "refused, average (6 h at 80 %)": (NOW + 8 * HOUR, NOW + 14 * HOUR, 80.0),
    "refused, average, overlapping": (NOW + 2 * HOUR, NOW + 7 * HOUR, 70.0),
    "refused, peak (30 min at 100 %)": (NOW + 8 * HOUR, NOW + 8 * HOUR + 1800, 100.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    limits = Limits()
    span = max(limits.avg_window_s, limits.peak_window_s)
    past = history(span)

    print(f"{'scenario':34} {'first ms':>8} {'wall ms':>8} {'cpu ms':>8}  verdict")
    for name, (start, end, percent) in SCENARIOS.items():
        # A fresh planner, as each form request builds one: the first call
        # also reads the stored seconds, later ones (median) reuse them.
        planner = Planner(limits, NOW, past)
        planner.set_profile(OTHERS)
        wall = time.perf_counter()
        planner.check_interval(start, end, percent)
        first_ms = 1000 * (time.perf_counter() - wall)
        walls, cpus = [], []
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            check = planner.check_interval(start, end, percent)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        wall_ms = 1000 * statistics.median(walls)
        cpu_ms = 1000 * statistics.median(cpus)
        verdict = (
            f"ok={check.ok} rule={check.rule} window={check.window_start} "
            f"excess={check.shortfall_cpu_s:.4f}/{check.peak_excess_s} "
            f"max={check.max_percent}"
        )
        print(f"{name:34} {first_ms:8.1f} {wall_ms:8.1f} {cpu_ms:8.1f}  {verdict}")


if __name__ == "__main__":
    main()

"""Ring-buffer windows: O(1) totals that stay exact."""

import math
import random

import pytest

from scheduling.windows import AverageWindow, PeakWindow


def test_it_sums_the_last_seconds_only():
    window = AverageWindow(3)

    for value in (10.0, 20.0, 30.0, 40.0):
        window.add(value)

    assert window.total() == 90.0
    assert window.count() == 3
    assert window.mean() == 30.0
    assert list(window.values()) == [20.0, 30.0, 40.0]


def test_unsampled_seconds_count_as_idle():
    window = AverageWindow(4, [40.0])

    assert window.mean() == 10.0
    assert window.count() == 1
    assert list(window.values()) == [0.0, 0.0, 0.0, 40.0]
    assert window.recent(2) == [0.0, 40.0]


def test_the_running_sum_does_not_drift():
    rng = random.Random(7)
    window = AverageWindow(50)
    values = [rng.choice([0.1, 33.3, 99.99, 1e-7]) for _ in range(20_011)]

    for value in values:
        window.add(value)

    assert math.isclose(window.total(), math.fsum(values[-50:]), abs_tol=1e-9)


def test_it_rejects_an_empty_window():
    with pytest.raises(ValueError, match="at least 1 s"):
        AverageWindow(0)


def test_peak_window_counts_seconds_at_or_above_the_threshold():
    window = PeakWindow(3, 95.0, [95.0, 94.99, 100.0])

    assert window.count() == 2
    assert window.oldest() == 1

    window.add(10.0)

    assert window.count() == 1
    assert list(window.bits()) == [0, 1, 0]

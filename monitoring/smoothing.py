"""Smoothing and outlier filtering of per-second readings.

For control decisions and display only: the windows always count the raw
measured CPU, because that is what the provider counts. A reading further
than ``monitoring.anomaly_threshold`` standard deviations from the recent
mean is an outlier: it does not enter the smoothed value (one odd second
should not swing the group cap), but it is kept in the history, so a level
shift that lasts is followed within ``monitoring.smooth_window`` seconds.
"""

from __future__ import annotations

import math
from collections import deque

MIN_SPREAD = 1.0
"""Smallest standard deviation (percentage points) the outlier test uses;
a perfectly flat history would otherwise call any change an outlier."""

SHIFT_AFTER = 3
"""Outliers in a row after which the level is taken to have moved."""


class Smoother:
    """Mean of the last ``window`` readings, outliers left out."""

    def __init__(self, window: int, anomaly_threshold: float) -> None:
        if window < 1:
            raise ValueError(f"Smoothing window must be at least 1, got {window!r}")
        self.window = window
        self.threshold = anomaly_threshold
        self._values: deque[float] = deque(maxlen=window)
        self._kept: deque[float] = deque(maxlen=window)
        self.value: float | None = None
        self.last_was_outlier = False

    def add(self, reading: float) -> float:
        """Take one reading; return the smoothed value."""
        self.last_was_outlier = self._is_outlier(reading)
        self._values.append(reading)
        if not self.last_was_outlier:
            self._kept.append(reading)
        elif self._all_outliers():
            # The last readings all disagree with the old mean: the level
            # really moved, so restart from them.
            recent = list(self._values)[-SHIFT_AFTER:]
            self._kept = deque(recent, maxlen=self.window)
        self.value = math.fsum(self._kept) / len(self._kept)
        return self.value

    def _is_outlier(self, reading: float) -> bool:
        if len(self._kept) < 3:
            return False
        mean = math.fsum(self._kept) / len(self._kept)
        spread = max(_stdev(self._kept, mean), MIN_SPREAD)
        return abs(reading - mean) > self.threshold * spread

    def _all_outliers(self) -> bool:
        recent = list(self._values)[-SHIFT_AFTER:]
        mean = math.fsum(self._kept) / len(self._kept)
        spread = max(_stdev(self._kept, mean), MIN_SPREAD)
        return all(abs(v - mean) > self.threshold * spread for v in recent)


def _stdev(values: deque[float], mean: float) -> float:
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))

"""Student-t intervals over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from biastransfer.metrics.intervals import DroppedValuesWarning, Interval, t_interval


@pytest.mark.parametrize(("n", "confidence"), [(2, 0.95), (5, 0.95), (5, 0.9), (12, 0.99)])
def test_t_interval_matches_scipy(n: int, confidence: float) -> None:
    values = np.random.default_rng(n).normal(0.3, 0.1, size=n)
    low, high = stats.t.interval(confidence, n - 1, loc=values.mean(), scale=stats.sem(values))
    got = t_interval(values, confidence)
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert got.mean == pytest.approx(values.mean())
    assert got.std == pytest.approx(values.std(ddof=1))
    assert got.half_width == pytest.approx((high - low) / 2)
    assert got.n == n


def test_original_scripts_error_bars_are_3_5_times_too_narrow_at_n5() -> None:
    values = np.array([0.10, 0.14, 0.09, 0.20, 0.12])
    original = 1.96 * np.std(values) / len(values)  # population std over n, as in the scripts
    assert t_interval(values).half_width / original == pytest.approx(3.5414, abs=1e-3)


def test_nan_values_are_dropped_with_a_warning() -> None:
    with pytest.warns(DroppedValuesWarning, match="dropped 1 NaN"):
        got = t_interval([0.1, float("nan"), 0.3])
    assert got.n == 2 and got.mean == pytest.approx(0.2)


def test_single_and_empty_samples() -> None:
    one = t_interval([0.4])
    assert one.mean == 0.4 and one.n == 1
    assert all(math.isnan(v) for v in (one.low, one.high, one.half_width, one.std))
    empty = t_interval([])
    assert empty.n == 0 and math.isnan(empty.mean)
    assert isinstance(empty, Interval)


def test_confidence_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=95)

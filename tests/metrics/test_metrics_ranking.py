"""AUC, AP and normalised AP."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from biastransfer.metrics.ranking import (
    auc,
    average_precision,
    normalized_average_precision,
    normalized_mean_average_precision,
)
from biastransfer.metrics.rates import UndefinedRateWarning


def _data(seed: int, n: int = 300, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = y * 0.8 + rng.normal(size=n)
    return y, (np.round(s, 1) if ties else s)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_and_mann_whitney(seed: int) -> None:
    y, s = _data(seed)
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s))
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    mann_whitney = (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size
    assert auc(y, s) == pytest.approx(mann_whitney)


def test_auc_single_class_is_nan_with_warning() -> None:
    with pytest.warns(UndefinedRateWarning, match="AUC is undefined"):
        assert math.isnan(auc([1, 1, 1], [0.2, 0.5, 0.9]))


@pytest.mark.parametrize("seed", range(3))
def test_average_precision_matches_sklearn(seed: int) -> None:
    y, s = _data(seed)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s))


def test_average_precision_without_positives_is_nan() -> None:
    with pytest.warns(UndefinedRateWarning):
        assert math.isnan(average_precision([0, 0], [0.1, 0.2]))
    with pytest.warns(UndefinedRateWarning):
        assert math.isnan(normalized_average_precision([0, 0], [0.1, 0.2]))


@pytest.mark.parametrize("seed", range(5))
def test_normalized_ap_with_actual_positive_count_is_plain_ap(seed: int) -> None:
    y, s = _data(seed, ties=seed % 2 == 0)
    nap = normalized_average_precision(y, s, n_pos_ref=int(y.sum()))
    assert nap == pytest.approx(average_precision_score(y, s))


def test_normalized_ap_hand_computed() -> None:
    # ranking: +, -, +, -  with P = 2; thresholds give (R, FP) = (.5, 0), (.5, 1), (1, 1), (1, 2)
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]
    n_ref = 4.0
    expected = 0.5 * (0.5 * n_ref / (0.5 * n_ref + 0)) + 0.5 * (1.0 * n_ref / (1.0 * n_ref + 1))
    assert normalized_average_precision(y, s, n_pos_ref=n_ref) == pytest.approx(expected)
    assert normalized_average_precision(y, s) == pytest.approx(  # default N_ref = n / 2 = 2
        0.5 * 1.0 + 0.5 * (2 / 3)
    )


def test_normalized_ap_does_not_depend_on_the_number_of_positives() -> None:
    y, s = _data(7)
    doubled_y = np.r_[y, np.ones(int(y.sum()), dtype=int)]
    doubled_s = np.r_[s, s[y == 1]]  # every positive duplicated: same recall and FP at each threshold
    assert average_precision(doubled_y, doubled_s) > average_precision(y, s) + 0.01
    assert normalized_average_precision(doubled_y, doubled_s, n_pos_ref=50) == pytest.approx(
        normalized_average_precision(y, s, n_pos_ref=50)
    )


def test_normalized_mean_ap_uses_mean_positive_count() -> None:
    y1, s1 = _data(1)
    y2, s2 = _data(2)
    y2[:30] = 1
    n_ref = (y1.sum() + y2.sum()) / 2
    expected = np.mean(
        [normalized_average_precision(y1, s1, n_ref), normalized_average_precision(y2, s2, n_ref)]
    )
    assert normalized_mean_average_precision(np.c_[y1, y2], np.c_[s1, s2]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="n_pos_ref must be positive"):
        normalized_average_precision(y1, s1, n_pos_ref=0)

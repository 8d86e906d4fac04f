"""The planted-trigger metrics on constructed predictions (docs/metrics.md, "Attack success rate")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cityblock

from biastransfer.metrics.rates import UndefinedRateWarning
from biastransfer.metrics.triggers import (
    attack_success_rate,
    clean_accuracy,
    prediction_shift,
    targeted_rate,
    trigger_metrics,
)

Y = np.array([0, 0, 1, 1, 2, 2, 2, 1])
CLEAN = np.array([0, 1, 1, 1, 2, 2, 0, 1])      # correct: 0, 2, 3, 4, 5, 7 (6 images)
TRIG = np.array([2, 1, 2, 1, 2, 0, 2, 2])       # of the correct ones, 0, 2, 5, 7 change (4)


def test_attack_success_rate_counts_only_correct_clean_images() -> None:
    assert attack_success_rate(Y, CLEAN, TRIG) == pytest.approx(4 / 6)
    # a change on an image that was wrong when clean (1, 6) does not count
    assert attack_success_rate(Y, CLEAN, np.where(np.isin(np.arange(8), [1, 6]), 2, CLEAN)) == 0.0


def test_attack_success_rate_is_nan_with_a_warning_when_no_clean_image_is_correct() -> None:
    with pytest.warns(UndefinedRateWarning, match="no clean test image is classified correctly"):
        assert math.isnan(attack_success_rate(Y, (Y + 1) % 3, Y))
    with pytest.warns(UndefinedRateWarning):
        assert math.isnan(attack_success_rate([], [], []))


def test_targeted_rate_is_the_share_of_other_classes_predicted_as_the_target() -> None:
    # images of classes other than 2: 0, 1, 2, 3, 7; predicted 2 when triggered: 0, 2, 7
    assert targeted_rate(Y, TRIG, 2) == pytest.approx(3 / 5)
    assert targeted_rate(Y, TRIG, [1, 2]) == pytest.approx(2 / 2)  # classes 0: images 0, 1 → predicted 2, 1
    with pytest.warns(UndefinedRateWarning, match="outside class"):
        assert math.isnan(targeted_rate([2, 2], [2, 0], 2))


def test_prediction_shift_is_half_the_l1_distance_of_the_histograms() -> None:
    hist_c = np.bincount(CLEAN, minlength=3) / 8
    hist_t = np.bincount(TRIG, minlength=3) / 8
    assert prediction_shift(CLEAN, TRIG, 3) == pytest.approx(0.5 * cityblock(hist_c, hist_t))
    assert prediction_shift(CLEAN, CLEAN[::-1], 3) == 0.0        # same histogram, different images
    assert prediction_shift([0, 0], [1, 1], 2) == 1.0
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        prediction_shift([0, 3], [0, 0], 3)


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60))
@example(rows=[(0, 1, 0), (0, 1, 3), (0, 2, 0), (0, 2, 0), (0, 2, 0)])  # float TV once came out 1 + 2e-16
def test_metrics_match_their_definitions_on_random_predictions(rows: list[tuple[int, int, int]]) -> None:
    y, p, q = (np.array(c) for c in zip(*rows, strict=True))
    correct = p == y
    with pytest.warns(UndefinedRateWarning) if not correct.any() else _nothing():
        asr = attack_success_rate(y, p, q)
    if correct.any():
        assert asr == pytest.approx(sum(1 for i in range(y.size) if p[i] == y[i] and q[i] != p[i]) / correct.sum())
    shift = prediction_shift(p, q, 5)
    assert 0.0 <= shift <= 1.0
    # total variation bounds the share of changed predictions from below
    assert shift <= np.mean(p != q) + 1e-12
    assert clean_accuracy(y, p) == pytest.approx(correct.mean())


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_trigger_metrics_bundles_them_and_leaves_targeted_nan_without_a_target() -> None:
    m = trigger_metrics(Y, CLEAN, TRIG, 3)
    assert m.attack_success_rate == pytest.approx(4 / 6) and math.isnan(m.targeted_rate)
    assert m.clean_accuracy == pytest.approx(6 / 8) and m.triggered_accuracy == pytest.approx(np.mean(TRIG == Y))
    assert (m.n_test, m.n_correct) == (8, 6)
    assert trigger_metrics(Y, CLEAN, TRIG, 3, target=2).targeted_rate == pytest.approx(3 / 5)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="same length"):
        attack_success_rate([0, 1], [0], [0])
    with pytest.raises(ValueError, match="integer class indices"):
        attack_success_rate([0.5], [0], [0])

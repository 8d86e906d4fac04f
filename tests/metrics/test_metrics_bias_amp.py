"""Directional bias amplification."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from biastransfer.metrics.bias_amp import bias_amplification
from biastransfer.metrics.rates import UndefinedRateWarning

POS_TRAIN_A = [1, 1, 0, 0]
POS_TRAIN_T = [1, 1, 0, 1]  # P(A,T) = .5 > P(A)P(T) = .375: positively correlated
TEST_A = [1, 1, 1, 1, 0, 0, 0, 0]
TEST_T = [1, 1, 0, 0, 1, 1, 0, 0]


def test_a_to_t_hand_computed() -> None:
    pred_t = [1, 1, 1, 0, 1, 0, 0, 0]  # P(T̂=1 | A=1) = .75 vs P(T=1 | A=1) = .5
    assert bias_amplification(POS_TRAIN_A, POS_TRAIN_T, TEST_A, TEST_T, pred_t) == pytest.approx(0.25)
    negative_train_t = [0, 0, 1, 1]  # negatively correlated in training: the sign flips
    assert bias_amplification(POS_TRAIN_A, negative_train_t, TEST_A, TEST_T, pred_t) == pytest.approx(-0.25)


def test_t_to_a_hand_computed() -> None:
    pred_a = [1, 1, 1, 1, 1, 0, 0, 0]  # rows with T=1: 0, 1, 4, 5 -> P(Â=1 | T=1) = .75 vs .5
    got = bias_amplification(POS_TRAIN_A, POS_TRAIN_T, TEST_A, TEST_T, pred_a, direction="T->A")
    assert got == pytest.approx(0.25)


def test_perfect_predictions_amplify_nothing() -> None:
    rng = np.random.default_rng(0)
    attrs, tasks = rng.integers(0, 2, (50, 2)), rng.integers(0, 2, (50, 3))
    assert bias_amplification(attrs, tasks, attrs, tasks, tasks) == pytest.approx(0.0)
    assert bias_amplification(attrs, tasks, attrs, tasks, attrs, direction="T->A") == pytest.approx(0.0)


def _loop_reference(train_a, train_t, test_a, test_t, pred, direction):  # type: ignore[no-untyped-def]
    terms = []
    for a, t in itertools.product(range(train_a.shape[1]), range(train_t.shape[1])):
        joint = np.mean(train_a[:, a] * train_t[:, t])
        y_at = joint > train_a[:, a].mean() * train_t[:, t].mean()
        if direction == "A->T":
            given = test_a[:, a] == 1
            delta = pred[given, t].mean() - test_t[given, t].mean()
        else:
            given = test_t[:, t] == 1
            delta = pred[given, a].mean() - test_a[given, a].mean()
        terms.append(delta if y_at else -delta)
    return float(np.mean(terms))


@pytest.mark.parametrize("direction", ["A->T", "T->A"])
def test_matrix_form_matches_a_loop_over_pairs(direction: str) -> None:
    rng = np.random.default_rng(1)
    train_a, train_t = rng.integers(0, 2, (80, 2)), rng.integers(0, 2, (80, 3))
    test_a, test_t = rng.integers(0, 2, (60, 2)), rng.integers(0, 2, (60, 3))
    pred = rng.integers(0, 2, (60, 3) if direction == "A->T" else (60, 2))
    got = bias_amplification(train_a, train_t, test_a, test_t, pred, direction=direction)
    assert got == pytest.approx(_loop_reference(train_a, train_t, test_a, test_t, pred, direction))


def test_undefined_conditional_gives_nan_and_warning() -> None:
    with pytest.warns(UndefinedRateWarning, match="never 1"):
        got = bias_amplification(POS_TRAIN_A, POS_TRAIN_T, [0, 0], [1, 0], [1, 1])
    assert math.isnan(got)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="direction"):
        bias_amplification(POS_TRAIN_A, POS_TRAIN_T, TEST_A, TEST_T, TEST_T, direction="A-T")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="same length"):
        bias_amplification(POS_TRAIN_A, POS_TRAIN_T, TEST_A, TEST_T, TEST_T[:4])

"""Top-k accuracy against scikit-learn (tie-free scores) and a direct count, its tie rule, and its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import top_k_accuracy_score

from biastransfer.metrics import UndefinedRateWarning, top_k_accuracy


@pytest.mark.parametrize("k", [1, 2, 5, 15])
def test_against_scikit_learn_and_a_direct_count(k: int) -> None:
    rng = np.random.default_rng(k)
    labels = rng.integers(0, 15, 500)
    scores = rng.normal(size=(500, 15)) + 1.5 * np.eye(15)[labels]
    got = top_k_accuracy(labels, scores, k)
    assert got == pytest.approx(top_k_accuracy_score(labels, scores, k=k, labels=np.arange(15)))
    direct = np.mean([labels[i] in np.argsort(-scores[i])[:k] for i in range(500)])
    assert got == pytest.approx(direct)


def test_ties_count_for_the_true_class() -> None:
    scores = np.array([[0.5, 0.5, 0.1], [0.9, 0.5, 0.5], [0.2, 0.2, 0.2]])
    assert top_k_accuracy([1, 2, 2], scores, k=1) == pytest.approx(2 / 3)  # row 2: 0.9 beats class 2
    assert top_k_accuracy([1, 2, 2], scores, k=2) == 1.0


def test_errors_and_undefined() -> None:
    with pytest.raises(ValueError, match="k must be an integer ≥ 1"):
        top_k_accuracy([0], [[1.0, 0.0]], k=0)
    with pytest.raises(ValueError, match="labels must be integers in \\[0, 2\\)"):
        top_k_accuracy([2], [[1.0, 0.0]], k=1)
    with pytest.raises(ValueError, match="shape \\(n, classes\\)"):
        top_k_accuracy([0, 1], [1.0, 0.0], k=1)
    with pytest.warns(UndefinedRateWarning):
        assert math.isnan(top_k_accuracy(np.array([], dtype=int), np.zeros((0, 3)), k=1))

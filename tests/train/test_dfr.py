"""DFR's ℓ1 logistic-regression head (train/dfr.py) against scikit-learn's own standardise-then-regress pipeline,
its averaging over balanced subsamples, the choice of C on random halves, and the worst-group accuracy by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from biastransfer.train.dfr import C_GRID, balanced_subsample, halves, logistic_head, worst_group_accuracy


def data(n: int = 400, d: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features on different scales and offsets; y from feature 0 with noise; four (a, y) groups, unequal."""
    gen = np.random.default_rng(seed)
    base = gen.normal(size=(n, d))
    y = (base[:, 0] + 0.3 + gen.normal(scale=0.4, size=n) > 0).astype(np.float32)
    x = base * np.linspace(0.5, 4.0, d) + np.linspace(-3.0, 3.0, d)
    a = (gen.random(n) < np.where(y == 1, 0.8, 0.3)).astype(int)
    x[:, 1] += 2.0 * a  # a spurious feature
    return x.astype(np.float32), y, 2 * a + y.astype(int)


def test_the_head_on_raw_features_is_the_average_of_sklearns_regressions_on_standardised_ones() -> None:
    """With C given, ``fits`` = 3: W·φ + b equals the mean of scikit-learn's decision functions, each a
    StandardScaler (fitted on the whole held-out split) then an ℓ1 LogisticRegression on one balanced subsample,
    the subsamples and seeds drawn in the same order from the same generator."""
    x, y, g = data()
    head = logistic_head(x, y, g, C=0.3, fits=3, generator=np.random.default_rng(7))
    scaler = StandardScaler().fit(x.astype(np.float64))
    z = scaler.transform(x.astype(np.float64))
    gen, decisions, coefs = np.random.default_rng(7), [], []
    for _ in range(3):
        keep = balanced_subsample(g, gen)
        seed = int(gen.integers(2 ** 31 - 1))
        lr = LogisticRegression(l1_ratio=1.0, C=0.3, solver="liblinear", random_state=seed).fit(z[keep], y[keep])
        decisions.append(lr.decision_function(z)), coefs.append(lr.coef_)
    ours = x.astype(np.float64) @ head.weight.T + head.bias
    assert head.weight.shape == (1, x.shape[1]) and head.bias.shape == (1,)
    np.testing.assert_allclose(ours[:, 0], np.mean(decisions, axis=0), rtol=1e-9, atol=1e-9)
    assert head.C == 0.3 and head.scores == {}
    assert head.nonzero == np.count_nonzero(np.mean(coefs, axis=0))


def test_a_constant_feature_is_left_out_not_divided_by_zero() -> None:
    x, y, g = data()
    x[:, 3] = 5.0
    head = logistic_head(x, y, g, C=1.0, fits=1, generator=np.random.default_rng(0))
    assert np.isfinite(head.weight).all() and np.isfinite(head.bias).all() and head.weight[0, 3] == 0.0


def test_c_is_the_best_mean_worst_group_accuracy_on_the_halves() -> None:
    """Every C of the grid is scored; the strongest penalty (C = 0.01) zeroes every coefficient on these
    features, so it predicts one label and its worst group scores 0; C* is the grid's argmax."""
    x, y, g = data(n=600)
    head = logistic_head(x, y, g, C=None, fits=4, generator=np.random.default_rng(1))
    assert set(head.scores) == set(C_GRID) and all(0.0 <= v <= 1.0 for v in head.scores.values())
    assert head.scores[0.01] == 0.0 and head.scores[1.0] > 0.7
    assert max(C_GRID, key=lambda c: (head.scores[c], c)) == head.C
    assert head.scores[head.C] == max(head.scores.values())
    again = logistic_head(x, y, g, C=None, fits=4, generator=np.random.default_rng(1))
    assert again.scores == head.scores and np.array_equal(again.weight, head.weight)  # seeded


def test_ties_in_the_score_go_to_the_weaker_penalty() -> None:
    """Labels that no feature predicts: every C scores the same worst-group accuracy on some halves; the larger C
    wins the tie."""
    gen = np.random.default_rng(3)
    x = gen.normal(size=(80, 4)).astype(np.float32)
    y = np.tile([0.0, 1.0], 40).astype(np.float32)
    g = np.tile([0, 1, 2, 3], 20)
    head = logistic_head(x, y, g, C=None, fits=2, generator=np.random.default_rng(0), grid=(0.01, 0.02))
    assert head.scores[0.01] == head.scores[0.02] == 0.0 and head.C == 0.02


def test_worst_group_accuracy_by_hand() -> None:
    """z = (−1, 1, 2, −2, 3), β = 1, β₀ = 0 → ŷ = (0, 1, 1, 0, 1); y = (0, 1, 0, 0, 0); groups (0, 0, 1, 1, 2):
    accuracies 1, 1/2, 0 → 0. A multi-label target averages its columns' accuracies per example first."""
    z = np.array([[-1.0], [1.0], [2.0], [-2.0], [3.0]])
    y = np.array([[0.0], [1.0], [0.0], [0.0], [0.0]])
    groups = np.array([0, 0, 1, 1, 2])
    assert worst_group_accuracy(z, y, groups, np.array([[1.0]]), np.array([0.0])) == 0.0
    assert worst_group_accuracy(z[:4], y[:4], groups[:4], np.array([[1.0]]), np.array([0.0])) == 0.5
    two = np.hstack([y, 1 - y])  # second column: always wrong where the first is right
    assert worst_group_accuracy(z[:2], two[:2], groups[:2], np.array([[1.0], [1.0]]), np.array([0.0, 0.0])) == 0.5


def test_halves_split_every_group() -> None:
    groups = np.repeat([0, 1, 2, 3], [5, 8, 1, 2])
    first, second = halves(groups, np.random.default_rng(0))
    assert np.bincount(groups[first], minlength=4).tolist() == [2, 4, 0, 1]
    assert np.bincount(groups[second], minlength=4).tolist() == [3, 4, 1, 1]
    assert sorted([*first, *second]) == list(range(groups.size))
    again = halves(groups, np.random.default_rng(0))
    assert np.array_equal(again[0], first) and not np.array_equal(halves(groups, np.random.default_rng(1))[0], first)


def test_tuning_works_when_a_label_is_rare() -> None:
    """Two examples in each y = 0 cell, thirty in each y = 1 cell: every tuning half still has both labels."""
    x, _, _ = data(n=64)
    g = np.repeat([0, 2, 1, 3], [2, 2, 30, 30])
    y = (g % 2).astype(np.float32)
    head = logistic_head(x, y, g, C=None, fits=10, generator=np.random.default_rng(0))
    assert set(head.scores) == set(C_GRID)


def test_a_set_with_one_label_says_which_set_and_what_to_give() -> None:
    x, y, g = data()
    with pytest.raises(ValueError, match=r"the balanced held-out set has only label 1 in target column 0.*larger "
                                         r"validation split"):
        logistic_head(x, np.ones_like(y), g, C=1.0, fits=1, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"a balanced half used to tune C has only label 1.*or fix C"):
        logistic_head(x, np.ones_like(y), g, C=None, fits=1, generator=np.random.default_rng(0))

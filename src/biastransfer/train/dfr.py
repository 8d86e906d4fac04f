"""DFR's held-out set and its ℓ1-regularised logistic-regression head (Kirichenko et al. 2022).

:func:`balanced_subsample` draws the group-balanced held-out set B of both DFR solvers. :func:`logistic_head` is
the paper's own last-layer fit (their ``dfr_on_validation_tune`` and ``dfr_on_validation_eval``, in our terms):

1. Standardise: μ, σ per feature over the whole held-out split (σ = 1 where a feature is constant); z = (φ − μ)/σ.
2. Tune C (unless given): ``fits`` times, split the held-out split in two random halves, every group in half
   (:func:`halves`); balance the first (:func:`balanced_subsample`) and fit, for every C of the grid, an
   ℓ1-penalised ``LogisticRegression(l1_ratio=1, C=C)`` (scikit-learn, liblinear) on it; score it by its
   worst-group accuracy on the second half, min_g mean_{i∈g} [ŷ_i = y_i]. C* = the C of the highest mean score
   over the fits (the larger C on a tie).
3. Fit: ``fits`` times, balance the whole held-out split and fit the regression with C*; average the
   coefficients β and intercepts β₀ over the fits.
4. Back to the head on φ: W = β/σ, b = β₀ − Σ_j β_j·μ_j/σ_j, so that W·φ + b = β·z + β₀.

A target with several binary columns (multi-label) fits one regression per column and scores a group by the
mean accuracy over columns. Every draw is seeded from the run's seed.

Where this differs from the authors' script (``dfr_evaluate_spurious.py``): it tunes on one random halving of the
validation data, here on ``fits`` halvings split per group (a small split keeps every cell in both halves); its
standardiser is fitted on the balanced half while tuning and on the training set's features for the final fit,
here on the whole held-out split throughout; it averages 20 final fits, here ``fits`` (default 20).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

C_GRID: tuple[float, ...] = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
"""The inverse regularisation strengths Kirichenko et al. search for DFR."""


def _shuffled_groups(groups: np.ndarray, generator: np.random.Generator) -> list[np.ndarray]:
    """Each group's positions in a random order: one permutation per group, groups ascending."""
    return [generator.permutation(np.flatnonzero(groups == g)) for g in np.unique(groups)]


def balanced_subsample(groups: np.ndarray, generator: np.random.Generator) -> np.ndarray:
    """Positions (ascending) of a group-balanced subset: every group present keeps k = the smallest group's count
    examples, drawn without replacement (one permutation per group, groups ascending)."""
    shuffled = _shuffled_groups(np.asarray(groups), generator)
    if not shuffled:
        raise ValueError("dfr: the held-out split is empty")
    k = min(p.size for p in shuffled)
    return np.sort(np.concatenate([p[:k] for p in shuffled]))


@dataclass
class LogisticHead:
    """The fitted last layer on the raw features: ``weight`` (K, d), ``bias`` (K,), and how it was chosen."""

    weight: np.ndarray
    bias: np.ndarray
    C: float
    scores: dict[float, float] = field(default_factory=dict)
    """Mean worst-group accuracy on the second halves per C of the grid (empty when C was given)."""
    nonzero: int = 0
    """Non-zero averaged coefficients (the ℓ1 penalty's sparsity)."""


def _fit(z: np.ndarray, y: np.ndarray, C: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """β (K, d), β₀ (K,): one ℓ1 logistic regression per binary column of ``y`` (n, K); ``what`` names the set in
    an error."""
    coefs, intercepts = [], []
    for k in range(y.shape[1]):
        column = y[:, k]
        if np.unique(column).size < 2:
            raise ValueError(f"dfr (solver l1_logistic): {what} has only label {column[0]:g} in target column {k}; "
                             "logistic regression needs both labels (give a larger validation split, n_val, or "
                             "fix C to skip the tuning)")
        model = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", random_state=seed)  # ℓ1 penalty
        model.fit(z, column)
        coefs.append(model.coef_[0]), intercepts.append(model.intercept_[0])
    return np.stack(coefs), np.asarray(intercepts)


def worst_group_accuracy(z: np.ndarray, y: np.ndarray, groups: np.ndarray, coef: np.ndarray,
                         intercept: np.ndarray) -> float:
    """min_g mean_{i∈g} [ŷ_i = y_i] (ŷ = [β·z + β₀ > 0], averaged over the target's columns first)."""
    correct = ((z @ coef.T + intercept > 0) == (y > 0.5)).mean(axis=1)
    return float(min(correct[groups == g].mean() for g in np.unique(groups)))


def halves(groups: np.ndarray, generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Positions (ascending) of two halves that split every group: a random ⌊n_g/2⌋ of group g's examples in the
    first, the rest in the second (so a group with one example is only in the second)."""
    shuffled = _shuffled_groups(groups, generator)
    return (np.sort(np.concatenate([p[: p.size // 2] for p in shuffled])),
            np.sort(np.concatenate([p[p.size // 2:] for p in shuffled])))


def logistic_head(features: np.ndarray, targets: np.ndarray, groups: np.ndarray, *, C: float | None,
                  fits: int, generator: np.random.Generator, grid: Sequence[float] = C_GRID) -> LogisticHead:
    """The DFR head of the module's steps 1–4 on the held-out split's ``features`` (n, d), binary ``targets``
    (n,) or (n, K) and ``groups`` (n,)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64).reshape(len(x), -1)
    groups = np.asarray(groups)
    mu, sigma = x.mean(axis=0), x.std(axis=0)
    sigma[sigma == 0] = 1.0
    z = (x - mu) / sigma

    def seed() -> int:
        return int(generator.integers(2 ** 31 - 1))

    scores: dict[float, float] = {}
    if C is None:
        totals = dict.fromkeys(grid, 0.0)
        for _ in range(fits):
            first, second = halves(groups, generator)
            keep = first[balanced_subsample(groups[first], generator)]
            fit_seed = seed()
            for c in grid:
                coef, intercept = _fit(z[keep], y[keep], c, fit_seed, "a balanced half used to tune C")
                totals[c] += worst_group_accuracy(z[second], y[second], groups[second], coef, intercept)
        scores = {c: totals[c] / fits for c in grid}
        C = max(grid, key=lambda c: (scores[c], c))
    coefs, intercepts = [], []
    for _ in range(fits):
        keep = balanced_subsample(groups, generator)
        coef, intercept = _fit(z[keep], y[keep], C, seed(), "the balanced held-out set")
        coefs.append(coef), intercepts.append(intercept)
    beta, beta0 = np.mean(coefs, axis=0), np.mean(intercepts, axis=0)
    weight = beta / sigma
    return LogisticHead(weight=weight, bias=beta0 - weight @ mu, C=float(C), scores=scores,
                        nonzero=int(np.count_nonzero(beta)))

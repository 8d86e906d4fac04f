"""Directional bias amplification, BiasAmp→ (Wang & Russakovsky, ICML 2021).

A = attributes (columns of an n×|A| 0/1 matrix), T = tasks (n×|T|). For every pair (a, t):

    y_at = 1[ P(A_a=1, T_t=1) > P(A_a=1)·P(T_t=1) ]          on the *training* labels
    Δ_at = P(T̂_t=1 | A_a=1) − P(T_t=1 | A_a=1)               direction "A->T" (test set)
    Δ_at = P(Â_a=1 | T_t=1) − P(A_a=1 | T_t=1)               direction "T->A" (test set)
    BiasAmp = 1/(|A||T|) · Σ_{a,t} [ y_at·Δ_at + (1 − y_at)·(−Δ_at) ]

i.e. the mean of sign_at·Δ_at with sign_at = +1 for positively correlated pairs and −1 otherwise.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from biastransfer.metrics._validate import as_binary, same_length
from biastransfer.metrics.rates import UndefinedRateWarning

Direction = Literal["A->T", "T->A"]


def _matrix(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values)
    arr = arr.reshape(-1, 1) if arr.ndim == 1 else arr
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (examples × labels); got shape {arr.shape}")
    return as_binary(arr.ravel(), name).reshape(arr.shape).astype(float)


def _conditional(outcome: NDArray[np.float64], given: NDArray[np.float64]) -> NDArray[np.float64]:
    """Matrix [g, o] = P(outcome_o = 1 | given_g = 1); NaN where given_g is never 1."""
    support = given.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (given.T @ outcome) / support[:, None]


def _warn_empty(given: NDArray[np.float64], name: str) -> None:
    empty = np.flatnonzero(given.sum(axis=0) == 0).tolist()
    if empty:
        warnings.warn(f"BiasAmp: column(s) {empty} of {name} are never 1, so their Δ is undefined (NaN)",
                      UndefinedRateWarning, 3)


def _correlation_sign(attrs: NDArray[np.float64], tasks: NDArray[np.float64]) -> NDArray[np.float64]:
    """+1 where P(A_a=1, T_t=1) > P(A_a=1)·P(T_t=1) on the training labels, else −1 (matrix [a, t])."""
    joint = attrs.T @ tasks / attrs.shape[0]
    independent = np.outer(attrs.mean(axis=0), tasks.mean(axis=0))
    return np.where(joint > independent, 1.0, -1.0)


def bias_amplification(
    train_attrs: ArrayLike,
    train_tasks: ArrayLike,
    test_attrs: ArrayLike,
    test_tasks: ArrayLike,
    predictions: ArrayLike,
    direction: Direction = "A->T",
) -> float:
    """BiasAmp→ in ``direction`` (see the module docstring for the formula).

    ``predictions`` are the predicted tasks T̂ (n_test × |T|) for "A->T", or the predicted
    attributes Â (n_test × |A|) for "T->A". All inputs are 0/1; 1-D inputs are one column.
    Positive values mean the model amplifies the training correlations. NaN if some pair's Δ is
    undefined (a conditioning column is never 1 in the test set).
    """
    if direction not in ("A->T", "T->A"):
        raise ValueError(f"direction must be 'A->T' or 'T->A'; got {direction!r}")
    train_a, train_t = _matrix(train_attrs, "train_attrs"), _matrix(train_tasks, "train_tasks")
    attrs, tasks = _matrix(test_attrs, "test_attrs"), _matrix(test_tasks, "test_tasks")
    pred = _matrix(predictions, "predictions")
    same_length(train_attrs=train_a, train_tasks=train_t)
    same_length(test_attrs=attrs, test_tasks=tasks, predictions=pred)
    sign = _correlation_sign(train_a, train_t)
    truth = tasks if direction == "A->T" else attrs
    if pred.shape != truth.shape:
        target = "test_tasks" if direction == "A->T" else "test_attrs"
        raise ValueError(f"predictions must have the shape of {target} {truth.shape}; got {pred.shape}")
    given, given_name = (attrs, "test_attrs") if direction == "A->T" else (tasks, "test_tasks")
    _warn_empty(given, given_name)
    delta = _conditional(pred, given) - _conditional(truth, given)  # [given, predicted]
    delta = delta if direction == "A->T" else delta.T  # always [a, t]
    if sign.shape != delta.shape:
        raise ValueError(f"train and test label matrices disagree: {sign.shape} pairs vs {delta.shape}")
    return float(np.mean(sign * delta))

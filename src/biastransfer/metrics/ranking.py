"""Threshold-free ranking metrics: ROC AUC, average precision and normalised AP (Hoiem et al.)."""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import average_precision_score, roc_auc_score

from biastransfer.metrics._validate import as_1d, as_binary, same_length
from biastransfer.metrics.rates import UndefinedRateWarning


def _inputs(y_true: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = as_binary(y_true, "y_true")
    s = as_1d(scores, "scores")
    same_length(y_true=y, scores=s)
    return y, s


def auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC = P(score of a random positive > score of a random negative) + ½·P(tie).

    Computed with ``sklearn.metrics.roc_auc_score``. NaN with an :class:`UndefinedRateWarning`
    when only one class is present (the AUC needs at least one positive and one negative).
    """
    y, s = _inputs(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        warnings.warn(
            f"AUC is undefined (NaN): {y.size} example(s) with {n_pos} positive(s); both classes are needed",
            UndefinedRateWarning,
            2,
        )
        return math.nan
    return float(roc_auc_score(y, s))


def average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """AP = Σ_k (R_k − R_{k−1}) · P_k over the distinct score thresholds, in decreasing order.

    P_k = TP_k / (TP_k + FP_k) and R_k = TP_k / P at the k-th threshold (no interpolation; this is
    ``sklearn.metrics.average_precision_score``). NaN with a warning when there are no positives.
    """
    y, s = _inputs(y_true, scores)
    if y.sum() == 0:
        warnings.warn("average precision is undefined (NaN): no positives", UndefinedRateWarning, 2)
        return math.nan
    return float(average_precision_score(y, s))


def normalized_average_precision(
    y_true: ArrayLike, scores: ArrayLike, n_pos_ref: float | None = None
) -> float:
    """Normalised AP (Hoiem et al. 2012): AP with precision rescaled to N_ref positives.

    At each threshold k, with P positives in the data, recall R_k = TP_k / P and

        P̃_k = R_k·N_ref / (R_k·N_ref + FP_k)        (TP_k rescaled to TP_k·N_ref/P)

    and NAP = Σ_k (R_k − R_{k−1})·P̃_k, the same step sum as :func:`average_precision`.
    With N_ref = P it equals plain AP. ``n_pos_ref=None`` uses N_ref = n/2 (the precision the
    model would have if half of the n examples were positive), so classes with different base
    rates on the same evaluation set become comparable; for several classes pass Hoiem's choice,
    the mean number of positives per class (see :func:`normalized_mean_average_precision`).
    """
    y, s = _inputs(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        warnings.warn("normalised AP is undefined (NaN): no positives", UndefinedRateWarning, 2)
        return math.nan
    n_ref = y.size / 2 if n_pos_ref is None else float(n_pos_ref)
    if not n_ref > 0:
        raise ValueError(f"n_pos_ref must be positive; got {n_pos_ref}")
    true_pos, false_pos = _counts_at_thresholds(y, s)
    recall = true_pos / n_pos
    scaled_tp = recall * n_ref
    precision = scaled_tp / (scaled_tp + false_pos)  # scaled_tp + false_pos > 0 at every threshold
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _counts_at_thresholds(
    y: NDArray[np.int64], s: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Cumulative TP and FP when predicting positive for ``s >= t``, t over distinct scores (descending)."""
    order = np.argsort(-s, kind="mergesort")
    y_sorted, s_sorted = y[order], s[order]
    last_of_run = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), y.size - 1]
    true_pos = np.cumsum(y_sorted)[last_of_run].astype(float)
    false_pos = (last_of_run + 1) - true_pos
    return true_pos, false_pos


def normalized_mean_average_precision(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Mean normalised AP over the columns (classes) of 2-D ``y_true`` and ``scores``.

    N_ref = mean number of positives per class (Hoiem et al.); classes without positives are NaN
    (with a warning) and skipped by the mean.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must be 2-D of the same shape; got {y.shape} and {s.shape}")
    n_ref = float(np.mean(y.sum(axis=0)))
    values = [normalized_average_precision(y[:, c], s[:, c], n_pos_ref=n_ref) for c in range(y.shape[1])]
    return float(np.nanmean(values)) if not np.isnan(values).all() else math.nan

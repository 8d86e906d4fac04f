"""Aggregation of finished runs over seeds: means with Student-t 95% confidence intervals, and paired differences.

Input is a tidy runs frame (one row per finished run). A *group* is the set of runs that share every setting
column (``by``: for an experiment kind, the settings its outcome schema declares) and differ only in their seed.

For a metric ``m`` and the ``n`` seeds of a group with values ``x_1 … x_n`` (NaN values are dropped):

    mean  = (1/n) Σ x_i
    s     = sqrt( Σ (x_i − mean)² / (n − 1) )              (sample standard deviation)
    low, high = mean ∓ t_{0.975, n−1} · s / sqrt(n)         (Student-t, two-sided 95%)

computed by :func:`biastransfer.metrics.intervals.t_interval`. With ``n = 1`` the bounds are NaN (no interval
can be claimed from one seed). The original scripts used ``1.96·std/n``, which is wrong twice over
(docs/protocols.md §9).

Two settings finetuned on the same set at each seed (every base at one level, for instance) are compared by their
**paired** difference ``d_s = x_s − y_s`` over the seeds both have, with the same Student-t interval
(:func:`paired_interval`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from biastransfer.metrics.intervals import DroppedValuesWarning, t_interval

__all__ = ["abs_interval", "aggregate", "as_bool", "interval", "paired_interval"]


def interval(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of ``values``; all-NaN or empty gives NaNs silently (the metric does not apply)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan
    iv = t_interval(values, confidence=0.95)
    return float(iv.mean), float(iv.low), float(iv.high)


def aggregate(runs: pd.DataFrame, metrics: Sequence[str], by: Sequence[str]) -> pd.DataFrame:
    """Aggregate runs over seeds.

    Args:
        runs: the tidy runs frame (one row per run).
        metrics: metric columns to aggregate; metrics missing from ``runs`` are skipped.
        by: grouping (setting) columns; those missing from ``runs`` are skipped.

    Returns:
        One row per group: the grouping columns, ``n_seeds`` (number of runs in the group) and, per metric
        ``m``, ``m_mean``, ``m_low``, ``m_high`` (Student-t 95% interval over seeds; NaN bounds when only one
        seed). Rows are sorted by the grouping columns; a metric that is NaN for every run of a group is NaN
        without a warning, a NaN among finite values is dropped with a warning.
    """
    metrics = [m for m in metrics if m in runs.columns]
    keys = [k for k in by if k in runs.columns]
    out_cols = [*keys, "n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "low", "high")]
    if runs.empty:
        return pd.DataFrame(columns=out_cols)
    records: list[dict[str, object]] = []
    grouped = runs.groupby(keys, dropna=False, sort=False) if keys else [((), runs)]
    for key, group in grouped:
        key_tuple = key if isinstance(key, tuple) else (key,)
        rec: dict[str, object] = dict(zip(keys, key_tuple, strict=True))
        rec["n_seeds"] = len(group)
        for m in metrics:
            mean, low, high = interval(pd.to_numeric(group[m], errors="coerce").to_numpy(dtype=float))
            rec[f"{m}_mean"], rec[f"{m}_low"], rec[f"{m}_high"] = mean, low, high
        records.append(rec)
    out = pd.DataFrame.from_records(records, columns=out_cols)
    if keys:
        out = out.sort_values(keys, na_position="first", kind="mergesort").reset_index(drop=True)
    return out


def paired_interval(a: pd.Series, b: pd.Series) -> tuple[float, float, float, int]:
    """Student-t interval of ``a − b`` over the seeds both have (Series indexed by seed):
    ``(mean, low, high, number of pairs)``; NaN pairs are left out."""
    common = a.index.intersection(b.index)
    d = (a.loc[common] - b.loc[common]).to_numpy(dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan, math.nan, math.nan, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedValuesWarning)
        iv = t_interval(d)
    return float(iv.mean), float(iv.low), float(iv.high), int(d.size)


def abs_interval(mean: float, low: float, high: float) -> tuple[float, float, float]:
    """Map an interval for a signed quantity to one for its magnitude.

    ``|mean|`` with bounds ``[min(|low|, |high|), max(|low|, |high|)]`` when the interval excludes 0, and
    ``[0, max(|low|, |high|)]`` when it contains 0. NaN bounds stay NaN.
    """
    if math.isnan(low) or math.isnan(high):
        return abs(mean), math.nan, math.nan
    if low <= 0.0 <= high:
        return abs(mean), 0.0, max(abs(low), abs(high))
    return abs(mean), min(abs(low), abs(high)), max(abs(low), abs(high))


def as_bool(series: pd.Series) -> pd.Series:
    """Coerce a column of bools / "True"/"False" strings / 0-1 numbers to bool (missing → False)."""

    def conv(v: object) -> bool:
        if isinstance(v, str):
            return v.strip().lower() in {"true", "1", "yes"}
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        return bool(v)

    return series.map(conv).astype(bool)

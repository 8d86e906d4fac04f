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

Counts: ``m_n`` is the ``n`` of metric ``m`` (its finite values in the group), and ``n_seeds`` the number of
distinct seeds among the group's runs with at least one finite metric; a run whose every metric is NaN (the
metric does not apply) is not counted. A reading that quotes the seeds behind one metric quotes ``m_n``.

Two settings finetuned on the same set at each seed (every base at one level, for instance) are compared by their
**paired** difference ``d_s = x_s − y_s`` over the seeds ``s`` where both are finite, with the same Student-t
interval on ``d_1 … d_n`` (:func:`paired_interval`, and :func:`paired_frame` for every pair of one column's
values in every group). Pairing removes what the two share at a seed (the finetuning set, the test draw), so the
paired interval is usually much narrower than the two separate intervals.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from biastransfer.metrics.intervals import DroppedValuesWarning, t_interval

__all__ = ["STAT_SUFFIXES", "abs_interval", "aggregate", "as_bool", "interval", "paired_frame", "paired_interval"]

#: Suffixes of the per-metric columns of :func:`aggregate` (every other column but ``n_seeds`` is a setting).
STAT_SUFFIXES = ("_mean", "_low", "_high", "_n")


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
        One row per group: the grouping columns, ``n_seeds`` and, per metric ``m``, ``m_mean``, ``m_low``,
        ``m_high`` (Student-t 95% interval over seeds; NaN bounds when only one seed) and ``m_n`` (the number of
        finite values of ``m``). ``n_seeds`` is the number of distinct seeds (column ``seed``; runs when there is
        none) among the runs with at least one finite metric (all runs when ``metrics`` is empty). Rows are
        sorted by the grouping columns; a metric that is NaN for every run of a group is NaN without a warning,
        a NaN among finite values is dropped with a warning.
    """
    metrics = [m for m in metrics if m in runs.columns]
    keys = [k for k in by if k in runs.columns]
    out_cols = [*keys, "n_seeds"] + [f"{m}_{s}" for m in metrics for s in ("mean", "low", "high", "n")]
    if runs.empty:
        return pd.DataFrame(columns=out_cols)
    records: list[dict[str, object]] = []
    grouped = runs.groupby(keys, dropna=False, sort=False) if keys else [((), runs)]
    for key, group in grouped:
        key_tuple = key if isinstance(key, tuple) else (key,)
        rec: dict[str, object] = dict(zip(keys, key_tuple, strict=True))
        any_finite = np.zeros(len(group), dtype=bool) if metrics else np.ones(len(group), dtype=bool)
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").to_numpy(dtype=float)
            finite = np.isfinite(values)
            any_finite |= finite
            mean, low, high = interval(values)
            rec[f"{m}_mean"], rec[f"{m}_low"], rec[f"{m}_high"] = mean, low, high
            rec[f"{m}_n"] = int(finite.sum())
        rec["n_seeds"] = _n_seeds(group, any_finite)
        records.append(rec)
    out = pd.DataFrame.from_records(records, columns=out_cols)
    if keys:
        out = out.sort_values(keys, na_position="first", kind="mergesort").reset_index(drop=True)
    return out


def _n_seeds(group: pd.DataFrame, counted: np.ndarray) -> int:
    """Distinct seeds of the rows of ``group`` selected by ``counted`` (rows when there is no ``seed`` column)."""
    if "seed" not in group.columns:
        return int(counted.sum())
    return int(group["seed"][counted].nunique())


def paired_interval(a: pd.Series, b: pd.Series, *, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """Student-t interval of the paired difference ``a − b`` (Series indexed by seed).

    ``d_s = a_s − b_s`` over the seeds ``s`` both have, NaN pairs left out; with ``n`` such pairs,
    ``mean = (1/n) Σ d_s`` and ``low, high = mean ∓ t_{(1+confidence)/2, n−1} · sd(d) / √n`` (two-sided;
    ``confidence`` 0.95 unless given). Returns ``(mean, low, high, n)``; NaN bounds when ``n = 1``, all NaN and
    ``n = 0`` when no pair is left."""
    common = a.index.intersection(b.index)
    d = (a.loc[common] - b.loc[common]).to_numpy(dtype=float)
    d = d[~np.isnan(d)]
    if d.size == 0:
        return math.nan, math.nan, math.nan, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DroppedValuesWarning)
        iv = t_interval(d, confidence=confidence)
    return float(iv.mean), float(iv.low), float(iv.high), int(d.size)


def paired_frame(runs: pd.DataFrame, by: Sequence[str], metric: str, *, pair_col: str = "base",
                 seed_col: str = "seed") -> pd.DataFrame:
    """Paired intervals between the values of ``pair_col`` within every group of ``by``.

    A group is the set of runs that share every column of ``by`` (those missing from ``runs`` and ``pair_col``
    itself are skipped). Inside a group each value ``x`` of ``pair_col`` gives a series ``metric`` by seed (the
    mean when a seed repeats), and every ordered pair ``(x, y)``, ``x ≠ y``, gets :func:`paired_interval` of
    ``x − y``. Returns one row per group and ordered pair: the ``by`` columns, ``{pair_col}_a`` (x),
    ``{pair_col}_b`` (y), ``mean``, ``low``, ``high`` and ``n_pairs``.
    """
    keys = [k for k in by if k in runs.columns and k != pair_col]
    cols = [*keys, f"{pair_col}_a", f"{pair_col}_b", "mean", "low", "high", "n_pairs"]
    if runs.empty or metric not in runs.columns:
        return pd.DataFrame(columns=cols)
    records: list[dict[str, object]] = []
    grouped = runs.groupby(keys, dropna=False, sort=True) if keys else [((), runs)]
    for key, group in grouped:
        key_tuple = key if isinstance(key, tuple) else (key,)
        values = pd.to_numeric(group[metric], errors="coerce").astype(float)
        series = {x: s.groupby(group.loc[s.index, seed_col]).mean()
                  for x, s in values.groupby(group[pair_col], sort=True)}
        for x, sx in series.items():
            for y, sy in series.items():
                if x == y:
                    continue
                mean, low, high, n = paired_interval(sx, sy)
                records.append({**dict(zip(keys, key_tuple, strict=True)), f"{pair_col}_a": x, f"{pair_col}_b": y,
                                "mean": mean, "low": low, "high": high, "n_pairs": n})
    return pd.DataFrame.from_records(records, columns=cols)


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

"""Audit any model's predictions: AUC, calibrated threshold, per-group rates and gaps.

:func:`evaluate_predictions` works on arrays; :func:`audit_csv` reads a predictions CSV (one row per
example: a 0/1 label, a score, a group column and optionally a split column) and applies a threshold
policy. Results are plain dicts; floats may be NaN (and the threshold +inf). :func:`to_json` writes
them as strict JSON, with ``null`` for every NaN or infinite value.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from biastransfer.metrics._validate import as_1d, as_binary, same_length
from biastransfer.metrics.ranking import auc
from biastransfer.metrics.rates import (
    DEFAULT_GROUP_NAMES,
    GroupRates,
    UndefinedRateWarning,
    gaps,
    group_rates,
)
from biastransfer.metrics.threshold import (
    ThresholdPolicy,
    cell_proportions,
    parse_threshold_policy,
    resolve_threshold,
)


class AuditError(ValueError):
    """A problem with a predictions file or audit option, phrased for the user."""


@dataclass(frozen=True)
class PredictionTable:
    """Predictions read from a CSV: 0/1 labels, scores, 0/1 group codes with names, optional split."""

    labels: NDArray[np.int64]
    scores: NDArray[np.float64]
    groups: NDArray[np.int64]
    group_names: tuple[str, str]
    split: NDArray[np.str_] | None
    source: str

    @property
    def has_val_rows(self) -> bool:
        """Whether a split column exists and has rows equal to 'val'."""
        return self.split is not None and bool(np.any(self.split == "val"))


# ---------------------------------------------------------------------------------------------
# arrays -> metrics


def _group_auc(y: NDArray[np.int64], s: NDArray[np.float64], rates: GroupRates) -> float:
    """AUC inside one group; NaN with a warning naming the group when it lacks a class."""
    if rates.positives == 0 or rates.negatives == 0:
        warnings.warn(
            f"group {rates.name!r} (a={rates.group}) has {rates.positives} positive(s) and "
            f"{rates.negatives} negative(s): its AUC is undefined (NaN)",
            UndefinedRateWarning,
            3,
        )
        return math.nan
    return auc(y, s)


def _group_entry(rates: GroupRates, group_auc: float) -> dict[str, Any]:
    entry = rates.to_dict()
    entry.pop("name")
    entry["auc"] = group_auc
    return entry


def evaluate_predictions(
    y_true: ArrayLike,
    scores: ArrayLike,
    groups: ArrayLike,
    *,
    threshold: float,
    group_names: tuple[str, str] = DEFAULT_GROUP_NAMES,
) -> dict[str, Any]:
    """All audit metrics of scored predictions at a given threshold (predict 1 when score >= threshold).

    Returns a dict with ``n``, ``positives``, ``base_rate``, ``positive_rate``, ``threshold``,
    ``auc``, ``fpr_diff``, ``tpr_diff``, ``eo_diff``, ``auc_diff`` (all gaps group a=1 minus a=0),
    ``gap_label`` (e.g. "Women − Men"), ``minuend``, ``subtrahend`` and ``groups``: group name →
    {group, count, positives, negatives, tpr, fpr, tnr, fnr, positive_rate, base_rate, auc}.
    Undefined values are NaN (with an :class:`UndefinedRateWarning`).
    """
    y = as_binary(y_true, "y_true")
    s = as_1d(scores, "scores")
    a = as_binary(groups, "groups", allowed="group codes")
    same_length(y_true=y, scores=s, groups=a)
    y_pred = (s >= threshold).astype(np.int64)
    rates = group_rates(y, y_pred, a, group_names)
    group_aucs = {g: _group_auc(y[a == g], s[a == g], rates[g]) for g in (0, 1)}
    gap = gaps(rates)
    return {
        "n": int(y.size),
        "positives": int(y.sum()),
        "base_rate": float(y.mean()) if y.size else math.nan,
        "positive_rate": float(y_pred.mean()) if y.size else math.nan,
        "threshold": float(threshold),
        "auc": auc(y, s),
        "fpr_diff": gap.fpr_diff,
        "tpr_diff": gap.tpr_diff,
        "eo_diff": gap.eo_diff,
        "auc_diff": group_aucs[1] - group_aucs[0],
        "gap_label": gap.label,
        "minuend": gap.minuend,
        "subtrahend": gap.subtrahend,
        "groups": {rates[g].name: _group_entry(rates[g], group_aucs[g]) for g in (0, 1)},
    }


# ---------------------------------------------------------------------------------------------
# CSV -> PredictionTable


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise AuditError(f"predictions file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise AuditError(f"{path} is empty: it has no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise AuditError(f"cannot read {path} as CSV: {exc}") from None
    if frame.empty:
        raise AuditError(f"{path} has no rows (only its header: {', '.join(map(str, frame.columns))})")
    return frame


def _column(frame: pd.DataFrame, column: str, role: str, source: str) -> pd.Series:
    if column not in frame.columns:
        available = ", ".join(repr(str(c)) for c in frame.columns)
        raise AuditError(f"{role} column {column!r} not found in {source}; available columns: {available}")
    series = frame[column]
    missing = int(series.isna().sum())
    if missing:
        raise AuditError(f"{role} column {column!r} has {missing} missing value(s)")
    return series


def _shown(values: list[Any], limit: int = 10) -> str:
    return ", ".join(repr(v) for v in values[:limit]) + (", ..." if len(values) > limit else "")


def _labels(series: pd.Series, column: str) -> NDArray[np.int64]:
    numeric = pd.to_numeric(series.astype(int) if series.dtype == bool else series, errors="coerce")
    if numeric.isna().any() or not numeric.isin([0, 1]).all():
        found = sorted({str(v) for v in series.unique()})
        raise AuditError(f"label column {column!r} must be binary (0/1); found values: {_shown(found)}")
    return numeric.to_numpy(dtype=np.int64)


def _scores(series: pd.Series, column: str) -> NDArray[np.float64]:
    numeric = pd.to_numeric(series, errors="coerce")
    if numeric.isna().any():
        bad = sorted({str(v) for v in series[numeric.isna()].unique()})
        raise AuditError(f"score column {column!r} must be numeric; found: {_shown(bad)}")
    values = numeric.to_numpy(dtype=float)
    infinite = np.flatnonzero(~np.isfinite(values))
    if infinite.size:
        raise AuditError(f"score column {column!r} has {infinite.size} infinite value(s) (first at data row "
                         f"{infinite[0] + 1}: {values[infinite[0]]}); scores must be finite (clip or drop them)")
    return values


def _groups(series: pd.Series, column: str) -> tuple[NDArray[np.int64], tuple[str, str]]:
    """0/1 codes and names: a 0/1 column keeps its codes; two other values map sorted → 0, 1."""
    values = series.astype(int) if series.dtype == bool else series
    if pd.api.types.is_numeric_dtype(values) and values.isin([0, 1]).all():
        return values.to_numpy(dtype=np.int64), (f"{column}=0", f"{column}=1")
    as_text = values.astype(str)
    unique = sorted(values.unique()) if pd.api.types.is_numeric_dtype(values) else sorted(as_text.unique())
    if len(unique) != 2:
        raise AuditError(
            f"group column {column!r} must have exactly two values (or be coded 0/1); "
            f"found {len(unique)}: {_shown([str(u) for u in unique])}"
        )
    source = values if pd.api.types.is_numeric_dtype(values) else as_text
    return (source == unique[1]).to_numpy(dtype=np.int64), (str(unique[0]), str(unique[1]))


def load_predictions(
    path: str | Path, label: str, score: str, group: str, split_col: str = "split"
) -> PredictionTable:
    """Read and validate a predictions CSV (see :func:`audit_csv`)."""
    path = Path(path)
    frame = _read_csv(path)
    labels = _labels(_column(frame, label, "label", path.name), label)
    scores = _scores(_column(frame, score, "score", path.name), score)
    codes, names = _groups(_column(frame, group, "group", path.name), group)
    split = None
    if split_col in frame.columns:
        split = frame[split_col].astype(str).str.strip().str.lower().to_numpy(dtype=str)
    return PredictionTable(labels, scores, codes, names, split, str(path))


# ---------------------------------------------------------------------------------------------
# PredictionTable + policy -> audit


def _evaluation_rows(table: PredictionTable) -> tuple[NDArray[np.bool_], str]:
    """Rows to evaluate: split == 'test' if any, else split != 'val', else (no split column) all."""
    if table.split is None:
        return np.ones(table.labels.size, dtype=bool), "all rows"
    if np.any(table.split == "test"):
        return table.split == "test", "split == 'test'"
    mask = table.split != "val"
    if not mask.any():
        raise AuditError("every row has split == 'val': there are no rows to evaluate")
    return mask, "split != 'val'"


def _val_rows(table: PredictionTable, split_col: str, policy: str = "val") -> NDArray[np.bool_]:
    hint = "use threshold 'test' (calibrate on the evaluated rows) or a fixed number"
    if table.split is None:
        raise AuditError(
            f"threshold '{policy}' calibrates on rows with {split_col} == 'val', but {table.source} has no "
            f"{split_col!r} column; {hint}"
        )
    if not table.has_val_rows:
        found = sorted(set(table.split.tolist()))
        raise AuditError(
            f"threshold '{policy}': no rows with {split_col} == 'val' (found: {_shown(found)}); {hint}"
        )
    return table.split == "val"


class ThresholdRangeWarning(UserWarning):
    """A fixed threshold outside the range of the scores: every row is predicted the same class."""


def _warn_one_class(scores: NDArray[np.float64], threshold: float) -> None:
    """Warn when ``threshold`` puts every score on one side (predict 1 when score >= threshold)."""
    if scores.size == 0:
        return
    low, high = float(scores.min()), float(scores.max())
    if low < threshold <= high:
        return
    above = threshold > high
    where = "lies outside the range of" if above or threshold < low else "is the lowest of"
    warnings.warn(
        f"the threshold {threshold:g} {where} the scores [{low:.4g}, {high:.4g}] of the {scores.size} "
        f"evaluated rows: every prediction is {'negative (0)' if above else 'positive (1)'}, so FPR and TPR are "
        f"{0 if above else 1} in every group and their gaps say nothing about the model. Give a threshold inside "
        "the range (on the scores' scale: probabilities or logits), or 'val' / 'test' to calibrate one",
        ThresholdRangeWarning,
        3,
    )


def audit_table(
    table: PredictionTable, threshold: ThresholdPolicy | str | float = "val", split_col: str = "split"
) -> dict[str, Any]:
    """Apply the threshold policy to a loaded table and evaluate the evaluation rows."""
    try:
        policy = parse_threshold_policy(threshold)
    except ValueError as exc:
        raise AuditError(str(exc)) from None
    rows, rows_desc = _evaluation_rows(table)
    calib = _val_rows(table, split_col, str(policy)) if policy.on_val else rows
    value = resolve_threshold(
        policy,
        val_scores=table.scores[calib],
        val_labels=table.labels[calib],
        test_scores=table.scores[calib],
        test_labels=table.labels[calib],
        val_groups=table.groups[calib],
        target_cells=cell_proportions(table.labels[rows], table.groups[rows]),
    )
    if policy.kind == "fixed":
        _warn_one_class(table.scores[rows], value)
    result = evaluate_predictions(
        table.labels[rows],
        table.scores[rows],
        table.groups[rows],
        threshold=value,
        group_names=table.group_names,
    )
    result["threshold_policy"] = str(policy)
    result["calibration_rows"] = 0 if policy.kind == "fixed" else int(calib.sum())
    result["evaluated_rows"] = rows_desc
    result["source"] = table.source
    return result


def audit_csv(
    path: str | Path,
    label: str,
    score: str,
    group: str,
    threshold: ThresholdPolicy | str | float = "val",
    split_col: str = "split",
) -> dict[str, Any]:
    """Audit a predictions CSV.

    Evaluated rows: those with ``split == 'test'`` if the split column has any, else all rows not
    ``'val'``, else (no split column) all rows. Threshold policy: ``'val'`` calibrates on the
    ``split == 'val'`` rows (an :class:`AuditError` if there are none) reweighted so that their (group, label)
    cells have the evaluated rows' proportions (docs/metrics.md); ``'val-unweighted'`` calibrates on them as
    they are; ``'test'`` calibrates on the evaluated rows; a number is used as is. The group column is
    0/1 (names "<col>=0", "<col>=1") or has exactly two values, mapped in sorted order to 0 and 1 (so
    "Men"/"Women" gives gaps "Women − Men"). Every problem raises :class:`AuditError` with a message for the user.
    """
    table = load_predictions(path, label, score, group, split_col)
    return audit_table(table, threshold, split_col)


# ---------------------------------------------------------------------------------------------
# JSON


def to_jsonable(obj: Any) -> Any:
    """Copy of ``obj`` with NaN and ±inf floats replaced by ``None`` and numpy scalars made native."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(result: dict[str, Any], indent: int | None = 2) -> str:
    """Strict JSON text of an audit result (``null`` for NaN / infinite values)."""
    return json.dumps(to_jsonable(result), indent=indent, allow_nan=False, ensure_ascii=False)

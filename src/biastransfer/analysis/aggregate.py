"""Aggregation of finished runs over seeds: means with Student-t 95% confidence intervals.

Input is the tidy ``runs`` frame produced by the runner (one row per finished run). A *setting* is every
column that describes what was run (study, experiment, dataset, task, base, intervention, level, test level,
set size, threshold policy …); a *group* is the set of runs that share a setting and differ only in their
seed.

For a metric ``m`` and the ``n`` seeds of a group with values ``x_1 … x_n`` (NaN values are dropped):

    mean  = (1/n) Σ x_i
    s     = sqrt( Σ (x_i − mean)² / (n − 1) )              (sample standard deviation)
    low, high = mean ∓ t_{0.975, n−1} · s / sqrt(n)         (Student-t, two-sided 95%)

computed by :func:`biastransfer.metrics.intervals.t_interval`. With ``n = 1`` the bounds are NaN (no interval
can be claimed from one seed). Note the original scripts used ``1.96·std/n``, which is wrong twice over
(REFERENCE §9).

Salience (REFERENCE §6) of attribute X relative to the sensitive attribute ``a``: a model is trained on a set
in which X = a exactly (and once more on the *inverse* set, X = not a), then tested on four equal quadrants of
(X, a). Per trained model

    salience = max(AUC_a, 1 − AUC_a) − max(AUC_X, 1 − AUC_X) + 0.5

(each AUC taken in the better of its two orientations). Positive values: ``a`` is easier to learn than X. The
salience of X is the mean over the set and its inverse and over seeds; :func:`salience_table` first averages
the set and the inverse set within each seed, then forms the Student-t interval over seeds.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from biastransfer.metrics.intervals import t_interval

__all__ = [
    "DEFAULT_METRICS",
    "NON_SETTING_COLUMNS",
    "abs_interval",
    "aggregate",
    "base_role",
    "inheritance_comparison",
    "is_test_level",
    "kind_rows",
    "salience_table",
    "setting_columns",
    "split_lines",
]

#: Metrics aggregated by default.
DEFAULT_METRICS: tuple[str, ...] = ("auc", "fpr_diff", "tpr_diff", "eo_diff")

#: Columns that are *not* part of a setting: identifiers, per-run outcomes, timings, and the hyperparameters
#: chosen by the search (reported separately in the hyperparameter table; they are constant within a setting).
NON_SETTING_COLUMNS: frozenset[str] = frozenset(
    {
        "run_key",
        "seed",
        "seconds",
        "threshold",
        "val_loss",
        "lr",
        "weight_decay",
        "epochs",
        "auc",
        "fpr_diff",
        "tpr_diff",
        "eo_diff",
        "auc_diff",
        "fpr_a0",
        "fpr_a1",
        "tpr_a0",
        "tpr_a1",
        "auc_a",
        "auc_x",
        "salience",
    }
)

#: Float columns that are settings even though they may take many values.
_NUMERIC_SETTINGS = frozenset({"level", "test_level", "n_train"})

#: Columns that name one *line* of a sweep are the setting columns minus these (the level varies along a line;
#: the set size varies along a subselect line).
_ALONG_LINE = ("level", "level_label", "n_train")


def setting_columns(runs: pd.DataFrame, metrics: Iterable[str] = DEFAULT_METRICS) -> list[str]:
    """The columns of ``runs`` that describe a setting (all columns except ids, outcomes and ``metrics``)."""
    excluded = set(NON_SETTING_COLUMNS) | set(metrics)
    return [c for c in runs.columns if c not in excluded]


def kind_rows(runs: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Rows of ``runs`` whose ``experiment_kind`` equals ``kind`` (empty frame if the column is missing)."""
    if "experiment_kind" not in runs.columns:
        return runs.iloc[0:0]
    return runs[runs["experiment_kind"].astype(str) == kind]


def _interval(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of ``values``; all-NaN or empty gives NaNs silently (the metric does not apply)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return math.nan, math.nan, math.nan
    iv = t_interval(values, confidence=0.95)
    return float(iv.mean), float(iv.low), float(iv.high)


def aggregate(
    runs: pd.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Aggregate runs over seeds.

    Args:
        runs: the tidy runs frame (one row per run).
        metrics: metric columns to aggregate; metrics missing from ``runs`` are skipped.
        by: grouping columns. Default: every setting column (:func:`setting_columns`), i.e. all columns except
            ``run_key``, ``seed``, ``seconds``, per-run outcomes (metrics, threshold, val_loss) and the chosen
            hyperparameters.

    Returns:
        One row per group: the grouping columns, ``n_seeds`` (number of runs in the group) and, per metric
        ``m``, ``m_mean``, ``m_low``, ``m_high`` (Student-t 95% interval over seeds; NaN bounds when only one
        seed). Rows are sorted by the grouping columns; a metric that is NaN for every run of a group (it does
        not apply to that kind of experiment) is NaN without a warning.
    """
    metrics = [m for m in metrics if m in runs.columns]
    keys = list(by) if by is not None else setting_columns(runs, metrics)
    if by is None:
        _warn_outcome_like_keys(runs, keys)
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
            mean, low, high = _interval(pd.to_numeric(group[m], errors="coerce").to_numpy(dtype=float))
            rec[f"{m}_mean"], rec[f"{m}_low"], rec[f"{m}_high"] = mean, low, high
        records.append(rec)
    out = pd.DataFrame.from_records(records, columns=out_cols)
    if keys:
        out = out.sort_values(keys, na_position="first", kind="mergesort").reset_index(drop=True)
    return out


def _warn_outcome_like_keys(runs: pd.DataFrame, keys: Sequence[str]) -> None:
    """Warn about float grouping columns that look like per-run outcomes (a distinct value in every run).

    An unknown outcome column (say a new metric) would otherwise split every setting into one-run groups.
    """
    if len(runs) < 3:
        return
    for k in keys:
        col = runs[k]
        if (
            k not in _NUMERIC_SETTINGS
            and pd.api.types.is_float_dtype(col)
            and col.notna().sum() >= 3
            and col.nunique() == col.notna().sum()
        ):
            warnings.warn(
                f"aggregate: column {k!r} has a different value in every run; if it is an outcome, pass it "
                "in `metrics` (or list the setting columns in `by`), otherwise seeds are not pooled",
                UserWarning,
                stacklevel=3,
            )


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


def is_test_level(df: pd.DataFrame) -> pd.Series:
    """Boolean mask: rows whose finetuning distribution matches the test distribution.

    True when ``level`` equals ``test_level`` (within 1e-9), or, when the test is natural (``test_level``
    NaN), when ``level_label`` is ``"natural"``.
    """
    level = pd.to_numeric(df["level"], errors="coerce").to_numpy(dtype=float)
    test = pd.to_numeric(df["test_level"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        same = np.isclose(level, test, rtol=0.0, atol=1e-9)
    natural = np.isnan(test) & (df["level_label"].astype(str).to_numpy() == "natural")
    return pd.Series(same | natural, index=df.index)


def split_lines(agg: pd.DataFrame) -> list[tuple[dict[str, object], pd.DataFrame]]:
    """Split aggregated sweep rows into lines (one per base × intervention × other fixed settings).

    A line collects the rows that share every setting column except ``level``, ``level_label`` and
    ``n_train`` (the set size varies along a subselect line). If a line still holds more than one row for the
    same level (several set sizes were swept), it is split further by ``n_train``; the returned key then holds
    ``n_train`` too. Rows inside a line are sorted by level. Returns ``(key, rows)`` pairs.
    """
    if agg.empty:
        return []
    keys = [
        c
        for c in agg.columns
        if c != "n_seeds" and c not in _ALONG_LINE and not c.endswith(("_mean", "_low", "_high"))
    ]
    lines: list[tuple[dict[str, object], pd.DataFrame]] = []
    grouped = agg.groupby(keys, dropna=False, sort=True) if keys else [((), agg)]
    for key, rows in grouped:
        key_tuple = key if isinstance(key, tuple) else (key,)
        base_key = dict(zip(keys, key_tuple, strict=True))
        level_key = rows["level"].astype(float).round(9).astype(str) + "|" + rows["level_label"].astype(str)
        if level_key.duplicated().any() and "n_train" in rows.columns:
            for n, sub in rows.groupby("n_train", sort=True):
                lines.append(({**base_key, "n_train": n}, _sort_levels(sub)))
        else:
            lines.append((base_key, _sort_levels(rows)))
    return lines


def _sort_levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by numeric level, then by label."""
    order = rows.assign(
        _lv=pd.to_numeric(rows["level"], errors="coerce"), _lb=rows["level_label"].astype(str)
    )
    return order.sort_values(["_lv", "_lb"], kind="mergesort").drop(columns=["_lv", "_lb"])


def _as_bool(series: pd.Series) -> pd.Series:
    """Coerce a column of bools / "True"/"False" strings / 0-1 numbers to bool (missing → False)."""

    def conv(v: object) -> bool:
        if isinstance(v, str):
            return v.strip().lower() in {"true", "1", "yes"}
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        return bool(v)

    return series.map(conv).astype(bool)


def salience_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Salience of each attribute X relative to ``a`` with a Student-t 95% interval over seeds.

    Uses the runs with ``experiment_kind == "salience"`` (``task`` is X). Per run the salience is
    ``max(AUC_a, 1 − AUC_a) − max(AUC_X, 1 − AUC_X) + 0.5`` (recomputed from ``auc_a``/``auc_x`` when present,
    otherwise the ``salience`` column). Per seed the set and the inverse set (X = not a) are averaged; the
    interval is over those per-seed values. A seed with only one of the two sets contributes that set alone.

    Returns:
        One row per attribute (sorted by name): ``task``, ``salience_mean``, ``salience_low``,
        ``salience_high``, ``n_seeds``, ``salience_set`` and ``salience_inverse`` (means of each set alone;
        NaN if that set was not run), ``auc_a_mean``, ``auc_x_mean``. Empty (with these columns) if there are
        no salience runs.
    """
    cols = [
        "task",
        "salience_mean",
        "salience_low",
        "salience_high",
        "n_seeds",
        "salience_set",
        "salience_inverse",
        "auc_a_mean",
        "auc_x_mean",
    ]
    sal = kind_rows(runs, "salience")
    if sal.empty:
        return pd.DataFrame(columns=cols)
    sal = sal.copy()
    has_aucs = {"auc_a", "auc_x"} <= set(sal.columns)
    if has_aucs:
        auc_a = pd.to_numeric(sal["auc_a"], errors="coerce")
        auc_x = pd.to_numeric(sal["auc_x"], errors="coerce")
        auc_a = np.maximum(auc_a, 1.0 - auc_a)
        auc_x = np.maximum(auc_x, 1.0 - auc_x)
        recomputed = auc_a - auc_x + 0.5
        given = pd.to_numeric(sal.get("salience", pd.Series(np.nan, index=sal.index)), errors="coerce")
        sal["_sal"] = recomputed.where(recomputed.notna(), given)
        sal["_auc_a"], sal["_auc_x"] = auc_a, auc_x
    else:
        sal["_sal"] = pd.to_numeric(sal["salience"], errors="coerce")
        sal["_auc_a"] = sal["_auc_x"] = np.nan
    sal["_inv"] = _as_bool(sal["inverse"]) if "inverse" in sal.columns else pd.Series(False, index=sal.index)
    sal["_seed"] = sal["seed"] if "seed" in sal.columns else range(len(sal))
    records = []
    for task, rows in sal.groupby("task", sort=True):
        per_seed = rows.groupby("_seed", sort=True)["_sal"].mean().to_numpy(dtype=float)
        mean, low, high = _interval(per_seed)
        set_vals = rows.loc[~rows["_inv"], "_sal"]
        inv_vals = rows.loc[rows["_inv"], "_sal"]
        records.append(
            {
                "task": task,
                "salience_mean": mean,
                "salience_low": low,
                "salience_high": high,
                "n_seeds": int(np.sum(~np.isnan(per_seed))),
                "salience_set": float(set_vals.mean()) if len(set_vals) else math.nan,
                "salience_inverse": float(inv_vals.mean()) if len(inv_vals) else math.nan,
                "auc_a_mean": float(rows["_auc_a"].mean()),
                "auc_x_mean": float(rows["_auc_x"].mean()),
            }
        )
    return pd.DataFrame.from_records(records, columns=cols)


def base_role(base: object, base_kind: object = "", base_attribute: object = "") -> str:
    """Role of a base in the inheritance comparison: ``"gendered"``, ``"control"``, ``"scratch"`` or
    ``"other"``.

    * scratch: ``base_kind == "scratch"`` or the name is ``scratch``;
    * gendered: the name contains ``gender``, or a trained base whose attribute is the sensitive attribute
      (``a``, ``gender``, ``sex``, ``Male``, ``Female``);
    * control: the name starts with ``control``, or any other base trained by us (``base_kind == "trained"``);
    * other: off-the-shelf checkpoints and anything else.
    """
    name = "" if _missing(base) else str(base).strip().lower()
    kind = "" if _missing(base_kind) else str(base_kind).strip().lower()
    attr = "" if _missing(base_attribute) else str(base_attribute).strip().lower()
    if kind == "scratch" or name == "scratch":
        return "scratch"
    if "gender" in name or (kind == "trained" and attr in {"a", "gender", "sex", "male", "female"}):
        return "gendered"
    if name.startswith("control") or kind == "trained":
        return "control"
    return "other"


def _missing(v: object) -> bool:
    """True for None and float NaN."""
    return v is None or (isinstance(v, float) and math.isnan(v))


def _roles(df: pd.DataFrame) -> pd.Series:
    """:func:`base_role` for every row of ``df``."""
    kinds = df["base_kind"] if "base_kind" in df.columns else pd.Series("", index=df.index)
    attrs = df["base_attribute"] if "base_attribute" in df.columns else pd.Series("", index=df.index)
    return pd.Series(
        [base_role(b, k, a) for b, k, a in zip(df["base"], kinds, attrs, strict=True)], index=df.index
    )


_BASE_COLUMNS = ("base", "base_kind", "base_attribute")


def inheritance_comparison(agg_inh: pd.DataFrame, metric: str = "fpr_diff") -> pd.DataFrame:
    """Compare the Gendered base with every Control base, per task and finetuning level (REFERENCE §3).

    ``agg_inh`` is :func:`aggregate` applied to the inheritance runs. Rows are compared within groups that
    share every setting except the base. In each group, with ``|m|`` the magnitude of the mean of ``metric``
    and its interval from :func:`abs_interval`:

    * ``max_control_*``: the Control base with the largest ``|m|``;
    * ``separated``: the Gendered base's lower bound exceeds the upper bound of *every* Control base
      (intervals do not overlap); False if any bound is NaN (one seed);
    * ``controls_exceeded``: the Controls whose interval lies entirely below the Gendered one;
    * ``inherited_bias`` = ``|m(gendered)| − max_controls |m(control)|`` (means over seeds);
    * ``scratch_*`` and ``scratch_below``: the Scratch base, and whether its interval lies entirely below the
      Gendered one.

    Groups without a Gendered base or without any Control are skipped. Returns one row per group with the
    group's setting columns (``base*`` columns removed) followed by the comparison columns.
    """
    mean_c, low_c, high_c = f"{metric}_mean", f"{metric}_low", f"{metric}_high"
    if agg_inh.empty or mean_c not in agg_inh.columns:
        return pd.DataFrame()
    keys = [
        c
        for c in agg_inh.columns
        if c != "n_seeds" and c not in _BASE_COLUMNS and not c.endswith(("_mean", "_low", "_high"))
    ]
    df = agg_inh.assign(_role=_roles(agg_inh))
    records: list[dict[str, object]] = []
    grouped = df.groupby(keys, dropna=False, sort=True) if keys else [((), df)]
    for key, rows in grouped:
        key_tuple = key if isinstance(key, tuple) else (key,)
        gendered = rows[rows["_role"] == "gendered"]
        controls = rows[rows["_role"] == "control"]
        if gendered.empty or controls.empty:
            continue
        g = gendered.iloc[0]
        g_abs, g_low, g_high = abs_interval(float(g[mean_c]), float(g[low_c]), float(g[high_c]))
        ctrl = []
        for _, c in controls.iterrows():
            c_abs, c_low, c_high = abs_interval(float(c[mean_c]), float(c[low_c]), float(c[high_c]))
            ctrl.append((str(c["base"]), c_abs, c_low, c_high))
        exceeded = [name for name, _, _, c_high in ctrl if not math.isnan(g_low) and g_low > c_high]
        top = max(ctrl, key=lambda t: t[1])
        rec: dict[str, object] = dict(zip(keys, key_tuple, strict=True))
        rec.update(
            {
                "gendered_base": str(g["base"]),
                "gendered_mean": float(g[mean_c]),
                "gendered_abs": g_abs,
                "gendered_low": g_low,
                "gendered_high": g_high,
                "gendered_n_seeds": int(g["n_seeds"]),
                "max_control_base": top[0],
                "max_control_abs": top[1],
                "max_control_low": top[2],
                "max_control_high": top[3],
                "n_controls": len(ctrl),
                "controls_exceeded": exceeded,
                "separated": len(exceeded) == len(ctrl),
                "inherited_bias": g_abs - top[1],
            }
        )
        scratch = rows[rows["_role"] == "scratch"]
        if scratch.empty:
            rec.update(scratch_abs=math.nan, scratch_low=math.nan, scratch_high=math.nan, scratch_below=False)
        else:
            s = scratch.iloc[0]
            s_abs, s_low, s_high = abs_interval(float(s[mean_c]), float(s[low_c]), float(s[high_c]))
            rec.update(
                scratch_abs=s_abs,
                scratch_low=s_low,
                scratch_high=s_high,
                scratch_below=bool(not math.isnan(g_low) and s_high < g_low),
            )
        records.append(rec)
    return pd.DataFrame.from_records(records)

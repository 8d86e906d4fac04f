"""Analysis of the correlation sweep (paper §4.2, Fig. 4; docs/protocols.md §4).

For each sweep line (task × base × intervention), the reference point is the level where finetuning matches the
test distribution. Among the levels whose mean AUC is at least ``AUC_ref − tolerance`` (default 0.01), the
*best* level is the one with the smallest ``|mean FPR difference|``; the relative cut is
``cut = 1 − |FPR_best| / |FPR_ref|`` (0.61 is shown as "−61%"). The cut is called *established* only when the
two FPR-difference intervals do not overlap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from biastransfer.analysis.aggregate import abs_interval
from biastransfer.analysis.text import context_labels, fmt, fmt_ci, level_text

#: Default AUC tolerance of the sweep finding.
AUC_TOLERANCE = 0.01

#: Columns that name one *line* of a sweep are the setting columns minus these (the level varies along a line;
#: the set size varies along a subselect line).
ALONG_LINE = ("level", "level_label", "n_train")


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
        if c != "n_seeds" and c not in ALONG_LINE and not c.endswith(("_mean", "_low", "_high"))
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


def findings(agg: pd.DataFrame, auc_tolerance: float = AUC_TOLERANCE) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Structured sweep findings keyed by ``(task, base, line)``, ``line`` being the intervention (plus e.g.
    ``" (N=128)"`` when one task × base × intervention has several lines that differ in another setting).

    Entries: ``reference_level, reference_label, best_level, best_label, auc_ref, auc_best, fpr_ref, fpr_best,
    abs_fpr_ref, abs_fpr_best, cut, separated, improves, n_seeds, …``; ``cut`` is the relative reduction
    ``1 − |FPR_best| / |FPR_ref|``. Lines without a test-level run hold ``reference_level=None`` and a ``reason``.
    ``agg`` is the sweep runs aggregated over seeds."""
    if agg.empty:
        return {}
    lines = split_lines(agg)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    suffixes = context_labels([k for k, _ in lines], ("task", "base", "intervention"))
    for (key, rows), suffix in zip(lines, suffixes, strict=True):
        label = str(key.get("intervention", "")) + suffix
        fkey = (str(key.get("task", "")), str(key.get("base", "")), label)
        ref_rows = rows[is_test_level(rows)]
        entry: dict[str, Any] = {
            "intervention": key.get("intervention"),
            "test_label": key.get("test_label"),
            "n_train": key.get("n_train"),
            "gap_label": str(key.get("gap_label", "")),
            "n_levels": len(rows),
        }
        if ref_rows.empty:
            entry["reference_level"] = None
            entry["reason"] = "no run at the test level"
            out[fkey] = entry
            continue
        ref = ref_rows.iloc[0]
        ok = rows[rows["auc_mean"] >= ref["auc_mean"] - auc_tolerance - 1e-12]
        ok = ok.assign(_abs=ok["fpr_diff_mean"].abs())
        best = ok.sort_values(["_abs", "auc_mean"], ascending=[True, False], kind="mergesort").iloc[0]
        ref_abs = abs_interval(
            float(ref["fpr_diff_mean"]), float(ref["fpr_diff_low"]), float(ref["fpr_diff_high"])
        )
        best_abs = abs_interval(
            float(best["fpr_diff_mean"]), float(best["fpr_diff_low"]), float(best["fpr_diff_high"])
        )
        cut = 1.0 - best_abs[0] / ref_abs[0] if ref_abs[0] > 0 else math.nan
        separated = bool(
            best_abs[2] < ref_abs[1] if not (math.isnan(best_abs[2]) or math.isnan(ref_abs[1])) else False
        )
        entry.update(
            {
                "reference_level": float(ref["level"]),
                "reference_label": str(ref["level_label"]),
                "best_level": float(best["level"]),
                "best_label": str(best["level_label"]),
                "auc_ref": float(ref["auc_mean"]),
                "auc_ref_ci": (float(ref["auc_low"]), float(ref["auc_high"])),
                "auc_best": float(best["auc_mean"]),
                "auc_best_ci": (float(best["auc_low"]), float(best["auc_high"])),
                "fpr_ref": float(ref["fpr_diff_mean"]),
                "fpr_ref_ci": (float(ref["fpr_diff_low"]), float(ref["fpr_diff_high"])),
                "fpr_best": float(best["fpr_diff_mean"]),
                "fpr_best_ci": (float(best["fpr_diff_low"]), float(best["fpr_diff_high"])),
                "abs_fpr_ref": ref_abs[0],
                "abs_fpr_best": best_abs[0],
                "cut": cut,
                "separated": separated,
                "improves": bool(
                    not (best["level"] == ref["level"] and best["level_label"] == ref["level_label"])
                    and best_abs[0] < ref_abs[0]
                ),
                "n_seeds": int(min(ref["n_seeds"], best["n_seeds"])),
            }
        )
        out[fkey] = entry
    return out


def reading(sweep: dict[tuple[str, str, str], dict[str, Any]], tol: float) -> list[str]:
    """Bullets for the sweep finding, one per line."""
    lines = []
    for (task, base, label), f in sweep.items():
        head = f"{task}, base {base}, {label}"
        if f.get("reference_level") is None:
            lines.append(f"{head}: {f.get('reason', 'no reference level')}; no comparison made.")
            continue
        ref_lv = level_text(f["reference_level"], f["reference_label"])
        best_lv = level_text(f["best_level"], f["best_label"])
        ref_auc = fmt_ci(f["auc_ref"], *f["auc_ref_ci"])
        if not f["improves"]:
            lines.append(
                f"{head}: no finetuning level keeps AUC within {tol:g} of {ref_auc} (at the test-equal level "
                f"{ref_lv}) with a smaller |FPR difference| than {fmt(f['abs_fpr_ref'])}."
            )
            continue
        s = (
            f"{head}: finetuning at {best_lv} keeps AUC {fmt_ci(f['auc_best'], *f['auc_best_ci'])} "
            f"(vs {ref_auc} at {ref_lv}) and cuts |FPR difference| from {fmt(f['abs_fpr_ref'])} to "
            f"{fmt(f['abs_fpr_best'])} (−{f['cut'] * 100:.0f}%); signed FPR difference "
            f"{fmt_ci(f['fpr_ref'], *f['fpr_ref_ci'])} → {fmt_ci(f['fpr_best'], *f['fpr_best_ci'])}"
        )
        if f["separated"]:
            s += "; the 95% intervals do not overlap."
        elif f["n_seeds"] < 2:
            s += "; one seed only, so the cut is not established."
        else:
            s += f"; the 95% intervals overlap, so the cut is not established at n={f['n_seeds']} seeds."
        lines.append(s)
    return lines

"""Plain-English findings computed from the aggregated runs.

Two findings of the paper are checked on whatever runs exist, and said plainly when they do not hold:

*Inheritance* (paper §4.1, Fig. 2). For each task and finetuning level, the Gendered base "inherits" bias when
its ``|FPR difference|`` exceeds that of every Control base with non-overlapping 95% intervals (Student-t over
seeds; see :func:`biastransfer.analysis.aggregate.inheritance_comparison`). Scratch is reported alongside.

*Correction by the finetuning distribution* (paper §4.2, Fig. 4). For each sweep line (task × base ×
intervention), the reference point is the level where finetuning matches the test distribution. Among the
levels whose mean AUC is at least ``AUC_ref − tolerance`` (default 0.01), the *best* level is the one with the
smallest ``|mean FPR difference|``; the relative cut is ``cut = 1 − |FPR_best| / |FPR_ref|`` (0.61 is shown as
"−61%"). The cut is called *established* only when the two FPR-difference intervals do not overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from biastransfer.analysis.aggregate import (
    abs_interval,
    aggregate,
    inheritance_comparison,
    is_test_level,
    kind_rows,
    split_lines,
)

__all__ = ["findings", "fmt", "fmt_ci", "generate_reading", "level_text"]

#: Default AUC tolerance of the sweep finding.
AUC_TOLERANCE = 0.01


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` decimals; NaN as an em dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.{digits}f}"


def fmt_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``mean [low, high]``; just ``mean`` when the bounds are NaN (one seed)."""
    if any(math.isnan(v) for v in (low, high)):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def level_text(level: float, label: str) -> str:
    """How a finetuning level is named in text: ``0.8``, or ``natural (0.78)``."""
    if str(label) == "natural":
        return "natural" if math.isnan(level) else f"natural ({level:.2f})"
    return str(label) if str(label) not in {"", "nan"} else f"{level:g}"


_CONTEXT_KEYS = ("study", "experiment", "dataset", "test_label", "threshold_policy", "n_train")


def _context_labels(
    records: Sequence[Mapping[str, Any]], ident: tuple[str, ...], keys: tuple[str, ...] = _CONTEXT_KEYS
) -> list[str]:
    """Per record, ``" (N=128, experiment=x)"`` naming the context columns that take several values among
    the records sharing its ``ident`` columns (empty when the identity alone is unique)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(tuple(str(rec.get(k)) for k in ident), []).append(i)
    parts: list[list[str]] = [[] for _ in records]
    for idxs in groups.values():
        for k in keys:
            if len({str(records[i].get(k)) for i in idxs}) > 1:
                for i in idxs:
                    v = records[i].get(k)
                    parts[i].append(f"N={v}" if k == "n_train" else f"{k}={v}")
    return [f" ({', '.join(p)})" if p else "" for p in parts]


def _inheritance_findings(runs: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """Structured inheritance findings keyed by ``(task, level label)``."""
    inh = kind_rows(runs, "inheritance")
    if inh.empty:
        return {}
    comp = inheritance_comparison(aggregate(inh))
    out: dict[tuple[str, str], dict[str, Any]] = {}
    records = comp.to_dict("records")
    suffixes = _context_labels(records, ("task", "level_label"))
    for r, suffix in zip(records, suffixes, strict=True):
        label = str(r.get("level_label", "")) + suffix
        out[(str(r["task"]), label)] = {
            "level": float(r.get("level", math.nan)),
            "gendered_base": r["gendered_base"],
            "gendered_fpr": r["gendered_mean"],
            "gendered_abs_fpr": r["gendered_abs"],
            "gendered_ci": (r["gendered_low"], r["gendered_high"]),
            "max_control_base": r["max_control_base"],
            "max_control_abs_fpr": r["max_control_abs"],
            "max_control_ci": (r["max_control_low"], r["max_control_high"]),
            "controls_exceeded": list(r["controls_exceeded"]),
            "n_controls": int(r["n_controls"]),
            "separated": bool(r["separated"]),
            "inherited_bias": r["inherited_bias"],
            "scratch_abs_fpr": r["scratch_abs"],
            "scratch_ci": (r["scratch_low"], r["scratch_high"]),
            "scratch_below": bool(r["scratch_below"]),
            "n_seeds": int(r["gendered_n_seeds"]),
            "gap_label": str(r.get("gap_label", "")),
        }
    return out


def _sweep_findings(
    runs: pd.DataFrame, auc_tolerance: float = AUC_TOLERANCE
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Structured sweep findings keyed by ``(task, base, line label)`` (label = intervention [+ context])."""
    sweep = kind_rows(runs, "correlation_sweep")
    if sweep.empty:
        return {}
    agg = aggregate(sweep)
    lines = split_lines(agg)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    suffixes = _context_labels([k for k, _ in lines], ("task", "base", "intervention"))
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


def findings(runs: pd.DataFrame, *, auc_tolerance: float = AUC_TOLERANCE) -> dict[str, Any]:
    """Structured numbers behind the reading.

    Returns a dict with

    * ``"inheritance"``: ``{(task, level_label): {gendered_abs_fpr, gendered_ci, max_control_base,
      max_control_abs_fpr, max_control_ci, controls_exceeded, separated, inherited_bias, scratch_abs_fpr,
      scratch_ci, scratch_below, n_seeds, …}}``. When one task and level has several comparisons that differ
      in another setting (set size, experiment, dataset …), that setting is appended to the level label,
      e.g. ``"natural (N=128)"``.
    * ``"sweep"``: ``{(task, base, line): {reference_level, reference_label, best_level, best_label, auc_ref,
      auc_best, fpr_ref, fpr_best, abs_fpr_ref, abs_fpr_best, cut, separated, improves, n_seeds, …}}``,
      ``line`` being the intervention (plus e.g. ``" (N=128)"`` when one task × base × intervention has
      several lines that differ in another setting). ``cut`` is the
      relative reduction ``1 − |FPR_best| / |FPR_ref|``. Lines without a test-level run hold
      ``reference_level=None`` and a ``reason``.
    * ``"auc_tolerance"``: the tolerance used.

    Missing experiment kinds give empty dicts.
    """
    return {
        "inheritance": _inheritance_findings(runs),
        "sweep": _sweep_findings(runs, auc_tolerance),
        "auc_tolerance": auc_tolerance,
    }


def _names(items: list[str]) -> str:
    """``a, b and c``."""
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _inheritance_text(inh: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Bullets for the inheritance finding: one summary per level, one line per task."""
    lines: list[str] = []
    by_level: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for (task, label), f in inh.items():
        by_level.setdefault(label, []).append((task, f))
    ordered = sorted(by_level.items(), key=lambda kv: (not kv[0].startswith("natural"), kv[0]))
    for label, items in ordered:
        held = [t for t, f in items if f["separated"]]
        not_held = [t for t, f in items if not f["separated"]]
        where = f"at the {label} finetuning level" if label.startswith("natural") else f"at level {label}"
        s = (
            f"Inheritance {where}: the Gendered base's |FPR difference| exceeds every Control base's with "
            f"non-overlapping 95% intervals for {len(held)} of {len(items)} task(s)"
        )
        s += f" ({_names(held)})" if held else ""
        s += f"; it does not hold for {_names(not_held)}." if not_held else "."
        lines.append(s)
        scratch = [(t, f) for t, f in items if not math.isnan(f["scratch_abs_fpr"])]
        if scratch:
            below = [t for t, f in scratch if f["scratch_below"]]
            lines.append(
                f"Scratch {where}: less biased than Gendered (non-overlapping intervals) for {len(below)} of "
                f"{len(scratch)} task(s)" + (f" ({_names(below)})." if below else ".")
            )
        for task, f in items:
            g = fmt_ci(f["gendered_abs_fpr"], *f["gendered_ci"])
            c = fmt_ci(f["max_control_abs_fpr"], *f["max_control_ci"])
            verdict = "holds" if f["separated"] else "does not hold"
            s = (
                f"{task} ({label}): {verdict} — |FPR difference| Gendered {g} vs most biased Control "
                f"({f['max_control_base']}) {c}"
            )
            if not f["separated"]:
                n_ex = len(f["controls_exceeded"])
                s += (
                    f"; exceeds {n_ex} of {f['n_controls']} Controls"
                    + (f" ({_names(f['controls_exceeded'])})" if n_ex else "")
                    if f["n_seeds"] > 1
                    else "; one seed only, no interval"
                )
            if not math.isnan(f["scratch_abs_fpr"]):
                s += f"; Scratch {fmt_ci(f['scratch_abs_fpr'], *f['scratch_ci'])}"
            lines.append(s + f" (n={f['n_seeds']} seeds).")
    return lines


def _sweep_text(sweep: dict[tuple[str, str, str], dict[str, Any]], tol: float) -> list[str]:
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


def _regression_text(runs: pd.DataFrame) -> list[str]:
    """One bullet on the mixed-effects regression, or why it was not fitted (only with inheritance runs)."""
    from biastransfer.analysis.regression import inheritance_regression_with_reason

    if kind_rows(runs, "inheritance").empty:
        return []
    res, reason = inheritance_regression_with_reason(runs)
    if res is None:
        return [f"Mixed-effects regression of inherited bias not fitted: {reason}."]
    parts = []
    for term, c in res["coefficients"].items():
        if term == "Intercept":
            continue
        sig = "p < .05" if c["p"] < 0.05 else f"p = {c['p']:.2f}, not significant at .05"
        parts.append(f"{term} {fmt(c['coef'], 2)} (95% CI [{fmt(c['low'], 2)}, {fmt(c['high'], 2)}], {sig})")
    return [
        f"Mixed-effects regression of inherited bias ({res['n_obs']} observations, {res['n_groups']} "
        f"attributes, random intercept per attribute): " + "; ".join(parts) + "."
    ]


def generate_reading(runs: pd.DataFrame, *, auc_tolerance: float = AUC_TOLERANCE) -> list[str]:
    """Short plain-English findings (one string per bullet), with numbers and 95% intervals.

    Covers the inheritance finding, the sweep finding (see the module docstring for the exact rules) and the
    mixed-effects regression when inheritance runs exist. Findings that do not hold are stated as such.
    Experiment kinds without runs contribute nothing.
    """
    f = findings(runs, auc_tolerance=auc_tolerance)
    out = _inheritance_text(f["inheritance"])
    out += _regression_text(runs)
    out += _sweep_text(f["sweep"], auc_tolerance)
    if not out:
        out.append("No inheritance or correlation-sweep runs to read.")
    return out

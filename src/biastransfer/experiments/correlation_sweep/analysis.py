"""Analysis of the correlation sweep (paper §4.2, Fig. 4; docs/protocols.md §4): paired non-inferiority of AUC,
then a Bonferroni-guarded test of the cut in |FPR difference|.

A *line* is one (task × base × intervention, every other setting fixed); its *reference* is the level where
finetuning matches the test distribution. Every level of a line is finetuned on the same draw at a seed (the draw
depends on seed, task and N, not on the level), so levels are compared with the reference by **paired**
differences over the seeds ``s`` both have, with Student-t intervals (:func:`paired_interval`):

* **Keeps AUC** (non-inferiority). ``d_s = AUC(level, s) − AUC(ref, s)``; the level keeps AUC when the lower bound
  of the two-sided 95% interval ``mean(d) − t_{0.975, n−1}·sd(d)/√n`` lies above ``−tolerance``
  (``options.auc_tolerance``, default 0.01). Equal means are not enough: a level whose true AUC is 0.03 lower
  passes with probability at most 2.5%, whatever the seed-to-seed spread. With one seed no level keeps AUC.
* **Best level.** Among the ``k`` levels that keep AUC, the one with the smallest ``|mean_s FPR diff(level, s)|``
  (ties: the higher mean AUC). It *improves* when that is below the reference's ``|mean FPR diff|``; the relative
  cut is ``cut = 1 − |FPR_best| / |FPR_ref|`` (0.42 is shown as "−42%").
* **Established cut.** ``e_s = |FPR diff(best, s)| − |FPR diff(ref, s)|``; the best level was picked among the
  ``m`` levels tried besides the reference, so its interval is Bonferroni-widened to confidence ``1 − 0.05/m``:
  ``mean(e) ± t_{1 − 0.05/(2m), n−1}·sd(e)/√n``. The cut is *established* when that interval lies below 0.

Each line is its own question; no allowance is made across lines. The tolerance is an analysis option: it is not
part of any run key, so changing it reruns nothing and only changes the reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from biastransfer.analysis.aggregate import aggregate, paired_frame, paired_interval
from biastransfer.analysis.text import CONTEXT_KEYS, context_labels, fmt, fmt_ci, fmt_signed, level_text
from biastransfer.train.objectives import baseline_objective

#: Default AUC tolerance of the sweep finding (``options.auc_tolerance``).
AUC_TOLERANCE = 0.01

#: Family-wise error of the test of the cut (split over the levels tried, Bonferroni).
ALPHA = 0.05

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


def _stat_columns(agg: pd.DataFrame) -> set[str]:
    """The per-metric columns of an aggregate (``m_mean`` and every ``m_<stat>`` beside it) and ``n_seeds``."""
    metrics = {c[: -len("_mean")] for c in agg.columns if c.endswith("_mean")}
    return {c for c in agg.columns if c.startswith("n_seeds") or any(c.startswith(f"{m}_") for m in metrics)}


def line_name(key: Mapping[str, object]) -> str:
    """A line's name: its intervention, ``collect + group_dro(eta=0.1)`` for a line of another training objective
    than ERM (docs/objectives.md); ERM lines keep the intervention's name alone."""
    intervention, objective = str(key.get("intervention", "")), key.get("objective")
    if is_baseline(objective):
        return intervention
    return f"{intervention} + {objective}"


def is_baseline(objective: object) -> bool:
    """A runs table's ``objective`` is the baseline one (ERM), or missing (None, NaN, empty: a run stored before
    objectives existed)."""
    if objective is None or (isinstance(objective, float) and math.isnan(objective)) or objective == "":
        return True
    return objective == baseline_objective()


def has_objectives(runs: pd.DataFrame) -> bool:
    """The runs hold ERM (the baseline objective) and at least one other training objective."""
    return not runs.empty and "objective" in runs.columns and runs["objective"].nunique() >= 2 \
        and baseline_objective() in set(runs["objective"])


def objective_pairs(runs: pd.DataFrame, settings: Sequence[str],
                    metrics: Sequence[str] = ("auc", "fpr_diff_abs")) -> pd.DataFrame:
    """Every objective against ERM on the same task, base, intervention, level and N, paired by seed (they share
    their finetuning sets): per metric ``m``, ``m_mean``, ``m_low``, ``m_high`` of objective − ERM
    (:func:`~biastransfer.analysis.aggregate.paired_interval`, Student-t 95%) and ``n_pairs``. Empty unless the
    runs have ERM and another objective."""
    if not has_objectives(runs):
        return pd.DataFrame()
    by = [s for s in settings if s in runs.columns and s != "objective"]
    merged: pd.DataFrame | None = None
    for m in metrics:
        frame = paired_frame(runs, by, m, pair_col="objective")
        if frame.empty:
            continue
        frame = frame[(frame["objective_b"] == baseline_objective())].rename(columns={
            "objective_a": "objective", "mean": f"{m}_mean", "low": f"{m}_low", "high": f"{m}_high"})
        frame = frame.drop(columns=["objective_b"])
        merged = frame if merged is None else merged.merge(
            frame.drop(columns=["n_pairs"]), on=[c for c in frame.columns if c in by or c == "objective"])
    return pd.DataFrame() if merged is None else merged.reset_index(drop=True)


def split_lines(agg: pd.DataFrame) -> list[tuple[dict[str, object], pd.DataFrame]]:
    """Split aggregated sweep rows into lines (one per base × intervention × other fixed settings).

    A line collects the rows that share every setting column except ``level``, ``level_label`` and
    ``n_train`` (the set size varies along a subselect line; ``n_requested``, the N of the study, separates the
    lines of several sizes). If a line still holds more than one row for the
    same level (several set sizes were swept), it is split further by ``n_train``; the returned key then holds
    ``n_train`` too. Rows inside a line are sorted by level. Returns ``(key, rows)`` pairs.
    """
    if agg.empty:
        return []
    stats = _stat_columns(agg)
    keys = [c for c in agg.columns if c not in stats and c not in ALONG_LINE]
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


def _line_runs(runs: pd.DataFrame, lines: list[tuple[dict[str, object], pd.DataFrame]]) -> list[pd.DataFrame]:
    """The runs of each line of :func:`split_lines` (same order): those whose line columns equal the line's key."""
    if not lines:
        return []
    keys = [k for k in lines[0][0] if k not in ALONG_LINE]

    def text(values: object) -> tuple[str, ...]:
        return tuple(str(v) for v in (values if isinstance(values, tuple) else (values,)))

    groups = {text(k): g for k, g in runs.groupby(keys, dropna=False, sort=False)} if keys else {(): runs}
    out = []
    for key, _ in lines:
        rows = groups.get(text(tuple(key[k] for k in keys)), runs.iloc[0:0])
        out.append(rows[rows["n_train"] == key["n_train"]] if "n_train" in key else rows)
    return out


def _level_tag(level: pd.Series, label: pd.Series) -> pd.Series:
    """``"<level to 9 decimals>|<label>"``: which level of a line a row is at."""
    return pd.to_numeric(level, errors="coerce").astype(float).round(9).astype(str) + "|" + label.astype(str)


def _by_seed(line_runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per level of a line (:func:`_level_tag`), its ``auc`` and ``fpr_diff`` by seed (the mean when a seed
    repeats)."""
    tags = _level_tag(line_runs["level"], line_runs["level_label"])
    return {str(t): rows.groupby("seed")[["auc", "fpr_diff"]].mean()
            for t, rows in line_runs[["seed", "auc", "fpr_diff"]].groupby(tags, sort=False)}


def keeps_auc(auc_level: pd.Series, auc_ref: pd.Series, tolerance: float,
              ) -> tuple[bool, tuple[float, float, float, int]]:
    """Paired non-inferiority: ``(keeps, (mean, low, high, n))`` of ``AUC(level) − AUC(ref)`` by seed; keeps when
    ``n ≥ 2`` and the lower bound of the two-sided 95% interval lies above ``−tolerance``."""
    mean, low, high, n = paired_interval(auc_level, auc_ref)
    return bool(n >= 2 and not math.isnan(low) and low > -tolerance), (mean, low, high, n)


def _tolerance(line_runs: pd.DataFrame) -> float:
    """The line's ``auc_tolerance`` (the study option read into the runs), or the default."""
    if "auc_tolerance" in line_runs.columns:
        values = pd.to_numeric(line_runs["auc_tolerance"], errors="coerce").dropna()
        if not values.empty:
            return float(values.iloc[0])
    return AUC_TOLERANCE


def findings(runs: pd.DataFrame, settings: Sequence[str], auc_tolerance: float | None = None,
             ) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Structured sweep findings keyed by ``(task, base, line)``, ``line`` being the intervention (plus e.g.
    ``" (N=128)"`` when one task × base × intervention has several lines that differ in another setting).

    ``runs`` are the sweep's runs (one row per run), ``settings`` its setting columns; ``auc_tolerance`` overrides
    the runs' ``auc_tolerance`` column (the study option). Entries: ``reference_level, reference_label,
    tolerance, n_tried`` (m), ``n_keep`` (k), ``levels`` (one record per level tried: its AUC paired difference
    and whether it keeps AUC), ``best_level, best_label`` (None when no level keeps AUC), ``auc_ref(_ci),
    auc_best(_ci), auc_diff`` (paired, 95%), ``fpr_ref(_ci), fpr_best(_ci), abs_fpr_ref, abs_fpr_best, cut,
    improves, abs_fpr_paired`` (paired difference of |FPR difference|, best − reference, at ``confidence``
    = 1 − 0.05/m), ``established, n_seeds``. Lines without a test-level run hold ``reference_level=None`` and a
    ``reason``."""
    if runs.empty:
        return {}
    keep = [c for c in dict.fromkeys([*settings, "seed", "auc", "fpr_diff", "auc_tolerance"]) if c in runs.columns]
    runs = runs[keep]
    agg = aggregate(runs, ["auc", "fpr_diff"], settings)
    lines = split_lines(agg)
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    suffixes = context_labels([k for k, _ in lines], ("task", "base", "intervention", "objective"),
                              (*CONTEXT_KEYS, "n_requested"))
    for (key, rows), suffix, line_runs in zip(lines, suffixes, _line_runs(runs, lines), strict=True):
        label = line_name(key) + suffix
        fkey = (str(key.get("task", "")), str(key.get("base", "")), label)
        tol = _tolerance(line_runs) if auc_tolerance is None else float(auc_tolerance)
        entry: dict[str, Any] = {"intervention": key.get("intervention"),
                                 "objective": key.get("objective", baseline_objective()),
                                 "test_label": key.get("test_label"),
                                 "n_train": key.get("n_train", key.get("n_requested")),
                                 "gap_label": str(key.get("gap_label", "")), "n_levels": len(rows), "tolerance": tol}
        test = is_test_level(rows)
        if not test.any():
            out[fkey] = {**entry, "reference_level": None, "reason": "no run at the test level"}
            continue
        ref = rows[test].iloc[0]
        out[fkey] = {**entry, **_compare(line_runs, ref, rows.drop(index=ref.name), tol)}
    return out


def _compare(line_runs: pd.DataFrame, ref: pd.Series, others: pd.DataFrame, tol: float) -> dict[str, Any]:
    """The non-inferiority of every level against the reference, the best level and the test of its cut."""
    seeds = _by_seed(line_runs)
    empty = pd.DataFrame({"auc": [], "fpr_diff": []}, dtype=float)
    tags = _level_tag(pd.concat([others["level"], pd.Series([ref["level"]])]),
                      pd.concat([others["level_label"], pd.Series([ref["level_label"]])])).tolist()
    ref_seeds = seeds.get(tags[-1], empty)
    auc_ref, fpr_ref = ref_seeds["auc"], ref_seeds["fpr_diff"]
    levels = []
    for (_, row), tag in zip(others.iterrows(), tags[:-1], strict=True):
        level_seeds = seeds.get(tag, empty)
        keeps, (mean, low, high, n) = keeps_auc(level_seeds["auc"], auc_ref, tol)
        levels.append({"level": float(row["level"]), "label": str(row["level_label"]), "row": row,
                       "auc": float(row["auc_mean"]), "fpr": float(row["fpr_diff_mean"]), "auc_diff": mean,
                       "auc_diff_low": low, "auc_diff_high": high, "n_pairs": n, "keeps": keeps,
                       "fpr_seeds": level_seeds["fpr_diff"]})
    m = len(levels)
    kept = sorted((lv for lv in levels if lv["keeps"]), key=lambda lv: (abs(lv["fpr"]), -lv["auc"]))
    out: dict[str, Any] = {
        "reference_level": float(ref["level"]), "reference_label": str(ref["level_label"]),
        "auc_ref": float(ref["auc_mean"]), "auc_ref_ci": (float(ref["auc_low"]), float(ref["auc_high"])),
        "fpr_ref": float(ref["fpr_diff_mean"]), "fpr_ref_ci": (float(ref["fpr_diff_low"]), float(ref["fpr_diff_high"])),
        "abs_fpr_ref": abs(float(ref["fpr_diff_mean"])), "n_tried": m, "n_keep": len(kept),
        "levels": [{k: v for k, v in lv.items() if k not in ("row", "fpr_seeds")} for lv in levels],
        "n_seeds": max((lv["n_pairs"] for lv in levels), default=int(auc_ref.notna().sum())),
        "best_level": None, "best_label": None, "improves": False, "established": False,
        "confidence": 1.0 - ALPHA / m if m else math.nan,
    }
    if not kept:
        return out
    best = kept[0]
    row = best["row"]
    fpr_best = best["fpr_seeds"]
    e_mean, e_low, e_high, e_n = paired_interval(fpr_best.abs(), fpr_ref.abs(), confidence=out["confidence"])
    abs_best = abs(best["fpr"])
    improves = abs_best < out["abs_fpr_ref"]
    out.update({
        "best_level": best["level"], "best_label": best["label"],
        "auc_best": best["auc"], "auc_best_ci": (float(row["auc_low"]), float(row["auc_high"])),
        "auc_diff": (best["auc_diff"], best["auc_diff_low"], best["auc_diff_high"]),
        "fpr_best": best["fpr"], "fpr_best_ci": (float(row["fpr_diff_low"]), float(row["fpr_diff_high"])),
        "abs_fpr_best": abs_best,
        "cut": 1.0 - abs_best / out["abs_fpr_ref"] if out["abs_fpr_ref"] > 0 else math.nan,
        "improves": bool(improves), "abs_fpr_paired": (e_mean, e_low, e_high), "n_seeds": e_n,
        "established": bool(improves and e_n >= 2 and not math.isnan(e_high) and e_high < 0),
    })
    return out


def reading(sweep: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """Bullets for the sweep finding, one per line."""
    lines = []
    for (task, base, label), f in sweep.items():
        head = f"{task}, base {base}, {label}"
        if f.get("reference_level") is None:
            lines.append(f"{head}: {f.get('reason', 'no reference level')}; no comparison made.")
            continue
        ref_lv = level_text(f["reference_level"], f["reference_label"])
        m, k, tol = f["n_tried"], f["n_keep"], f["tolerance"]
        if m == 0:
            lines.append(f"{head}: only the test-equal level {ref_lv} was run; no comparison made.")
            continue
        tried = (f"of {m} level{'s' if m > 1 else ''} tried besides the test-equal level {ref_lv} "
                 f"(AUC {fmt_ci(f['auc_ref'], *f['auc_ref_ci'])})")
        rule = f"paired lower bound above −{tol:g}"
        if f["n_seeds"] < 2:
            lines.append(f"{head}: {tried}, none is shown to keep AUC: one seed only, so no paired interval.")
            continue
        if k == 0:
            lines.append(f"{head}: {tried}, none keeps AUC ({rule}) at {f['n_seeds']} seeds.")
            continue
        kept = f"{k} keep{'s' if k == 1 else ''} AUC ({rule})"
        best_lv = level_text(f["best_level"], f["best_label"])
        auc = f"AUC paired difference {fmt_ci(*f['auc_diff'])}"
        if not f["improves"]:
            lines.append(f"{head}: {tried}, {kept}; none has a smaller |FPR difference| than the test-equal "
                         f"level's {fmt(f['abs_fpr_ref'])} (the best, {best_lv}, has {fmt(f['abs_fpr_best'])}).")
            continue
        verdict = "established" if f["established"] else f"not established at {f['n_seeds']} seeds"
        lines.append(
            f"{head}: {tried}, {kept}; the best, {best_lv} ({auc}), cuts |FPR difference| from "
            f"{fmt(f['abs_fpr_ref'])} to {fmt(f['abs_fpr_best'])} (−{f['cut'] * 100:.0f}%), paired difference "
            f"{fmt_ci(*f['abs_fpr_paired'])} (Bonferroni for {m} level{'s' if m > 1 else ''}): {verdict}.")
    return lines


def verdict(sweep: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """The top-of-report answer to "which finetuning level overwrites the bias, at what AUC cost?": one sentence
    naming the lines whose cut is established (level, the |FPR difference| before and after, the paired AUC
    difference), or one sentence saying that no level tried does, with the closest candidate's numbers."""
    compared = {k: f for k, f in sweep.items() if f.get("reference_level") is not None and f.get("n_tried")}
    if not compared:
        return []
    done = [(k, f) for k, f in compared.items() if f["established"]]
    if done:
        parts = []
        for (task, base, label), f in done:
            parts.append(
                f"finetuning {task} at level {level_text(f['best_level'], f['best_label'])} ({label}, base {base}) "
                f"instead of the test-equal {level_text(f['reference_level'], f['reference_label'])} cuts |FPR "
                f"difference| from {fmt(f['abs_fpr_ref'])} to {fmt(f['abs_fpr_best'])} at an AUC change of "
                f"{fmt_signed(f['auc_diff'][0])} [{fmt(f['auc_diff'][1])}, {fmt(f['auc_diff'][2])}] (paired; "
                f"within the {f['tolerance']:g} tolerance)")
        head = "Overwritten: " if len(done) == len(compared) else f"Overwritten on {len(done)} of {len(compared)} " \
               "sweep lines: "
        return [head + "; ".join(parts) + f" ({done[0][1]['n_seeds']} paired seeds, Bonferroni over the levels "
                "tried)."]
    candidates = [(k, f) for k, f in compared.items() if f["improves"]]
    if candidates:
        (task, base, label), f = min(candidates, key=lambda kf: kf[1]["abs_fpr_paired"][2])
        return [f"Not established: the most promising level, {level_text(f['best_level'], f['best_label'])} for "
                f"{task} ({label}, base {base}), cuts |FPR difference| from {fmt(f['abs_fpr_ref'])} to "
                f"{fmt(f['abs_fpr_best'])} but its paired interval {fmt_ci(*f['abs_fpr_paired'])} does not exclude "
                f"0 at {f['n_seeds']} seeds."]
    # No level keeps AUC: name the one closest to keeping it among the levels with a smaller |FPR difference|.
    lower = [((k, f), lv) for k, f in compared.items() for lv in f["levels"]
             if abs(lv["fpr"]) < f["abs_fpr_ref"] and not math.isnan(lv["auc_diff_low"])]
    if not lower:
        return [f"Not overwritten: on none of {len(compared)} sweep line(s) does a finetuning level tried have a "
                "smaller |FPR difference| than the test-equal level."]
    ((task, base, label), f), lv = max(lower, key=lambda item: item[1]["auc_diff_low"])
    return [f"Not established at {lv['n_pairs']} seeds: no finetuning level tried is shown to keep AUC (paired "
            f"non-inferiority, tolerance {f['tolerance']:g}). The closest, {level_text(lv['level'], lv['label'])} "
            f"for {task} ({label}, base {base}), has |FPR difference| {fmt(abs(lv['fpr']))} against "
            f"{fmt(f['abs_fpr_ref'])} at the test-equal level, and a paired AUC difference "
            f"{fmt_ci(lv['auc_diff'], lv['auc_diff_low'], lv['auc_diff_high'])} whose lower bound is below "
            f"−{f['tolerance']:g}."]

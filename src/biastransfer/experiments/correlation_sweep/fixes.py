"""Data fixes against algorithmic fixes at the tolerance (docs/objectives.md, "Which wins at the tolerance"): in a
correlation sweep with training objectives, every (intervention, objective, level) is held against one reference,
ERM on the test-equal set, by the sweep's paired AUC rule (:func:`~.analysis.keeps_auc`); the reading names the
setting with the smallest |FPR difference| that keeps AUC, and the best of the other kind."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from biastransfer.analysis.aggregate import paired_interval
from biastransfer.analysis.text import fmt, fmt_ci, level_text
from biastransfer.experiments.correlation_sweep.analysis import _tolerance, has_objectives, is_test_level, keeps_auc
from biastransfer.interventions.base import reference_intervention
from biastransfer.train.objectives import baseline_objective

#: Columns that tell the settings compared by :func:`fixes_at_tolerance` apart (everything else is the context).
FIX_KEYS = ("intervention", "objective", "level", "level_label", "n_train")


def fixes_at_tolerance(runs: pd.DataFrame, settings: Sequence[str], auc_tolerance: float | None = None,
                       ) -> list[dict[str, Any]]:
    """Data fixes against algorithmic fixes on one footing (docs/objectives.md), per task × base × N (every
    setting but :data:`FIX_KEYS`): every (intervention, objective, level) is compared with **one** reference,
    ERM on the test-equal set (``collect`` at the test level, ``objective: erm``: what a user does without a
    fix), by the sweep's paired rule (``d_s = AUC(x, s) − AUC(ref, s)``, keeps AUC when the 95% lower bound lies
    above ``−ε``). A *data fix* is an ERM setting (an intervention at a level); an *objective* is a setting
    trained with another objective (at any level, the test-equal one included). Among the settings that keep
    AUC, the one with the smallest ``|mean FPR difference|`` wins (ties: higher AUC). When both kinds have a
    setting that keeps AUC, ``e_s = |FPR(best data fix, s)| − |FPR(best objective, s)|`` gets a Student-t 95%
    interval (``versus``). Empty unless the runs hold ERM and another objective."""
    if not has_objectives(runs):
        return []
    context = [s for s in settings if s in runs.columns and s not in FIX_KEYS]
    fix = [k for k in FIX_KEYS if k in runs.columns and k != "n_train"]
    out = []
    for ctx, group in (runs.groupby(context, dropna=False, sort=True) if context else [((), runs)]):
        ctx = ctx if isinstance(ctx, tuple) else (ctx,)
        test = is_test_level(group)
        ref_rows = group[test & (group["objective"] == baseline_objective())
                         & (group["intervention"] == reference_intervention())]
        if ref_rows.empty:
            continue
        tol = _tolerance(group) if auc_tolerance is None else float(auc_tolerance)
        ref = ref_rows.groupby("seed")[["auc", "fpr_diff"]].mean()
        kept = []
        for key, rows in group.drop(index=ref_rows.index).groupby(fix, dropna=False, sort=True):
            setting = dict(zip(fix, key if isinstance(key, tuple) else (key,), strict=True))
            by_seed = rows.groupby("seed")[["auc", "fpr_diff"]].mean()
            keeps, (mean, low, high, n) = keeps_auc(by_seed["auc"], ref["auc"], tol)
            if keeps:
                kept.append({**setting, "kind": "data" if setting["objective"] == baseline_objective() else "objective",
                             "auc": float(by_seed["auc"].mean()), "auc_diff": (mean, low, high), "n": n,
                             "abs_fpr": abs(float(by_seed["fpr_diff"].mean())), "fpr_seeds": by_seed["fpr_diff"]})
        kept.sort(key=lambda x: (x["abs_fpr"], -x["auc"]))
        best = {kind: next((x for x in kept if x["kind"] == kind), None) for kind in ("data", "objective")}
        versus = (math.nan, math.nan, math.nan)
        if best["data"] is not None and best["objective"] is not None:
            mean, low, high, _ = paired_interval(best["data"]["fpr_seeds"].abs(), best["objective"]["fpr_seeds"].abs())
            versus = (mean, low, high)
        clean = {k: ({kk: vv for kk, vv in v.items() if kk != "fpr_seeds"} if v else None) for k, v in best.items()}
        out.append({"context": dict(zip(context, ctx, strict=True)), "tolerance": tol,
                    "reference": {"level": ref_rows["level_label"].iloc[0], "auc": float(ref["auc"].mean()),
                                  "abs_fpr": abs(float(ref["fpr_diff"].mean())), "n": len(ref)},
                    "winner": clean[kept[0]["kind"]] if kept else None, "best_data": clean["data"],
                    "best_objective": clean["objective"], "versus": versus, "n_keep": len(kept)})
    return out


def _fix_name(x: Mapping[str, Any]) -> str:
    level = level_text(x["level"], x["level_label"])
    if x["objective"] == baseline_objective():
        return f"{x['intervention']} @ {level} (ERM)"
    return f"{x['objective']} on {x['intervention']} @ {level}"


def fixes_reading(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per context of :func:`fixes_at_tolerance`: which fix wins at the tolerance, the best of the
    other kind, and whether the difference between them is established (95% interval of the paired |FPR
    difference| difference excluding 0)."""
    names = {"task": "task", "base": "base", "n_requested": "N"}
    lines = []
    for f in found:
        ctx = ", ".join(f"{names[k]} {v}" for k, v in f["context"].items() if k in names)
        ref = f["reference"]
        head = (f"Data fixes against objectives ({ctx}; reference: ERM on the test-equal set, collect @ "
                f"{ref['level']}, AUC {fmt(ref['auc'])}, |FPR difference| {fmt(ref['abs_fpr'])})")
        if f["winner"] is None:
            lines.append(f"{head}: no setting keeps AUC within ε = {f['tolerance']:g} (paired), so none wins.")
            continue
        w = f["winner"]
        text = (f"{head}: at ε = {f['tolerance']:g} the smallest |FPR difference| that keeps AUC is "
                f"{_fix_name(w)}, {'a data fix' if w['kind'] == 'data' else 'an objective'}: {fmt(w['abs_fpr'])} "
                f"(AUC difference {fmt_ci(*w['auc_diff'])}, {w['n']} seeds)")
        other = f["best_objective"] if w["kind"] == "data" else f["best_data"]
        if other is None:
            text += f"; no {'objective' if w['kind'] == 'data' else 'data fix'} keeps AUC."
        else:
            mean, low, high = f["versus"]
            if w["kind"] == "objective":  # versus is data − objective; the sentence reads winner − the other
                mean, low, high = -mean, -high, -low
            sure = "established" if not math.isnan(high) and high < 0 else "not established"
            text += (f"; the best {'objective' if w['kind'] == 'data' else 'data fix'}, {_fix_name(other)}, has "
                     f"{fmt(other['abs_fpr'])}; paired difference of |FPR difference| (winner − it) "
                     f"{fmt_ci(mean, low, high)}: {sure}.")
        lines.append(text)
    return lines

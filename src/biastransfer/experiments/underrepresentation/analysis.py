"""Analysis of the underrepresentation experiment (paper §5, docs/protocols.md §5).

Input: the tidy rows of underrepresentation runs: the task is written ``"T1+T2"``, ``level`` = the share p of T2
among the finetuning positives, and the per-run outcomes ``auc``
(T1 ∨ T2 on the whole test set), ``auc_t1`` and ``auc_t2`` (each subcategory's positives against all test
negatives).

Roles: a base is *Pretrain-T1* when it was trained by us (``base_kind == "trained"``) on ``base_attribute`` = T1,
*Pretrain-T2* likewise; other bases (scratch, checkpoints) are shown but not compared.

Bias (paper §5.1), per (experiment, task, N, share p), pairing the two bases by seed s:

    d_s = AUC_T2(Pretrain-T2, p, s) − AUC_T2(Pretrain-T1, p, s),   gap = mean_s d_s  with a Student-t 95% CI

(:func:`biastransfer.analysis.aggregate.paired_interval`). A positive gap whose interval
excludes 0 means a finetuned Pretrain-T1 does not reach the AUC on T2 of a finetuned Pretrain-T2.

Correction (paper §5.2), per (experiment, task, N): the reference is Pretrain-T2 at the smallest share p0 of the
sweep. For every share p, ``c_s = AUC_T2(Pretrain-T2, p0, s) − AUC_T2(Pretrain-T1, p, s)`` (paired by seed,
t interval). Pretrain-T1 *reaches* the reference at p when the mean of c is ≤ 0, and is *not distinguishable*
from it when the interval of c contains 0. The paper asks the first share that reaches it (10% → 30% sufficed in
6 of 12 CelebA pairs at N=128).

Across pairs (paper §5.1, Table 1), per (N, share p), over the K pairs ``k`` (tasks, in any block of the kind)
that have both bases:

    gap_k = mean_s d_{k,s}   (the paired gap above),   across = mean_k gap_k  with a Student-t 95% CI over the K
    pairs (n − 1 = K − 1 degrees of freedom; NaN bounds for one pair);

``significant`` counts the pairs whose own seed-paired interval lies above 0, and ``match`` the pairs where
Pretrain-T1 at p *matches* Pretrain-T2 at the smallest share p0: the lower bound of the remaining gap ``c``
(correction, above) is ≤ 0, i.e. Pretrain-T1 is not shown to be worse (the paper: at p = 30% in 6 of 12 pairs
at N = 128, 8 of 12 at N = 1024).

Relative salience of a pair (the paper picks pairs where T1 is more, equally and less salient than T2), from a
base that is neither Pretrain-T1 nor -T2 (e.g. ``scratch``) finetuned at the share closest to 0.5:
``sal_s = AUC_T1(s) − AUC_T2(s)``, paired over seeds; T1 is *more salient* (easier to learn) when the interval
lies above 0, *less* when below, *equally* (not distinguishable) otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from biastransfer.analysis.aggregate import aggregate, interval, paired_interval
from biastransfer.models.bases import base_kind

__all__ = [
    "UNDERREP_METRICS",
    "correction_table",
    "pair_salience_table",
    "pairs_table",
    "split_task",
    "t2_gap_table",
    "underrep_reading",
    "underrep_runs",
    "underrep_table",
]

#: Metrics aggregated over seeds.
UNDERREP_METRICS: tuple[str, ...] = ("auc", "auc_t1", "auc_t2")
_KEYS = ["experiment", "task", "n_train"]


def split_task(task: object) -> tuple[str, str] | None:
    """``"T1+T2"`` → ``(T1, T2)``; None when the task is not written that way."""
    parts = [p.strip() for p in str(task).split("+")]
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def _role(task: object, kind: object, base_attribute: object) -> str:
    """As :func:`~biastransfer.experiments.underrepresentation.sets.base_role`, from a runs table's columns."""
    pair = split_task(task)
    attribute = base_kind(kind).trained_attribute({"attribute": base_attribute})
    if pair is None or attribute is None:
        return "other"
    if str(attribute) == pair[0]:
        return "pretrain-t1"
    if str(attribute) == pair[1]:
        return "pretrain-t2"
    return "other"


def underrep_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The underrepresentation rows with a ``role`` column (``pretrain-t1``, ``pretrain-t2`` or ``other``)."""
    ur = runs.copy()
    if ur.empty:
        return ur.assign(role=pd.Series(dtype=str))
    kinds = ur["base_kind"] if "base_kind" in ur.columns else pd.Series("", index=ur.index)
    attrs = ur["base_attribute"] if "base_attribute" in ur.columns else pd.Series("", index=ur.index)
    ur["role"] = [_role(t, k, a) for t, k, a in zip(ur["task"], kinds, attrs, strict=True)]
    for m in UNDERREP_METRICS:
        ur[m] = pd.to_numeric(ur[m], errors="coerce") if m in ur.columns else math.nan
    ur["level"] = pd.to_numeric(ur["level"], errors="coerce")
    return ur


def underrep_table(runs: pd.DataFrame) -> pd.DataFrame:
    """AUC, AUC on T1 and AUC on T2 per (experiment, task, N, base, share) with Student-t 95% CIs over seeds.

    Columns: ``experiment, task, n_train, base, role, level, level_label, n_seeds`` and ``{m}_mean/_low/_high``
    for m in :data:`UNDERREP_METRICS`; sorted by task, N, role, base and share.
    """
    ur = underrep_runs(runs)
    by = [*_KEYS, "base", "role", "level", "level_label"]
    if ur.empty:
        return aggregate(ur.reindex(columns=[*by, *UNDERREP_METRICS]), UNDERREP_METRICS, by=by)
    agg = aggregate(ur, UNDERREP_METRICS, by=by)
    rank = {"pretrain-t1": 0, "pretrain-t2": 1, "other": 2}
    agg = agg.assign(_r=agg["role"].map(rank)).sort_values(
        ["experiment", "task", "n_train", "_r", "base", "level"], kind="mergesort")
    return agg.drop(columns="_r").reset_index(drop=True)


def _per_seed(rows: pd.DataFrame, role: str, metric: str = "auc_t2") -> tuple[str, pd.Series]:
    """(base name, metric by seed) of the first base of ``role`` among ``rows`` (alphabetically)."""
    sub = rows[rows["role"] == role]
    if sub.empty:
        return "", pd.Series(dtype=float)
    base = sorted(sub["base"].astype(str).unique())[0]
    sub = sub[sub["base"].astype(str) == base]
    return base, sub.groupby("seed")[metric].mean()


def t2_gap_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The bias AUC_T2(Pretrain-T2) − AUC_T2(Pretrain-T1) per (experiment, task, N, share), paired by seed.

    Columns: ``experiment, task, t1, t2, n_train, level, level_label, pretrain_t1, pretrain_t2,
    auc_t2_pretrain_t1, auc_t2_pretrain_t2`` (means over the paired seeds), ``gap_mean, gap_low, gap_high,
    n_pairs`` and ``significant`` (the interval lies above 0). Settings lacking either base are skipped.
    """
    cols = ["experiment", "task", "t1", "t2", "n_train", "level", "level_label", "pretrain_t1", "pretrain_t2",
            "auc_t2_pretrain_t1", "auc_t2_pretrain_t2", "gap_mean", "gap_low", "gap_high", "n_pairs",
            "significant"]
    ur = underrep_runs(runs)
    records = []
    if not ur.empty:
        for (exp, task, n, level, label), rows in ur.groupby([*_KEYS, "level", "level_label"], sort=True):
            b1, s1 = _per_seed(rows, "pretrain-t1")
            b2, s2 = _per_seed(rows, "pretrain-t2")
            if not b1 or not b2:
                continue
            mean, low, high, k = paired_interval(s2, s1)
            common = s1.index.intersection(s2.index)
            pair = split_task(task) or ("", "")
            records.append({
                "experiment": exp, "task": task, "t1": pair[0], "t2": pair[1], "n_train": n, "level": level,
                "level_label": label, "pretrain_t1": b1, "pretrain_t2": b2,
                "auc_t2_pretrain_t1": float(s1.loc[common].mean()) if k else math.nan,
                "auc_t2_pretrain_t2": float(s2.loc[common].mean()) if k else math.nan,
                "gap_mean": mean, "gap_low": low, "gap_high": high, "n_pairs": k,
                "significant": bool(not math.isnan(low) and low > 0),
            })
    return pd.DataFrame.from_records(records, columns=cols)


def correction_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Pretrain-T1 at each share p against Pretrain-T2 at the smallest share p0 (paired by seed).

    Columns: ``experiment, task, n_train, reference_level, level, level_label, auc_t2_reference,
    auc_t2_pretrain_t1, remaining_mean, remaining_low, remaining_high, n_pairs, reaches`` (mean remaining
    gap ≤ 0) and ``indistinguishable`` (its interval contains 0).
    """
    cols = ["experiment", "task", "n_train", "reference_level", "level", "level_label", "auc_t2_reference",
            "auc_t2_pretrain_t1", "remaining_mean", "remaining_low", "remaining_high", "n_pairs", "reaches",
            "indistinguishable"]
    ur = underrep_runs(runs)
    records = []
    if not ur.empty:
        for (exp, task, n), rows in ur.groupby(_KEYS, sort=True):
            t2_rows = rows[rows["role"] == "pretrain-t2"]
            if t2_rows.empty or (rows["role"] == "pretrain-t1").sum() == 0:
                continue
            p0 = float(t2_rows["level"].min())
            _, ref = _per_seed(t2_rows[np.isclose(t2_rows["level"], p0)], "pretrain-t2")
            for (level, label), lrows in rows.groupby(["level", "level_label"], sort=True):
                _, s1 = _per_seed(lrows, "pretrain-t1")
                if s1.empty:
                    continue
                mean, low, high, k = paired_interval(ref, s1)
                common = ref.index.intersection(s1.index)
                records.append({
                    "experiment": exp, "task": task, "n_train": n, "reference_level": p0, "level": level,
                    "level_label": label,
                    "auc_t2_reference": float(ref.loc[common].mean()) if k else math.nan,
                    "auc_t2_pretrain_t1": float(s1.loc[common].mean()) if k else math.nan,
                    "remaining_mean": mean, "remaining_low": low, "remaining_high": high, "n_pairs": k,
                    "reaches": bool(k and mean <= 0),
                    "indistinguishable": bool(not math.isnan(low) and low <= 0 <= high),
                })
    return pd.DataFrame.from_records(records, columns=cols)


def pairs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The gap across pairs per (N, share): see the module docstring.

    Columns: ``n_train, level, level_label, n_pairs`` (K), ``across_mean, across_low, across_high``,
    ``significant`` (pairs whose gap interval lies above 0), ``matched`` (pairs where Pretrain-T1 at this share
    matches Pretrain-T2 at the smallest share) and ``pairs`` (the tasks, comma-separated). Empty with fewer than
    two pairs in the runs (one pair is read on its own)."""
    cols = ["n_train", "level", "level_label", "n_pairs", "across_mean", "across_low", "across_high", "significant",
            "matched", "pairs"]
    gaps = t2_gap_table(runs)
    if gaps.empty or gaps[["experiment", "task"]].drop_duplicates().shape[0] < 2:
        return pd.DataFrame(columns=cols)
    corr = correction_table(runs)
    match = {} if corr.empty else {
        (str(r["experiment"]), str(r["task"]), r["n_train"], round(float(r["level"]), 9)):
            bool(not math.isnan(r["remaining_low"]) and r["remaining_low"] <= 0) or bool(r["reaches"])
        for _, r in corr.iterrows()}
    records = []
    for (n, level, label), rows in gaps.groupby(["n_train", "level", "level_label"], sort=True):
        mean, low, high = interval(rows["gap_mean"].to_numpy(dtype=float))
        keys = [(str(e), str(t), n, round(float(level), 9)) for e, t in zip(rows["experiment"], rows["task"],
                                                                              strict=True)]
        records.append({"n_train": n, "level": level, "level_label": label, "n_pairs": len(rows),
                        "across_mean": mean, "across_low": low, "across_high": high,
                        "significant": int(rows["significant"].sum()),
                        "matched": sum(match.get(k, False) for k in keys),
                        "pairs": ", ".join(rows["task"].astype(str))})
    return pd.DataFrame.from_records(records, columns=cols)


def pair_salience_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Relative salience of T1 and T2 per (experiment, task, N), from a base that is neither Pretrain-T1 nor -T2
    at the share closest to 0.5 (module docstring). Columns: ``experiment, task, t1, t2, n_train, base, level,
    sal_mean, sal_low, sal_high, n_seeds, relation`` (``T1 more salient``, ``T1 less salient``, ``equally
    salient``, or ``one seed``)."""
    cols = ["experiment", "task", "t1", "t2", "n_train", "base", "level", "sal_mean", "sal_low", "sal_high",
            "n_seeds", "relation"]
    ur = underrep_runs(runs)
    records = []
    if not ur.empty:
        other = ur[ur["role"] == "other"]
        for (exp, task, n), rows in other.groupby(_KEYS, sort=True):
            level = float(rows["level"].iloc[(rows["level"] - 0.5).abs().argmin()])
            rows = rows[np.isclose(rows["level"], level)]
            base = sorted(rows["base"].astype(str).unique())[0]
            rows = rows[rows["base"].astype(str) == base]
            mean, low, high, k = paired_interval(rows.groupby("seed")["auc_t1"].mean(),
                                                 rows.groupby("seed")["auc_t2"].mean())
            relation = ("one seed" if k < 2 or math.isnan(low) else "T1 more salient" if low > 0
                        else "T1 less salient" if high < 0 else "equally salient")
            pair = split_task(task) or ("", "")
            records.append({"experiment": exp, "task": task, "t1": pair[0], "t2": pair[1], "n_train": n,
                            "base": base, "level": level, "sal_mean": mean, "sal_low": low, "sal_high": high,
                            "n_seeds": k, "relation": relation})
    return pd.DataFrame.from_records(records, columns=cols)


def _f(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _ci(mean: float, low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return _f(mean)
    return f"{_f(mean)} [{_f(low)}, {_f(high)}]"


def underrep_reading(runs: pd.DataFrame) -> list[str]:
    """Plain-English findings: the T2 AUC gap at each share and N, and whether raising the share of T2 lets
    Pretrain-T1 reach Pretrain-T2 at the smallest share. Empty when there are no underrepresentation runs."""
    gaps = t2_gap_table(runs)
    corr = correction_table(runs)
    out: list[str] = []
    if underrep_runs(runs).empty:
        return out
    if gaps.empty:
        return ["Underrepresentation: no setting has both a Pretrain-T1 and a Pretrain-T2 base (a base of kind "
                "'trained' whose attribute is T1, resp. T2), so the T2 AUC difference is not computed."]
    for (exp, task, n), rows in gaps.groupby(_KEYS, sort=True):
        t1, t2 = rows["t1"].iloc[0], rows["t2"].iloc[0]
        parts = []
        for _, r in rows.iterrows():
            verdict = ("> 0" if r["significant"] else "interval includes 0" if r["gap_low"] <= 0 <= r["gap_high"]
                       else "< 0" if r["gap_high"] < 0 else "one seed")
            parts.append(f"share {r['level_label']}: {_ci(r['gap_mean'], r['gap_low'], r['gap_high'])} ({verdict})")
        n_sig = int(rows["significant"].sum())
        out.append(
            f"Underrepresentation {task} (T1 = {t1}, T2 = {t2}), N={n}, experiment {exp}: AUC on {t2} of "
            f"finetuned Pretrain-{t2} minus finetuned Pretrain-{t1} (paired by seed, {int(rows['n_pairs'].max())} "
            f"seeds) — " + "; ".join(parts) + f". Pretrain-{t1} is significantly worse on {t2} at {n_sig} of "
            f"{len(rows)} share(s).")
    across = pairs_table(runs)
    for n, rows in across.groupby("n_train", sort=True):
        parts = [f"share {r['level_label']}: {_ci(r['across_mean'], r['across_low'], r['across_high'])}, "
                 f"{r['significant']} of {r['n_pairs']} pairs > 0, Pretrain-T1 matches the reference in "
                 f"{r['matched']} of {r['n_pairs']}" for _, r in rows.iterrows()]
        out.append(f"Across {int(rows['n_pairs'].max())} pairs at N={n} (mean of the pairs' paired T2 AUC "
                   "differences, Student-t over pairs): " + "; ".join(parts) + ".")
    for (_exp, task, n), rows in corr.groupby(_KEYS, sort=True):
        pair = split_task(task) or ("T1", "T2")
        p0 = rows["reference_level"].iloc[0]
        ref = rows[np.isclose(rows["level"], p0)]
        head = (f"Correction {task}, N={n}: reference Pretrain-{pair[1]} at share {p0:g} has AUC on {pair[1]} "
                f"{_f(float(ref['auc_t2_reference'].iloc[0])) if not ref.empty else '—'}")
        if not ref.empty and bool(ref["reaches"].iloc[0]):
            r = ref.iloc[0]
            out.append(f"{head}; Pretrain-{pair[0]} already matches it at the same share ({_f(r['auc_t2_pretrain_t1'])}"
                       f"; remaining gap {_ci(r['remaining_mean'], r['remaining_low'], r['remaining_high'])}), so "
                       f"there is nothing to correct.")
            continue
        reach = rows[rows["reaches"] & (rows["level"] > p0 + 1e-9)]
        if not reach.empty:
            r = reach.iloc[0]
            out.append(f"{head}; Pretrain-{pair[0]} reaches it at share {r['level_label']} "
                       f"({_f(r['auc_t2_pretrain_t1'])}; remaining gap "
                       f"{_ci(r['remaining_mean'], r['remaining_low'], r['remaining_high'])}).")
        else:
            last = rows.iloc[-1]
            out.append(f"{head}; no share up to {last['level_label']} brings Pretrain-{pair[0]} to it (at "
                       f"{last['level_label']}: {_f(last['auc_t2_pretrain_t1'])}, remaining gap "
                       f"{_ci(last['remaining_mean'], last['remaining_low'], last['remaining_high'])}"
                       f"{', not distinguishable from 0' if last['indistinguishable'] else ''}).")
    return out

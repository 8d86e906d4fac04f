"""Analysis of the inheritance experiment (paper §4.1, Fig. 2; docs/protocols.md §3).

For each task and finetuning level, the **biased** base (the paper's Gendered base) is compared with every
**control** base (roles declared in the study or derived from data, :mod:`biastransfer.roles`). Every base is
finetuned on the same set at a given seed, so the comparison is **paired** by seed.

The compared quantity ``q`` of a run is the **direction-signed FPR difference** ``fpr_diff_signed = d · fpr_diff``
with ``d = +1`` when the finetuning set's correlation is towards group a=1 (``c > P(a=1)`` in that set) and
``d = −1`` when it is towards a=0, as the paper signs it: a base biased *against* the correlation has a negative
``q`` and does not read as inheriting it. Where a group has no finite ``fpr_diff_signed`` (an independent set, or
a store written before that column existed), ``q = |fpr_diff|`` (``fpr_diff_abs``) and the reading says
"unsigned".

With ``q_s(b)`` the value of base ``b`` at seed ``s``, for every control ``c`` the paired differences
``δ_s = q_s(biased) − q_s(c)`` over the seeds both have give ``mean ∓ t_{0.975, n−1} · sd(δ) / √n``
(:func:`~biastransfer.analysis.aggregate.paired_interval`). The verdict of a (task, level):

* **holds** when for every control the paired interval lies above 0 (lower bound > 0);
* **reversed** when for some control it lies below 0 (upper bound < 0);
* **not established** otherwise (at ``n`` paired seeds; with one seed there is no interval).

Overlapping separate intervals never decide anything. ``inherited_bias = mean q(biased) − max_controls mean
q(control)`` (means over seeds); scratch is reported alongside, with the paired difference biased − scratch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from biastransfer.analysis.aggregate import STAT_SUFFIXES, abs_interval, interval, paired_frame
from biastransfer.analysis.text import context_labels, fmt, fmt_ci, names
from biastransfer.experiments.spurious import FinetuneExperiment

__all__ = ["findings", "inheritance_comparison", "reading", "verdict_text"]

_BASE_COLUMNS = ("base", "base_kind", "base_attribute", "base_role")
_NAN3 = (math.nan, math.nan, math.nan)


def _finite(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def _quantity(rows: pd.DataFrame, metric: str) -> tuple[pd.Series, bool]:
    """Per run, the compared quantity of a group of runs and whether it is the signed one."""
    signed_col, abs_col = f"{metric}_signed", f"{metric}_abs"
    if signed_col in rows.columns and np.isfinite(_finite(rows[signed_col])).any():
        return pd.Series(_finite(rows[signed_col]), index=rows.index), True
    if abs_col in rows.columns and np.isfinite(_finite(rows[abs_col])).any():
        return pd.Series(_finite(rows[abs_col]), index=rows.index), False
    return pd.Series(np.abs(_finite(rows[metric])), index=rows.index), False


def _agg_quantity(row: pd.Series, metric: str, signed: bool) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the compared quantity from one aggregated row."""
    name = f"{metric}_signed" if signed else f"{metric}_abs"
    if f"{name}_mean" not in row.index:
        name = metric
    mean, low, high = (float(row[f"{name}_{s}"]) for s in ("mean", "low", "high"))
    n = int(row.get(f"{name}_n", row.get("n_seeds", 0)))
    return (mean, low, high, n) if name != metric else (*abs_interval(mean, low, high), n)


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def _verdict(paired: list[dict[str, Any]]) -> str:
    if any(p["high"] < 0 for p in paired):
        return "reversed"
    if all(p["low"] > 0 for p in paired):
        return "holds"
    return "not established"


def inheritance_comparison(frame: pd.DataFrame, metric: str = "fpr_diff") -> pd.DataFrame:
    """Compare the biased base with every control base, per task and finetuning level, paired by seed.

    ``frame`` is the inheritance **runs** frame (one row per run, with ``seed`` and ``base_role``). Runs are
    compared within groups that share every setting of the finetuning kinds except the base columns. Given an
    aggregate over seeds instead (no ``seed`` column), only the means and separate intervals are filled: the
    paired columns are NaN and the verdict is "not established".

    Per group, with ``q`` the compared quantity (module docstring) and ``δ(c)`` the paired difference
    ``q(biased) − q(c)`` by seed:

    * ``signed``: whether ``q`` is the direction-signed FPR difference (else ``|FPR difference|``);
    * ``biased_mean/low/high/n_seeds``: mean of ``q`` over the biased base's seeds with its Student-t interval
      and the number of finite values; ``biased_fpr``, ``biased_abs``: the mean raw ``metric`` and its
      magnitude;
    * ``controls``: per control, ``{"base", "mean", "low", "high", "n_pairs"}`` of ``δ(c)``;
      ``controls_exceeded`` (lower bound > 0), ``controls_reversed`` (upper bound < 0), ``n_controls``;
    * ``max_control_*``: the control with the largest mean ``q`` (the most biased), its separate interval
      (``max_control_mean/low/high``, ``max_control_abs``) and ``paired_mean/low/high``, ``n_pairs``: ``δ``
      against it;
    * ``min_pairs``: the fewest paired seeds over the controls; ``verdict``: ``holds``, ``reversed`` or
      ``not established``; ``holds``: ``verdict == "holds"``;
    * ``inherited_bias`` = ``mean q(biased) − max_controls mean q(control)``;
    * ``scratch_base``, ``scratch_mean/low/high`` (``q``), ``scratch_paired_mean/low/high/n`` (``q(biased) −
      q(scratch)``) and ``scratch_below`` (that paired interval lies above 0).

    Groups without a biased base or without any control are skipped. Returns one row per group with the group's
    setting columns (``base*`` columns removed) followed by the comparison columns.
    """
    if frame.empty or (metric not in frame.columns and f"{metric}_mean" not in frame.columns):
        return pd.DataFrame()
    per_seed = "seed" in frame.columns
    if per_seed:
        keys = [c for c in FinetuneExperiment.settings() if c in frame.columns and c not in _BASE_COLUMNS]
    else:
        keys = [c for c in frame.columns
                if c != "n_seeds" and c not in _BASE_COLUMNS and not c.endswith(STAT_SUFFIXES)]
    records: list[dict[str, object]] = []
    grouped = frame.groupby(keys, dropna=False, sort=True) if keys else [((), frame)]
    for key, rows in grouped:
        key_tuple = key if isinstance(key, tuple) else (key,)
        roles = rows["base_role"].astype(str)
        bases = {r: sorted(rows.loc[roles == r, "base"].astype(str).unique()) for r in ("biased", "control", "scratch")}
        if not bases["biased"] or not bases["control"]:
            continue
        rec: dict[str, object] = dict(zip(keys, key_tuple, strict=True))
        rec.update(_compare(rows, bases, metric, per_seed))
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _compare(rows: pd.DataFrame, bases: dict[str, list[str]], metric: str, per_seed: bool) -> dict[str, object]:
    """The comparison columns of one group (see :func:`inheritance_comparison`)."""
    base = rows["base"].astype(str)
    stats: dict[str, tuple[float, float, float, int]] = {}
    raw: dict[str, float] = {}
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    if per_seed:
        q, signed = _quantity(rows, metric)
        for b in base.unique():
            values = q[base == b].to_numpy(dtype=float)
            values = values[np.isfinite(values)]  # a run where the metric does not apply is no seed of it
            stats[b] = (*interval(values), int(values.size))
            raw[b] = _mean(_finite(rows.loc[base == b, metric])) if metric in rows.columns else math.nan
        table = paired_frame(rows.assign(_q=q, base=base), [], "_q", pair_col="base")
        pairs = {(str(r["base_a"]), str(r["base_b"])): r for r in table.to_dict("records")}
    else:
        signed = (f"{metric}_signed_mean" in rows.columns
                  and bool(np.isfinite(_finite(rows[f"{metric}_signed_mean"])).any()))
        for b, (_, r) in zip(base, rows.iterrows(), strict=True):
            stats[b] = _agg_quantity(r, metric, signed)
            raw[b] = float(r[f"{metric}_mean"])
    g = bases["biased"][0]

    def paired(other: str) -> dict[str, Any]:
        p = pairs.get((g, other))
        if p is None:
            return {"base": other, "mean": stats[g][0] - stats[other][0], "low": math.nan, "high": math.nan,
                    "n_pairs": 0}
        return {"base": other, "mean": p["mean"], "low": p["low"], "high": p["high"], "n_pairs": int(p["n_pairs"])}

    controls = [paired(c) for c in bases["control"]]
    top = max(bases["control"], key=lambda c: (stats[c][0] if not math.isnan(stats[c][0]) else -math.inf))
    top_pair = next(p for p in controls if p["base"] == top)
    verdict = _verdict(controls) if per_seed else "not established"
    out: dict[str, object] = {
        "signed": signed, "biased_base": g, "biased_mean": stats[g][0], "biased_low": stats[g][1],
        "biased_high": stats[g][2], "biased_n_seeds": stats[g][3], "biased_fpr": raw[g], "biased_abs": abs(raw[g]),
        "controls": controls, "n_controls": len(controls),
        "controls_exceeded": [p["base"] for p in controls if p["low"] > 0],
        "controls_reversed": [p["base"] for p in controls if p["high"] < 0],
        "max_control_base": top, "max_control_mean": stats[top][0], "max_control_low": stats[top][1],
        "max_control_high": stats[top][2], "max_control_abs": abs(raw[top]),
        "paired_mean": top_pair["mean"], "paired_low": top_pair["low"], "paired_high": top_pair["high"],
        "n_pairs": top_pair["n_pairs"], "min_pairs": min(p["n_pairs"] for p in controls),
        "verdict": verdict, "holds": verdict == "holds", "inherited_bias": stats[g][0] - stats[top][0],
    }
    if bases["scratch"]:
        s = bases["scratch"][0]
        sp = paired(s)
        out.update(scratch_base=s, scratch_mean=stats[s][0], scratch_low=stats[s][1], scratch_high=stats[s][2],
                   scratch_paired_mean=sp["mean"], scratch_paired_low=sp["low"], scratch_paired_high=sp["high"],
                   scratch_paired_n=sp["n_pairs"], scratch_below=bool(sp["low"] > 0))
    else:
        out.update(scratch_base="", scratch_mean=math.nan, scratch_low=math.nan, scratch_high=math.nan,
                   scratch_paired_mean=math.nan, scratch_paired_low=math.nan, scratch_paired_high=math.nan,
                   scratch_paired_n=0, scratch_below=False)
    return out


def findings(frame: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """Structured findings keyed by ``(task, level label)``: the rows of :func:`inheritance_comparison` of the
    runs ``frame`` as dicts. When one task and level has several comparisons that differ in another setting (set
    size, experiment …), that setting is appended to the level label, e.g. ``"natural (N=128)"``."""
    comp = inheritance_comparison(frame)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    records = comp.to_dict("records")
    for r, suffix in zip(records, context_labels(records, ("task", "level_label")), strict=True):
        r["level"] = float(r.get("level", math.nan))
        r["gap_label"] = str(r.get("gap_label", ""))
        r["signed"] = bool(r["signed"])
        r["holds"] = bool(r["holds"])
        r["scratch_below"] = bool(r["scratch_below"])
        out[(str(r["task"]), str(r.get("level_label", "")) + suffix)] = r
    return out


def verdict_text(f: dict[str, Any]) -> str:
    """``holds``, ``reversed``, ``not established at n seeds`` or ``not established (one seed, no interval)``."""
    if f["verdict"] != "not established":
        return str(f["verdict"])
    n = int(f["min_pairs"])
    if n == 0:
        return "not established (no paired seeds)"
    return "not established (one seed, no interval)" if n == 1 else f"not established at {n} seeds"


def _signed(mean: float, low: float, high: float) -> str:
    """``+0.290 [0.224, 0.356]`` (the mean with its sign)."""
    m = "—" if math.isnan(mean) else f"{mean:+.3f}"
    return m if math.isnan(low) or math.isnan(high) else f"{m} [{fmt(low)}, {fmt(high)}]"


def _quantity_name(signed: bool) -> str:
    return "signed FPR difference" if signed else "|FPR difference| (unsigned)"


def _by_level(inh: dict[tuple[str, str], dict[str, Any]]) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """The findings grouped by finetuning level label, the natural level first: ``[(label, [(task, f), …]), …]``."""
    by_level: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for (task, label), f in inh.items():
        by_level.setdefault(label, []).append((task, f))
    return sorted(by_level.items(), key=lambda kv: (not kv[0].startswith("natural"), kv[0]))


def reading(inh: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Bullets for the inheritance finding: one summary per level (counts of the three verdicts), one line per
    task with the paired difference against the most biased control."""
    lines: list[str] = []
    ordered = _by_level(inh)
    for label, items in ordered:
        where = f"at the {label} finetuning level" if label.startswith("natural") else f"at level {label}"
        kinds = {f["signed"] for _, f in items}
        quantity = {frozenset({True}): _quantity_name(True),
                    frozenset({False}): "|FPR difference| (unsigned: the runs record no direction of the correlation)",
                    }.get(frozenset(kinds), "signed FPR difference, or |FPR difference| (unsigned) where a set has no "
                                            "direction of the correlation")
        held = [t for t, f in items if f["verdict"] == "holds"]
        s = (f"Inheritance {where} (biased base − each control base, paired by seed, {quantity}): holds for "
             f"{len(held)} of {len(items)} task(s)" + (f" ({names(held)})" if held else ""))
        rest: dict[str, list[str]] = {}
        for t, f in items:
            if f["verdict"] != "holds":
                rest.setdefault(verdict_text(f), []).append(t)
        for text in sorted(rest, key=lambda v: (v != "reversed", v)):
            s += f"; {text} for {names(rest[text])}"
        lines.append(s + ".")
        scratch = [(t, f) for t, f in items if f["scratch_base"]]
        if scratch:
            below = [t for t, f in scratch if f["scratch_below"]]
            lines.append(f"Scratch {where}: less biased than the biased base (paired interval of biased − scratch "
                         f"above 0) for {len(below)} of {len(scratch)} task(s)"
                         + (f" ({names(below)})." if below else "."))
        for task, f in items:
            n = int(f["n_pairs"])
            s = (f"{task} ({label}): {verdict_text(f)} — biased ({f['biased_base']}) − most biased control "
                 f"({f['max_control_base']}), {_quantity_name(f['signed'])}: "
                 f"{_signed(f['paired_mean'], f['paired_low'], f['paired_high'])} over {n} paired seed"
                 + ("s" if n != 1 else "")
                 + f"; biased {fmt_ci(f['biased_mean'], f['biased_low'], f['biased_high'])}, control "
                 f"{fmt_ci(f['max_control_mean'], f['max_control_low'], f['max_control_high'])}")
            others = [p for p in f["controls"] if p["base"] != f["max_control_base"]]
            if others:
                s += "; against " + ", ".join(
                    f"{p['base']} {_signed(p['mean'], p['low'], p['high'])}" for p in others)
            if f["scratch_base"]:
                s += (f"; biased − scratch ({f['scratch_base']}) "
                      f"{_signed(f['scratch_paired_mean'], f['scratch_paired_low'], f['scratch_paired_high'])}")
            lines.append(s + ".")
    return lines


def verdict(inh: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """The top-of-report answer to "is the biased base's bias inherited here?": one sentence per finetuning
    level (the natural one first) with the tasks where inheritance holds, the range of the paired differences
    against the most biased control, and the tasks where it is reversed or not established."""
    out = []
    for label, items in _by_level(inh):
        where = f"at the {label} finetuning level" if label.startswith("natural") else f"at level {label}"
        held = [(t, f) for t, f in items if f["verdict"] == "holds"]
        n = max((int(f["min_pairs"]) for _, f in items), default=0)
        if held:
            diffs = [f["paired_mean"] for _, f in held]
            span = _signed(min(diffs), math.nan, math.nan) + (
                "" if len(diffs) == 1 else f" to {_signed(max(diffs), math.nan, math.nan)}")
            s = (f"Inherited {where} on {len(held)} of {len(items)} task(s) ({names([t for t, _ in held])}): the "
                 f"biased base's FPR difference exceeds every control's by {span} (paired 95% intervals above 0, "
                 f"{n} seeds)")
        else:
            s = f"Not shown to be inherited {where} on any of {len(items)} task(s) at {n} seeds"
        rest: dict[str, list[str]] = {}
        for t, f in items:
            if f["verdict"] != "holds":
                rest.setdefault("reversed" if f["verdict"] == "reversed" else "not established", []).append(t)
        if rest and held:
            s += "; " + "; ".join(f"{v} for {names(ts)}" for v, ts in sorted(rest.items(), reverse=True))
        elif rest.get("reversed"):
            s += f"; reversed for {names(rest['reversed'])}"
        out.append(s + ".")
    return out

"""Analysis of the inheritance experiment (paper §4.1, Fig. 2; docs/protocols.md §3).

For each task and finetuning level, the **biased** base (the paper's Gendered base) is compared with every
**control** base (roles declared in the study or derived from data, :mod:`biastransfer.roles`). With ``|m|`` the
magnitude of a base's mean FPR difference over seeds and its interval from
:func:`~biastransfer.analysis.aggregate.abs_interval`:

* the biased base *inherits* bias when its ``|FPR difference|`` exceeds that of every control base with
  non-overlapping 95% intervals (Student-t over seeds);
* ``inherited_bias = |m(biased)| − max_controls |m(control)|`` (means over seeds);
* scratch is reported alongside, and whether its interval lies entirely below the biased one.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from biastransfer.analysis.aggregate import abs_interval
from biastransfer.analysis.text import context_labels, fmt_ci, names

_BASE_COLUMNS = ("base", "base_kind", "base_attribute", "base_role")


def inheritance_comparison(agg: pd.DataFrame, metric: str = "fpr_diff") -> pd.DataFrame:
    """Compare the biased base with every control base, per task and finetuning level.

    ``agg`` is the aggregate of inheritance runs over seeds (with a ``base_role`` column). Rows are compared
    within groups that share every setting except the base. In each group:

    * ``max_control_*``: the control base with the largest ``|m|``;
    * ``separated``: the biased base's lower bound exceeds the upper bound of *every* control base (intervals do
      not overlap); False if any bound is NaN (one seed);
    * ``controls_exceeded``: the controls whose interval lies entirely below the biased one;
    * ``inherited_bias`` = ``|m(biased)| − max_controls |m(control)|``;
    * ``scratch_*`` and ``scratch_below``: the scratch base, and whether its interval lies entirely below the
      biased one.

    Groups without a biased base or without any control are skipped. Returns one row per group with the group's
    setting columns (``base*`` columns removed) followed by the comparison columns.
    """
    mean_c, low_c, high_c = f"{metric}_mean", f"{metric}_low", f"{metric}_high"
    if agg.empty or mean_c not in agg.columns:
        return pd.DataFrame()
    keys = [c for c in agg.columns
            if c != "n_seeds" and c not in _BASE_COLUMNS and not c.endswith(("_mean", "_low", "_high"))]
    records: list[dict[str, object]] = []
    grouped = agg.groupby(keys, dropna=False, sort=True) if keys else [((), agg)]
    for key, rows in grouped:
        key_tuple = key if isinstance(key, tuple) else (key,)
        biased = rows[rows["base_role"] == "biased"]
        controls = rows[rows["base_role"] == "control"]
        if biased.empty or controls.empty:
            continue
        g = biased.iloc[0]
        g_abs, g_low, g_high = abs_interval(float(g[mean_c]), float(g[low_c]), float(g[high_c]))
        ctrl = []
        for _, c in controls.iterrows():
            c_abs, c_low, c_high = abs_interval(float(c[mean_c]), float(c[low_c]), float(c[high_c]))
            ctrl.append((str(c["base"]), c_abs, c_low, c_high))
        exceeded = [name for name, _, _, c_high in ctrl if not math.isnan(g_low) and g_low > c_high]
        top = max(ctrl, key=lambda t: t[1])
        rec: dict[str, object] = dict(zip(keys, key_tuple, strict=True))
        rec.update({
            "biased_base": str(g["base"]), "biased_mean": float(g[mean_c]), "biased_abs": g_abs,
            "biased_low": g_low, "biased_high": g_high, "biased_n_seeds": int(g["n_seeds"]),
            "max_control_base": top[0], "max_control_abs": top[1], "max_control_low": top[2],
            "max_control_high": top[3], "n_controls": len(ctrl), "controls_exceeded": exceeded,
            "separated": len(exceeded) == len(ctrl), "inherited_bias": g_abs - top[1],
        })
        scratch = rows[rows["base_role"] == "scratch"]
        if scratch.empty:
            rec.update(scratch_abs=math.nan, scratch_low=math.nan, scratch_high=math.nan, scratch_below=False)
        else:
            s = scratch.iloc[0]
            s_abs, s_low, s_high = abs_interval(float(s[mean_c]), float(s[low_c]), float(s[high_c]))
            rec.update(scratch_abs=s_abs, scratch_low=s_low, scratch_high=s_high,
                       scratch_below=bool(not math.isnan(g_low) and s_high < g_low))
        records.append(rec)
    return pd.DataFrame.from_records(records)


def findings(agg: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """Structured findings keyed by ``(task, level label)``. When one task and level has several comparisons
    that differ in another setting (set size, experiment …), that setting is appended to the level label,
    e.g. ``"natural (N=128)"``."""
    comp = inheritance_comparison(agg)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    records = comp.to_dict("records")
    for r, suffix in zip(records, context_labels(records, ("task", "level_label")), strict=True):
        out[(str(r["task"]), str(r.get("level_label", "")) + suffix)] = {
            "level": float(r.get("level", math.nan)),
            "biased_base": r["biased_base"], "biased_fpr": r["biased_mean"], "biased_abs_fpr": r["biased_abs"],
            "biased_ci": (r["biased_low"], r["biased_high"]),
            "max_control_base": r["max_control_base"], "max_control_abs_fpr": r["max_control_abs"],
            "max_control_ci": (r["max_control_low"], r["max_control_high"]),
            "controls_exceeded": list(r["controls_exceeded"]), "n_controls": int(r["n_controls"]),
            "separated": bool(r["separated"]), "inherited_bias": r["inherited_bias"],
            "scratch_abs_fpr": r["scratch_abs"], "scratch_ci": (r["scratch_low"], r["scratch_high"]),
            "scratch_below": bool(r["scratch_below"]), "n_seeds": int(r["biased_n_seeds"]),
            "gap_label": str(r.get("gap_label", "")),
        }
    return out


def reading(inh: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
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
        s = (f"Inheritance {where}: the biased base's |FPR difference| exceeds every control base's with "
             f"non-overlapping 95% intervals for {len(held)} of {len(items)} task(s)")
        s += f" ({names(held)})" if held else ""
        s += f"; it does not hold for {names(not_held)}." if not_held else "."
        lines.append(s)
        scratch = [(t, f) for t, f in items if not math.isnan(f["scratch_abs_fpr"])]
        if scratch:
            below = [t for t, f in scratch if f["scratch_below"]]
            lines.append(f"Scratch {where}: less biased than the biased base (non-overlapping intervals) for "
                         f"{len(below)} of {len(scratch)} task(s)" + (f" ({names(below)})." if below else "."))
        for task, f in items:
            g = fmt_ci(f["biased_abs_fpr"], *f["biased_ci"])
            c = fmt_ci(f["max_control_abs_fpr"], *f["max_control_ci"])
            verdict = "holds" if f["separated"] else "does not hold"
            s = (f"{task} ({label}): {verdict} — |FPR difference| biased ({f['biased_base']}) {g} vs most biased "
                 f"control ({f['max_control_base']}) {c}")
            if not f["separated"]:
                n_ex = len(f["controls_exceeded"])
                s += (f"; exceeds {n_ex} of {f['n_controls']} controls"
                      + (f" ({names(f['controls_exceeded'])})" if n_ex else "")
                      if f["n_seeds"] > 1 else "; one seed only, no interval")
            if not math.isnan(f["scratch_abs_fpr"]):
                s += f"; scratch {fmt_ci(f['scratch_abs_fpr'], *f['scratch_ci'])}"
            lines.append(s + f" (n={f['n_seeds']} seeds).")
    return lines

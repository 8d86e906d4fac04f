"""The inheritance chart (paper Fig. 2): the group gap per task and base, one facet per finetuning level."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from biastransfer.analysis.aggregate import abs_interval, aggregate
from biastransfer.experiments.inheritance.analysis import inheritance_comparison
from biastransfer.experiments.spurious import FinetuneExperiment
from biastransfer.render.plots import METRIC_NAMES, gap_label, new_figure, role_order, role_styles, wrap_text
from biastransfer.render.plots import err as bar_err

#: The footnote of the chart (the report's caption says the same).
CAPTION = ("Bars: mean over seeds with 95% CI (Student-t, drawn clipped to the metric's range); * the paired "
           "difference biased − control (by seed) lies above 0 for every control (inheritance holds)")



def _not_natural(level_label: object) -> bool:
    """False for the natural level (its facet comes first)."""
    return str(level_label) != "natural"

def _signed_available(agg: pd.DataFrame, metric: str) -> bool:
    col = f"{metric}_signed_mean"
    return col in agg.columns and bool(np.isfinite(pd.to_numeric(agg[col], errors="coerce")).any())


def inheritance_chart(frame: pd.DataFrame, *, metric: str = "fpr_diff", signed: bool | None = None) -> Figure:
    """Grouped bars of the group gap per task and base (paper Fig. 2), one facet per finetuning level.

    Bars: the biased base (red, outlined), controls (blues), other checkpoints, scratch (grey, hatched); error
    bars are 95% intervals over seeds, drawn clipped to the metric's range (``[−1, 1]`` signed, ``[0, 1]`` for a
    magnitude; the tables keep them unclipped). ``*`` marks the (task, level) where inheritance **holds**: the
    paired interval of biased − control lies above 0 for every control (:func:`.analysis.inheritance_comparison`).
    Tasks are ordered by inherited bias in the first facet.

    Args:
        frame: the inheritance runs (one row per run; the stars need the seeds), or their aggregate over seeds
            (then no star is drawn: nothing is paired).
        metric: the gap (default ``fpr_diff``).
        signed: ``None`` (default) plots the direction-signed gap ``metric_signed`` (positive = towards the
            finetuning set's correlation) in a facet that has it and the magnitude ``|metric|`` elsewhere;
            ``True`` the raw signed gap (group a=1 − group a=0); ``False`` the magnitude.
    """
    if "seed" in frame.columns:
        metrics = list(dict.fromkeys([*FinetuneExperiment.metrics(), metric, f"{metric}_signed"]))
        df = aggregate(frame, metrics, FinetuneExperiment.settings())
    else:
        df = frame.copy()
    comp = inheritance_comparison(frame, metric)
    df["base"] = df["base"].astype(str)
    df["task"] = df["task"].astype(str)
    df["level_label"] = df["level_label"].astype(str) if "level_label" in df.columns else ""
    facet_keys = ["level_label"] + [
        k for k in ("n_train", "experiment", "test_label") if k in df.columns and df[k].nunique(dropna=False) > 1
    ]
    facets = list(df.groupby(facet_keys, sort=True, dropna=False))
    facets.sort(key=lambda kv: (_not_natural(kv[0][0]), str(kv[0])))
    tasks = sorted(df["task"].unique())
    if not comp.empty:
        first = comp[comp["level_label"].astype(str) == str(facets[0][0][0])]
        score = dict(zip(first["task"].astype(str), first["inherited_bias"], strict=True))
        tasks.sort(key=lambda t: (score.get(t, -math.inf), t))
    bases = role_order(df["base"].unique().tolist(), df)
    style = role_styles(bases, df)

    width_in = min(max(7.5, 2.5 + len(tasks) * (0.22 * len(bases) + 0.35)), 18.0)
    fig = new_figure(width_in, 3.9 * len(facets) + 0.6)
    axes = fig.subplots(len(facets), 1, squeeze=False, sharey=True).ravel()
    name = METRIC_NAMES.get(metric, metric)
    gap = gap_label(df)
    bar_w = 0.8 / max(len(bases), 1)
    xs = np.arange(len(tasks))
    global_top = 0.0
    roles = dict(zip(df["base"], df["base_role"].astype(str), strict=True))
    g_idx = next((j for j, b in enumerate(bases) if roles.get(b) == "biased"), 0)
    for ax, (fkey, rows) in zip(axes, facets, strict=True):
        fkey_t = fkey if isinstance(fkey, tuple) else (fkey,)
        direction = signed is None and _signed_available(rows, metric)
        column = f"{metric}_signed" if direction else metric
        magnitude = not (signed or direction)
        short = f"|{name}|" if magnitude else (f"{name}, signed towards the correlation" if direction else name)
        shown = short if direction else f"{short} ({gap})"
        bounds = (0.0, 1.0) if magnitude else (-1.0, 1.0)  # the range of a gap between two rates
        top = 0.0
        biased_top: dict[str, float] = {}
        for j, b in enumerate(bases):
            vals, los, his = [], [], []
            for t in tasks:
                r = rows[(rows["task"] == t) & (rows["base"] == b)]
                m, lo, hi = ((float(r.iloc[0][f"{column}_{s}"]) for s in ("mean", "low", "high")) if not r.empty
                             else (math.nan,) * 3)
                if magnitude:
                    m, lo, hi = abs_interval(m, lo, hi)
                vals.append(m)
                los.append(lo)
                his.append(hi)
            v = np.array(vals)
            err = bar_err(v, np.clip(np.array(los), *bounds), np.clip(np.array(his), *bounds))
            pos = xs - 0.4 + bar_w * (j + 0.5)
            ax.bar(pos, np.nan_to_num(v), bar_w * 0.95, label=b, **style[b], zorder=2)
            ax.errorbar(pos, v, yerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)
            ends = np.where(np.isnan(v), 0.0, np.maximum(v + err[1], 0.0))
            top = max(top, float(ends.max()) if len(v) else 0.0)
            if j == g_idx:
                biased_top = dict(zip(tasks, ends, strict=True))
        if not comp.empty:
            sel = comp["level_label"].astype(str) == str(fkey_t[0])
            for k, extra in zip(facet_keys[1:], fkey_t[1:], strict=True):
                sel &= comp[k] == extra
            for _, c in comp[sel].iterrows():
                if bool(c["holds"]) and str(c["task"]) in tasks:
                    i = tasks.index(str(c["task"]))
                    ax.text(xs[i] - 0.4 + bar_w * (g_idx + 0.5), biased_top[str(c["task"])] + 0.02 * max(top, 1e-9),
                            "*", ha="center", va="bottom", fontsize=14, fontweight="bold", zorder=4)
        ax.set_xticks(xs, tasks, rotation=30 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center")
        if signed or direction:
            ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_ylabel(shown)
        ax.set_xlabel("Downstream task")
        global_top = max(global_top, top)
        facet_title = f"{short} per task and base · finetuning level: {fkey_t[0]}"
        for k, extra in zip(facet_keys[1:], fkey_t[1:], strict=True):
            facet_title += f" · {'N' if k == 'n_train' else k} = {extra}"
        ax.set_title(wrap_text(facet_title, width_in - 2.6, 11), fontsize=11)
        ax.grid(True, axis="y", lw=0.4, alpha=0.5, zorder=0)
    if global_top > 0:
        axes[0].set_ylim(top=global_top * 1.15)
    handles = [Patch(label=b, **{k: v for k, v in style[b].items() if k != "linewidth"}) for b in bases]
    fig.legend(handles=handles, loc="outside right upper", title="Base", fontsize=9)
    fig.supxlabel(wrap_text(CAPTION, width_in - 0.4, 8), fontsize=8, color="0.35")
    return fig

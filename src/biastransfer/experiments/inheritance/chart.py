"""The inheritance chart (paper Fig. 2): the group gap per task and base, one facet per finetuning level."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from biastransfer.analysis.aggregate import abs_interval
from biastransfer.experiments.inheritance.analysis import inheritance_comparison
from biastransfer.report.plots import METRIC_NAMES, gap_label, new_figure, role_order, role_styles
from biastransfer.report.plots import err as bar_err


def inheritance_chart(agg_inh: pd.DataFrame, *, metric: str = "fpr_diff", signed: bool = False) -> Figure:
    """Grouped bars of the group gap per task and base (paper Fig. 2), one facet per finetuning level.

    Bars: the biased base (red, outlined), controls (blues), other checkpoints, scratch (grey, hatched); error
    bars are 95% intervals; ``*`` marks tasks where the biased base's interval lies above every control interval.
    Tasks are ordered by inherited bias (|biased| − max |control|) in the first facet.

    Args:
        agg_inh: aggregated inheritance runs.
        metric: the gap (default ``fpr_diff``).
        signed: plot the signed gap instead of its magnitude.
    """
    df = agg_inh.copy()
    df["base"] = df["base"].astype(str)
    df["task"] = df["task"].astype(str)
    df["level_label"] = df["level_label"].astype(str) if "level_label" in df.columns else ""
    facet_keys = ["level_label"] + [
        k
        for k in ("n_train", "experiment", "test_label")
        if k in df.columns and df[k].nunique(dropna=False) > 1
    ]
    facets = list(df.groupby(facet_keys, sort=True, dropna=False))
    facets.sort(key=lambda kv: (0 if str(kv[0][0]) == "natural" else 1, str(kv[0])))
    comp = inheritance_comparison(agg_inh, metric)
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
    shown = name if signed else f"|{name}|"
    xs = np.arange(len(tasks))
    global_top = 0.0
    for ax, (fkey, rows) in zip(axes, facets, strict=True):
        fkey_t = fkey if isinstance(fkey, tuple) else (fkey,)
        top = 0.0
        for j, b in enumerate(bases):
            vals, los, his = [], [], []
            for t in tasks:
                r = rows[(rows["task"] == t) & (rows["base"] == b)]
                if r.empty:
                    vals.append(math.nan)
                    los.append(math.nan)
                    his.append(math.nan)
                    continue
                m, lo, hi = (float(r.iloc[0][f"{metric}_{s}"]) for s in ("mean", "low", "high"))
                if not signed:
                    m, lo, hi = abs_interval(m, lo, hi)
                vals.append(m)
                los.append(lo)
                his.append(hi)
            v = np.array(vals)
            err = bar_err(v, np.array(los), np.array(his))
            pos = xs - 0.4 + bar_w * (j + 0.5)
            ax.bar(pos, np.nan_to_num(v), bar_w * 0.95, label=b, **style[b], zorder=2)
            ax.errorbar(pos, v, yerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)
            top = max(top, float(np.nanmax(np.where(np.isnan(v), 0, v + err[1]))) if len(v) else 0.0)
        if not comp.empty:
            sel = comp["level_label"].astype(str) == str(fkey_t[0])
            for k, extra in zip(facet_keys[1:], fkey_t[1:], strict=True):
                sel &= comp[k] == extra
            roles = dict(zip(df["base"], df["base_role"].astype(str), strict=True))
            g_idx = next((j for j, b in enumerate(bases) if roles.get(b) == "biased"), 0)
            for _, c in comp[sel].iterrows():
                if c["separated"] and str(c["task"]) in tasks:
                    i = tasks.index(str(c["task"]))
                    ypos = c["biased_high"] if not math.isnan(c["biased_high"]) else c["biased_abs"]
                    ax.text(
                        xs[i] - 0.4 + bar_w * (g_idx + 0.5),
                        ypos + 0.02 * max(top, 1e-9),
                        "*",
                        ha="center",
                        va="bottom",
                        fontsize=14,
                        fontweight="bold",
                        zorder=4,
                    )
        ax.set_xticks(
            xs, tasks, rotation=30 if len(tasks) > 4 else 0, ha="right" if len(tasks) > 4 else "center"
        )
        if signed:
            ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_ylabel(f"{shown} ({gap})")
        ax.set_xlabel("Downstream task")
        global_top = max(global_top, top)
        facet_title = f"{shown} per task and base · finetuning level: {fkey_t[0]}"
        for k, extra in zip(facet_keys[1:], fkey_t[1:], strict=True):
            facet_title += f" · {'N' if k == 'n_train' else k} = {extra}"
        ax.set_title(facet_title, fontsize=11)
        ax.grid(True, axis="y", lw=0.4, alpha=0.5, zorder=0)
    if global_top > 0:
        axes[0].set_ylim(top=global_top * 1.15)
    handles = [Patch(label=b, **{k: v for k, v in style[b].items() if k != "linewidth"}) for b in bases]
    fig.legend(handles=handles, loc="outside right upper", title="Base", fontsize=9)
    fig.supxlabel(
        "Bars: mean over seeds with 95% CI (Student-t); "
        "* the biased base's interval lies above every control interval",
        fontsize=8,
        color="0.35",
    )
    return fig

"""Figures of the report (matplotlib, Agg canvas; nothing is ever shown on a display).

Every function takes aggregated runs (:func:`biastransfer.analysis.aggregate.aggregate`) and returns a
:class:`matplotlib.figure.Figure` bound to an Agg canvas; save it with ``fig.savefig(path)``. Intervals are
the Student-t 95% intervals over seeds of the aggregate; a setting with one seed has no error bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from biastransfer.analysis.aggregate import (
    abs_interval,
    base_role,
    inheritance_comparison,
    is_test_level,
    split_lines,
)

__all__ = ["DPI", "METRIC_NAMES", "inheritance_chart", "salience_plot", "tradeoff_plot", "underrep_plot"]

#: Resolution of saved figures.
DPI = 110

#: Axis names of the gap metrics.
METRIC_NAMES = {
    "fpr_diff": "FPR difference",
    "tpr_diff": "TPR difference",
    "eo_diff": "Equalised-odds difference",
    "auc": "AUC",
}

_INTERVENTION_ORDER = {"collect": 0, "subselect": 1, "reweight": 2, "natural": 3}

_PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
]


def _new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _gap_label(df: pd.DataFrame) -> str:
    """The group-gap label of the rows (e.g. ``Women − Men``), default ``a=1 − a=0``."""
    if "gap_label" in df.columns:
        labels = [str(x) for x in df["gap_label"].dropna().unique() if str(x) not in {"", "nan"}]
        if labels:
            return " / ".join(labels)
    return "a=1 − a=0"


def _err(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Asymmetric error-bar array (2, n); NaN bounds become zero-length bars."""
    lo = np.nan_to_num(mean - low, nan=0.0)
    hi = np.nan_to_num(high - mean, nan=0.0)
    return np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)])


def _role_order(bases: Sequence[str], agg: pd.DataFrame) -> list[str]:
    """Bases ordered Gendered, Controls, others, Scratch."""
    rank = {"gendered": 0, "control": 1, "other": 2, "scratch": 3}
    info = agg.drop_duplicates("base").set_index("base")

    def role(b: str) -> str:
        r = info.loc[b] if b in info.index else {}
        return base_role(b, r.get("base_kind", ""), r.get("base_attribute", ""))

    return sorted(bases, key=lambda b: (rank[role(b)], str(b)))


def tradeoff_plot(agg_sweep: pd.DataFrame, *, metric: str = "fpr_diff", title: str | None = None) -> Figure:
    """AUC (x) against a group gap (y) across finetuning correlation levels (paper Fig. 4).

    One line per base (or per intervention when there is a single base) connecting the levels in order, each
    point annotated with its finetuning level, 95% intervals on both axes, the point whose finetuning level
    equals the test level drawn larger with a black edge, and a dashed line at zero gap. One panel per task
    (× intervention when several bases are compared).

    Args:
        agg_sweep: aggregated correlation-sweep runs (needs ``auc_*`` and ``{metric}_*`` columns, ``level``,
            ``level_label``, ``test_level``, ``task``, ``base``, ``intervention``).
        metric: the gap on the y axis (default ``fpr_diff``).
        title: figure title; a default one is used when None.
    """
    lines = split_lines(agg_sweep)
    multi_base = agg_sweep["base"].nunique() > 1 if not agg_sweep.empty else False
    ctx_keys = [
        k
        for k in ("study", "experiment", "dataset", "test_label")
        if k in agg_sweep.columns and agg_sweep[k].nunique(dropna=False) > 1
    ]
    panels: dict[tuple[str, str], list[tuple[str, pd.DataFrame]]] = {}
    titles: dict[tuple[str, str], str] = {}
    for key, rows in lines:
        row_key = " · ".join([str(key.get("task", ""))] + [f"{k}={key.get(k)}" for k in ctx_keys])
        col_key = str(key.get("intervention", "")) if multi_base else ""
        label = str(key.get("base", "")) if multi_base else str(key.get("intervention", ""))
        if "n_train" in key:
            label += f" (N={key['n_train']})"
        panels.setdefault((row_key, col_key), []).append((label, rows))
        shown_ctx = [f"{k}={key.get(k)}" for k in ctx_keys if k != "test_label"]  # test shown separately
        titles[(row_key, col_key)] = " · ".join([str(key.get("task", "")), *shown_ctx, col_key]).strip(" ·")
    labels: list[str] = []
    for items in panels.values():
        for lab, _ in items:
            if lab not in labels:
                labels.append(lab)
    if multi_base:
        order = _role_order(agg_sweep["base"].astype(str).unique().tolist(), agg_sweep)
        labels.sort(key=lambda s: (order.index(s.split(" (N=")[0]) if s.split(" (N=")[0] in order else 99, s))
    colors = {lab: _PALETTE[i % len(_PALETTE)] for i, lab in enumerate(labels)}

    if multi_base:
        # rows = task (and context), columns = intervention; axes shared within a row for comparison
        row_keys = sorted({r for r, _ in panels})
        col_keys = sorted({c for _, c in panels}, key=lambda c: (_INTERVENTION_ORDER.get(c, 99), c))
        nrows, ncols = len(row_keys), len(col_keys)
        fig = _new_figure(5.6 * ncols + 2.2, 4.6 * nrows + 0.7)
        grid = fig.subplots(nrows, ncols, squeeze=False, sharex="row", sharey="row")
        where = {(r, c): grid[i, j] for i, r in enumerate(row_keys) for j, c in enumerate(col_keys)}
    else:
        n = max(len(panels), 1)
        ncols = 1 if n == 1 else 2
        nrows = math.ceil(n / ncols)
        fig = _new_figure(5.6 * ncols + 2.2, 4.6 * nrows + 0.7)
        grid = fig.subplots(nrows, ncols, squeeze=False)
        where = dict(zip(panels, grid.ravel(), strict=False))
    used = {id(ax) for ax in where.values() if ax is not None}
    name = METRIC_NAMES.get(metric, metric)
    for pkey, items in panels.items():
        ax = where[pkey]
        gap = _gap_label(pd.concat([r for _, r in items]))
        for lab, rows in items:
            x, y = rows["auc_mean"].to_numpy(float), rows[f"{metric}_mean"].to_numpy(float)
            xerr = _err(x, rows["auc_low"].to_numpy(float), rows["auc_high"].to_numpy(float))
            yerr = _err(y, rows[f"{metric}_low"].to_numpy(float), rows[f"{metric}_high"].to_numpy(float))
            c = colors[lab]
            ax.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                fmt="-o",
                color=c,
                ms=4.5,
                lw=1.4,
                elinewidth=0.8,
                capsize=2,
                alpha=0.9,
                zorder=2,
            )
            test = is_test_level(rows).to_numpy()
            if test.any():
                ax.plot(
                    x[test],
                    y[test],
                    "o",
                    ms=12,
                    color=c,
                    markeredgecolor="black",
                    markeredgewidth=2.2,
                    zorder=4,
                )
            for xi, yi, lv in zip(x, y, rows["level_label"].astype(str), strict=True):
                if not (math.isnan(xi) or math.isnan(yi)):
                    ax.annotate(
                        lv,
                        (xi, yi),
                        xytext=(5, 4),
                        textcoords="offset points",
                        fontsize=7,
                        color=c,
                        zorder=5,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75},
                    )
        ax.axhline(0.0, ls="--", lw=1.0, color="0.45", zorder=1)
        test_labels = sorted({str(t) for _, r in items for t in r.get("test_label", pd.Series(dtype=str))})
        sub = titles[pkey]
        if test_labels:
            sub += f" · test at {', '.join(test_labels)}"
        ax.set_title(sub, fontsize=11)
        ax.set_xlabel("Test AUC")
        ax.set_ylabel(f"{name} ({gap})")
        ax.grid(True, lw=0.4, alpha=0.5)
        ax.margins(x=0.08, y=0.1)
    for ax in grid.ravel():
        if id(ax) not in used or not ax.has_data():
            ax.set_visible(False)
    handles = [Line2D([], [], color=colors[lab], marker="o", ms=5, lw=1.4, label=lab) for lab in labels]
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            ms=10,
            color="0.8",
            markeredgecolor="black",
            markeredgewidth=2,
            label="finetuning level = test level",
        )
    )
    fig.legend(
        handles=handles,
        loc="outside right center",
        title="Base" if multi_base else "Intervention",
        fontsize=9,
    )
    fig.suptitle(title or f"AUC vs {name} across finetuning correlation levels", fontsize=13)
    fig.supxlabel(
        "Points labelled with the finetuning correlation level; bars: 95% CI (Student-t over seeds)",
        fontsize=8,
        color="0.35",
    )
    return fig


def inheritance_chart(agg_inh: pd.DataFrame, *, metric: str = "fpr_diff", signed: bool = False) -> Figure:
    """Grouped bars of the group gap per task and base (paper Fig. 2), one facet per finetuning level.

    Bars: Gendered (red, outlined), Controls (blues), other checkpoints, Scratch (grey, hatched); error bars
    are 95% intervals; ``*`` marks tasks where the Gendered interval lies above every Control interval. Tasks
    are ordered by inherited bias (|Gendered| − max |Control|) in the first facet.

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
    bases = _role_order(df["base"].unique().tolist(), df)
    blues = ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#c6dbef"]
    others = ["#74c476", "#9e9ac8", "#fdae6b", "#a1d99b", "#bcbddc"]
    style: dict[str, dict[str, object]] = {}
    n_ctrl = n_oth = 0
    for b in bases:
        r = df[df["base"] == b].iloc[0]
        role = base_role(b, r.get("base_kind", ""), r.get("base_attribute", ""))
        if role == "gendered":
            style[b] = {"facecolor": "#d62728", "edgecolor": "black", "linewidth": 1.2}
        elif role == "control":
            style[b] = {"facecolor": blues[n_ctrl % len(blues)], "edgecolor": "0.3", "linewidth": 0.5}
            n_ctrl += 1
        elif role == "scratch":
            style[b] = {"facecolor": "#d9d9d9", "edgecolor": "0.4", "linewidth": 0.5, "hatch": "//"}
        else:
            style[b] = {"facecolor": others[n_oth % len(others)], "edgecolor": "0.3", "linewidth": 0.5}
            n_oth += 1

    width_in = min(max(7.5, 2.5 + len(tasks) * (0.22 * len(bases) + 0.35)), 18.0)
    fig = _new_figure(width_in, 3.9 * len(facets) + 0.6)
    axes = fig.subplots(len(facets), 1, squeeze=False, sharey=True).ravel()
    name = METRIC_NAMES.get(metric, metric)
    gap = _gap_label(df)
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
            err = _err(v, np.array(los), np.array(his))
            pos = xs - 0.4 + bar_w * (j + 0.5)
            ax.bar(pos, np.nan_to_num(v), bar_w * 0.95, label=b, **style[b], zorder=2)
            ax.errorbar(pos, v, yerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)
            top = max(top, float(np.nanmax(np.where(np.isnan(v), 0, v + err[1]))) if len(v) else 0.0)
        if not comp.empty:
            sel = comp["level_label"].astype(str) == str(fkey_t[0])
            for k, extra in zip(facet_keys[1:], fkey_t[1:], strict=True):
                sel &= comp[k] == extra
            g_idx = next((j for j, b in enumerate(bases) if style[b]["facecolor"] == "#d62728"), 0)
            for _, c in comp[sel].iterrows():
                if c["separated"] and str(c["task"]) in tasks:
                    i = tasks.index(str(c["task"]))
                    ypos = c["gendered_high"] if not math.isnan(c["gendered_high"]) else c["gendered_abs"]
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
        "* Gendered interval lies above every Control interval",
        fontsize=8,
        color="0.35",
    )
    return fig


def salience_plot(sal: pd.DataFrame) -> Figure:
    """Horizontal bars of each attribute's salience relative to ``a`` with 95% intervals.

    ``sal`` is :func:`biastransfer.analysis.aggregate.salience_table`. Salience = AUC_a − AUC_X + 0.5, so 0.5
    means both are learned equally well and larger values mean ``a`` is the easier signal; bars start at 0.5.
    """
    df = sal.sort_values("salience_mean", kind="mergesort")
    fig = _new_figure(7.0, max(2.6, 0.42 * len(df) + 1.4))
    ax = fig.subplots()
    y = np.arange(len(df))
    m = df["salience_mean"].to_numpy(float)
    err = _err(m, df["salience_low"].to_numpy(float), df["salience_high"].to_numpy(float))
    ax.barh(y, m - 0.5, 0.6, left=0.5, color="#6baed6", edgecolor="0.3", linewidth=0.5, zorder=2)
    ax.errorbar(m, y, xerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)
    ax.axvline(0.5, ls=":", color="0.3", lw=1.2, zorder=1)
    ax.set_yticks(y, df["task"].astype(str).tolist())
    ax.set_xlabel("Salience = AUC(a) − AUC(X) + 0.5  (> 0.5: a easier to learn than X)")
    ax.set_ylabel("Attribute X")
    ax.set_title("Salience of each attribute relative to the sensitive attribute", fontsize=12)
    ax.grid(True, axis="x", lw=0.4, alpha=0.5, zorder=0)
    lo = np.nanmin(np.concatenate([m - err[0], [0.5]])) if len(m) else 0.0
    hi = np.nanmax(np.concatenate([m + err[1], [0.5]])) if len(m) else 1.0
    ax.set_xlim(lo - 0.05, hi + 0.05)
    return fig


def underrep_plot(table: pd.DataFrame, gaps: pd.DataFrame) -> Figure:
    """Underrepresentation (paper §5): AUC on T2 against the share of T2 per base, and the T2 AUC difference.

    For each task, two rows of panels, one column per finetuning size N: on top the AUC on T2 (solid, T2
    positives vs all negatives) and on T1 (dotted) of each base against the share p of T2 among the finetuning
    positives; below, AUC_T2(Pretrain-T2) − AUC_T2(Pretrain-T1) paired by seed, with a dashed line at 0.

    Args:
        table: :func:`biastransfer.analysis.underrep.underrep_table`.
        gaps: :func:`biastransfer.analysis.underrep.t2_gap_table`.
    """
    tasks = sorted(table["task"].astype(str).unique()) if not table.empty else []
    sizes = sorted(table["n_train"].unique()) if not table.empty else []
    nrows, ncols = max(2 * len(tasks), 2), max(len(sizes), 1)
    fig = _new_figure(4.8 * ncols + 2.4, 3.3 * nrows + 0.8)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey="row")
    bases = list(dict.fromkeys(table["base"].astype(str))) if not table.empty else []
    role_color = {"pretrain-t1": "#1f77b4", "pretrain-t2": "#d62728"}
    colors, k = {}, 2
    for b in bases:
        role = str(table.loc[table["base"].astype(str) == b, "role"].iloc[0])
        if role in role_color and role_color[role] not in colors.values():
            colors[b] = role_color[role]
        else:
            colors[b] = _PALETTE[k % len(_PALETTE)]
            k += 1
    for i, task in enumerate(tasks):
        pair = task.split("+")
        t1, t2 = (pair[0], pair[1]) if len(pair) == 2 else ("T1", "T2")
        for j, n in enumerate(sizes):
            ax, axd = grid[2 * i, j], grid[2 * i + 1, j]
            rows = table[(table["task"].astype(str) == task) & (table["n_train"] == n)]
            for b, brows in rows.groupby(rows["base"].astype(str), sort=False):
                brows = brows.sort_values("level")
                x = brows["level"].to_numpy(float)
                for metric, style, lab in (("auc_t2", "-o", f"{b}: AUC on {t2}"),
                                           ("auc_t1", ":s", f"{b}: AUC on {t1}")):
                    m = brows[f"{metric}_mean"].to_numpy(float)
                    err = _err(m, brows[f"{metric}_low"].to_numpy(float), brows[f"{metric}_high"].to_numpy(float))
                    ax.errorbar(x, m, yerr=err, fmt=style, color=colors[b], ms=4.5 if style == "-o" else 3.5,
                                lw=1.5 if style == "-o" else 1.0, alpha=1.0 if style == "-o" else 0.6,
                                elinewidth=0.8, capsize=2, label=lab)
            ax.set_title(f"{task} · N = {n}", fontsize=11)
            ax.set_ylabel("Test AUC")
            ax.grid(True, lw=0.4, alpha=0.5)
            g = gaps[(gaps["task"].astype(str) == task) & (gaps["n_train"] == n)].sort_values("level") \
                if not gaps.empty else gaps
            if not g.empty:
                m = g["gap_mean"].to_numpy(float)
                err = _err(m, g["gap_low"].to_numpy(float), g["gap_high"].to_numpy(float))
                axd.errorbar(g["level"].to_numpy(float), m, yerr=err, fmt="-o", color="0.2", ms=4.5, lw=1.4,
                             elinewidth=0.8, capsize=3)
            axd.axhline(0.0, ls="--", lw=1.0, color="0.45")
            axd.set_ylabel(f"Δ AUC on {t2}\n(Pretrain-{t2} − Pretrain-{t1})", fontsize=9)
            axd.set_xlabel(f"Share of {t2} among finetuning positives")
            axd.grid(True, lw=0.4, alpha=0.5)
    handles, labels = [], []
    for ax in grid.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8,
                   title="Bars: 95% CI (Student-t over seeds; the difference is paired by seed)", title_fontsize=8)
    fig.suptitle("AUC on the underrepresented subcategory T2 vs its share", fontsize=12)
    return fig

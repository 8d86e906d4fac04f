"""The tradeoff plot of a correlation sweep (paper Fig. 4): test AUC against a group gap across finetuning levels."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from biastransfer.experiments.correlation_sweep.analysis import is_test_level, line_name, split_lines
from biastransfer.interventions.base import plot_order
from biastransfer.render.plots import METRIC_NAMES, PALETTE, err, gap_label, new_figure, role_order, wrap_text


def tradeoff_plot(agg_sweep: pd.DataFrame, *, metric: str = "fpr_diff", title: str | None = None) -> Figure:
    """AUC (x) against a group gap (y) across finetuning correlation levels (paper Fig. 4).

    One line per base (or per intervention, and training objective other than ERM, when there is a single base:
    :func:`~biastransfer.experiments.correlation_sweep.analysis.line_name`) connecting the levels in order, each
    point annotated with its finetuning level, 95% intervals on both axes (drawn clipped to the metric's range:
    AUC in [0, 1], gaps in [−1, 1]; :func:`biastransfer.render.plots.err`), the point whose finetuning level
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
        col_key = line_name(key) if multi_base else ""
        label = str(key.get("base", "")) if multi_base else line_name(key)
        if "n_train" in key:
            label += f" (N={key['n_train']})"
        elif "n_requested" in key and agg_sweep["n_requested"].nunique() > 1:
            label += f" (N={int(float(key['n_requested']))})"
        panels.setdefault((row_key, col_key), []).append((label, rows))
        shown_ctx = [f"{k}={key.get(k)}" for k in ctx_keys if k != "test_label"]  # test shown separately
        titles[(row_key, col_key)] = " · ".join([str(key.get("task", "")), *shown_ctx, col_key]).strip(" ·")
    labels: list[str] = []
    for items in panels.values():
        for lab, _ in items:
            if lab not in labels:
                labels.append(lab)
    if multi_base:
        order = role_order(agg_sweep["base"].astype(str).unique().tolist(), agg_sweep)
        labels.sort(key=lambda s: (order.index(s.split(" (N=")[0]) if s.split(" (N=")[0] in order else 99, s))
    colors = {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(labels)}

    if multi_base:
        # rows = task (and context), columns = intervention; axes shared within a row for comparison
        row_keys = sorted({r for r, _ in panels})
        col_keys = sorted({c for _, c in panels}, key=lambda c: (plot_order(c.split(" + ")[0]), c))
        nrows, ncols = len(row_keys), len(col_keys)
        fig = new_figure(5.6 * ncols + 2.2, 4.6 * nrows + 0.7)
        grid = fig.subplots(nrows, ncols, squeeze=False, sharex="row", sharey="row")
        where = {(r, c): grid[i, j] for i, r in enumerate(row_keys) for j, c in enumerate(col_keys)}
    else:
        n = max(len(panels), 1)
        ncols = 1 if n == 1 else 2
        nrows = math.ceil(n / ncols)
        fig = new_figure(5.6 * ncols + 2.2, 4.6 * nrows + 0.7)
        grid = fig.subplots(nrows, ncols, squeeze=False)
        where = dict(zip(panels, grid.ravel(), strict=False))
    used = {id(ax) for ax in where.values() if ax is not None}
    name = METRIC_NAMES.get(metric, metric)
    for pkey, items in panels.items():
        ax = where[pkey]
        gap = gap_label(pd.concat([r for _, r in items]))
        for lab, rows in items:
            x, y = rows["auc_mean"].to_numpy(float), rows[f"{metric}_mean"].to_numpy(float)
            xerr = err(x, rows["auc_low"].to_numpy(float), rows["auc_high"].to_numpy(float), "auc")
            yerr = err(y, rows[f"{metric}_low"].to_numpy(float), rows[f"{metric}_high"].to_numpy(float), metric)
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
    width_in = float(fig.get_figwidth())
    fig.suptitle(wrap_text(title or f"AUC vs {name} across finetuning correlation levels", width_in - 0.4, 13),
                 fontsize=13)
    fig.supxlabel(
        wrap_text("Points labelled with the finetuning correlation level; bars: 95% CI (Student-t over seeds), "
                  "clipped to the metric's range", width_in - 0.4, 8),
        fontsize=8,
        color="0.35",
    )
    return fig

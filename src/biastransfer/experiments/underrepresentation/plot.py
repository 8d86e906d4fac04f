"""The underrepresentation plot (paper §5): AUC on T2 against the share of T2 per base, and the T2 AUC difference."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from biastransfer.render.plots import PALETTE, new_figure
from biastransfer.render.plots import err as bar_err


def underrep_plot(table: pd.DataFrame, gaps: pd.DataFrame) -> Figure:
    """Underrepresentation (paper §5): AUC on T2 against the share of T2 per base, and the T2 AUC difference.

    For each task, two rows of panels, one column per finetuning size N: on top the AUC on T2 (solid, T2
    positives vs all negatives) and on T1 (dotted) of each base against the share p of T2 among the finetuning
    positives; below, AUC_T2(Pretrain-T2) − AUC_T2(Pretrain-T1) paired by seed, with a dashed line at 0.

    Args:
        table: :func:`.analysis.underrep_table`.
        gaps: :func:`.analysis.t2_gap_table`.
    """
    tasks = sorted(table["task"].astype(str).unique()) if not table.empty else []
    sizes = sorted(table["n_train"].unique()) if not table.empty else []
    nrows, ncols = max(2 * len(tasks), 2), max(len(sizes), 1)
    fig = new_figure(4.8 * ncols + 2.4, 3.3 * nrows + 0.8)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey="row")
    bases = list(dict.fromkeys(table["base"].astype(str))) if not table.empty else []
    role_color = {"pretrain-t1": "#1f77b4", "pretrain-t2": "#d62728"}
    colors, k = {}, 2
    for b in bases:
        role = str(table.loc[table["base"].astype(str) == b, "role"].iloc[0])
        if role in role_color and role_color[role] not in colors.values():
            colors[b] = role_color[role]
        else:
            colors[b] = PALETTE[k % len(PALETTE)]
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
                    err = bar_err(m, brows[f"{metric}_low"].to_numpy(float), brows[f"{metric}_high"].to_numpy(float),
                                  metric="auc")
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
                err = bar_err(m, g["gap_low"].to_numpy(float), g["gap_high"].to_numpy(float))
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

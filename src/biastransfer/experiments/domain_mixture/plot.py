"""The domain-mixture figure (paper Fig. 6): accuracy on each domain against the diverse share, one line per base."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biastransfer.analysis.text import fmt
from biastransfer.experiments.domain_mixture.analysis import CatchUp
from biastransfer.render.plots import PALETTE, new_figure, role_order, wrap_text


def mixture_plot(agg: pd.DataFrame, crosses: list[CatchUp]) -> Figure:
    """Top-k accuracy against the share q on the diverse domain (left) and the other domain (right), one line per
    (base, N), 95% intervals as bands (clipped to [0, 1]); a star where a follower reaches a leader's accuracy at
    the lowest share, and a dotted line at that level."""
    fig = new_figure(11.5, 4.4)
    left, right = fig.subplots(1, 2, sharex=True)
    bases = role_order(sorted(agg["base"].astype(str).unique()), agg)
    sizes = sorted(agg["n_train"].unique())
    styles = ["-", "--", ":", "-."]
    k = int(float(agg["top_k"].iloc[0]))
    domain = str(agg["diverse_domain"].iloc[0])
    for ax, metric, where in ((left, "topk_diverse", domain), (right, "topk_other", "the other domain")):
        for i, base in enumerate(bases):
            for j, n in enumerate(sizes):
                rows = agg[(agg["base"].astype(str) == base) & (agg["n_train"] == n)].sort_values("share")
                if rows.empty:
                    continue
                x = rows["share"].to_numpy(float)
                label = base if len(sizes) == 1 else f"{base}, N={n}"
                ax.plot(x, rows[f"{metric}_mean"], styles[j % len(styles)], marker="o", ms=4,
                        color=PALETTE[i % len(PALETTE)], label=label)
                ax.fill_between(x, np.clip(rows[f"{metric}_low"].to_numpy(float), 0, 1),
                                np.clip(rows[f"{metric}_high"].to_numpy(float), 0, 1),
                                color=PALETTE[i % len(PALETTE)], alpha=0.15, lw=0)
        ax.set_xlabel(f"share q of the finetuning set from {domain}")
        ax.set_ylabel(f"top-{k} accuracy on {where}")
        ax.grid(alpha=0.3)
    for c in crosses:
        if c.reached_share is None:
            continue
        left.axhline(c.leader_acc, color="0.5", lw=0.8, ls=":")
        left.plot([c.reached_share], [c.reached_acc], marker="*", ms=14, color="black", zorder=5)
        left.annotate(f"{c.follower} reaches {c.leader}\n(q={fmt(c.low_share, 2)}) at q={fmt(c.reached_share, 2)}",
                      (c.reached_share, c.reached_acc), textcoords="offset points", xytext=(6, -22), fontsize=7)
    left.legend(fontsize=8, loc="lower right")
    fig.suptitle(wrap_text(f"Domain mixture: top-{k} accuracy against the share from {domain}", 11.0, 12),
                 fontsize=12)
    return fig

"""The trigger figure: attack success rate against the target's trigger rate p, one line per transfer mode, with
clean accuracy beside it (one row of panels per block, source base and N)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from biastransfer.experiments.trigger_transfer.analysis import SCRATCH
from biastransfer.models.transfer import TRANSFER_MODES
from biastransfer.render.plots import PALETTE, new_figure, wrap_text


def _rank(label: str) -> tuple[int, int]:
    """A mode's display rank by how much of the base stays frozen (its ``frozen_rank``; a label ``name+option``
    ranks with ``name``), then scratch, then unknown modes."""
    name = label.split("+")[0]
    if name in TRANSFER_MODES:
        return 0, TRANSFER_MODES.get(name).frozen_rank
    return (1, 0) if name == SCRATCH else (2, 0)


def mode_order(modes: list[str]) -> list[str]:
    """Modes from the most frozen to scratch, unknown ones last, ties by name."""
    return sorted(modes, key=lambda m: (_rank(m), m))


def trigger_plot(agg: pd.DataFrame) -> Figure:
    """Per (block, source, N): ASR (left) and clean accuracy (right) against p, one line per mode, 95% intervals over
    seeds as error bars clipped to [0, 1]."""
    panels = sorted({(str(e), str(s), int(n)) for e, s, n in zip(agg["experiment"], agg["source_base"],
                                                                  agg["n_train"], strict=True)})
    fig = new_figure(11.0, 3.6 * len(panels) + 0.6)
    axes = np.atleast_2d(fig.subplots(len(panels), 2, squeeze=False))
    modes = mode_order(sorted(agg["mode"].astype(str).unique()))
    for row, (block, source, n) in enumerate(panels):
        sub = agg[(agg["experiment"].astype(str) == block) & (agg["source_base"].astype(str) == source)
                  & (agg["n_train"] == n)]
        for col, (metric, label) in enumerate((("attack_success_rate", "attack success rate"),
                                               ("clean_accuracy", "clean accuracy"))):
            ax = axes[row, col]
            for i, mode in enumerate(modes):
                rows = sub[sub["mode"].astype(str) == mode].sort_values("trigger_rate")
                if rows.empty:
                    continue
                x = rows["trigger_rate"].to_numpy(float)
                mean = rows[f"{metric}_mean"].to_numpy(float)
                low = np.clip(rows[f"{metric}_low"].to_numpy(float), 0, 1)
                high = np.clip(rows[f"{metric}_high"].to_numpy(float), 0, 1)
                err = np.vstack([np.where(np.isnan(low), 0, mean - low), np.where(np.isnan(high), 0, high - mean)])
                ax.errorbar(x + (i - (len(modes) - 1) / 2) * 0.004, mean, yerr=np.clip(err, 0, None), marker="o",
                            ms=4, capsize=3, color=PALETTE[i % len(PALETTE)], label=mode)
            ax.set_xlabel("share p of target images of every class with the trigger")
            ax.set_ylabel(label)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{block}: source {source}, N={n}", fontsize=10)
            ax.grid(alpha=0.3)
        axes[row, 0].legend(fontsize=8, loc="upper right")
    fig.suptitle(wrap_text("Planted trigger: attack success rate (left) and clean accuracy (right) by transfer mode",
                           11.0, 12), fontsize=12)
    return fig

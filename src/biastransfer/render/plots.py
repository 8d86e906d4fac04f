"""Figure helpers shared by the report sections of every experiment kind (matplotlib, Agg canvas; nothing is
ever shown on a display). Intervals drawn are the Student-t 95% intervals over seeds of the aggregates; a setting
with one seed has no error bar. An interval is drawn clipped to the range its metric can take
(:data:`METRIC_RANGES`: AUC in [0, 1], signed group gaps in [−1, 1], magnitudes in [0, 1]): with few seeds
``mean ± t·s/√n`` can pass the range, and a bar beyond it would show values that cannot occur. The tables keep the
unclipped numbers."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from biastransfer.render.markup import DPI
from biastransfer.roles import BASE_ROLES

__all__ = ["METRIC_NAMES", "METRIC_RANGES", "PALETTE", "clip_to_range", "err", "gap_label", "new_figure",
           "role_order", "role_styles", "wrap_text"]

#: Axis names of the metrics.
METRIC_NAMES = {
    "fpr_diff": "FPR difference",
    "tpr_diff": "TPR difference",
    "eo_diff": "Equalised-odds difference",
    "auc": "AUC",
}

#: The range of each metric, to which drawn intervals are clipped (a metric not listed is not clipped).
METRIC_RANGES: dict[str, tuple[float, float]] = {
    "auc": (0.0, 1.0),
    "fpr_diff": (-1.0, 1.0),
    "tpr_diff": (-1.0, 1.0),
    "eo_diff": (0.0, 1.0),  # max(|FPR difference|, |TPR difference|)
    "fpr_diff_signed": (-1.0, 1.0),
    "fpr_diff_abs": (0.0, 1.0),
}

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22"]


def wrap_text(text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points.

    Constrained layout makes room for titles and captions but never breaks them, so a long one runs past the
    figure's edge and is cut off in the PNG. A line holds ``⌊72·width_in / (0.6·fontsize)⌋`` characters (the
    average advance of DejaVu Sans, matplotlib's default font, is about 0.55 em; 0.6 leaves a margin).
    """
    chars = max(16, int(72.0 * width_in / (0.6 * fontsize)))
    return textwrap.fill(text, width=chars, break_on_hyphens=False)


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure on an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def gap_label(df: pd.DataFrame) -> str:
    """The group-gap label of the rows (e.g. ``Women − Men``), default ``a=1 − a=0``."""
    if "gap_label" in df.columns:
        labels = [str(x) for x in df["gap_label"].dropna().unique() if str(x) not in {"", "nan"}]
        if labels:
            return " / ".join(labels)
    return "a=1 − a=0"


def clip_to_range(values: np.ndarray, metric: str | None) -> np.ndarray:
    """``values`` clipped to ``METRIC_RANGES[metric]`` (unchanged for another metric or None; NaN stays NaN)."""
    if metric not in METRIC_RANGES:
        return np.asarray(values, dtype=float)
    lo, hi = METRIC_RANGES[metric]
    return np.clip(np.asarray(values, dtype=float), lo, hi)


def err(mean: np.ndarray, low: np.ndarray, high: np.ndarray, metric: str | None = None) -> np.ndarray:
    """Asymmetric error-bar array (2, n); NaN bounds become zero-length bars. Given ``metric``, the bounds are
    first clipped to its range (:func:`clip_to_range`)."""
    low, high = clip_to_range(low, metric), clip_to_range(high, metric)
    lo = np.nan_to_num(mean - low, nan=0.0)
    hi = np.nan_to_num(high - mean, nan=0.0)
    return np.vstack([np.clip(lo, 0, None), np.clip(hi, 0, None)])


def _roles(df: pd.DataFrame) -> dict[str, str]:
    if "base_role" not in df.columns:
        return {}
    return {str(b): str(r) for b, r in zip(df["base"], df["base_role"], strict=True)}


def role_order(bases: Sequence[str], df: pd.DataFrame) -> list[str]:
    """Bases ordered biased, controls, others, scratch (then by name), roles read from ``df["base_role"]``."""
    roles = _roles(df)
    rank = {"biased": 0, "control": 1, "other": 2, "scratch": 3}
    return sorted(bases, key=lambda b: (rank.get(roles.get(str(b), "other"), 2), str(b)))


def role_styles(bases: Sequence[str], df: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Bar styles by role: biased red and outlined, controls in blues, others in greens, scratch grey hatched."""
    roles = _roles(df)
    blues = ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#c6dbef"]
    others = ["#74c476", "#9e9ac8", "#fdae6b", "#a1d99b", "#bcbddc"]
    style: dict[str, dict[str, object]] = {}
    n_ctrl = n_oth = 0
    for b in bases:
        role = roles.get(str(b), "other")
        assert role in BASE_ROLES, role
        if role == "biased":
            style[b] = {"facecolor": "#d62728", "edgecolor": "black", "linewidth": 1.2}
        elif role == "control":
            style[b] = {"facecolor": blues[n_ctrl % len(blues)], "edgecolor": "0.3", "linewidth": 0.5}
            n_ctrl += 1
        elif role == "scratch":
            style[b] = {"facecolor": "#d9d9d9", "edgecolor": "0.4", "linewidth": 0.5, "hatch": "//"}
        else:
            style[b] = {"facecolor": others[n_oth % len(others)], "edgecolor": "0.3", "linewidth": 0.5}
            n_oth += 1
    return style

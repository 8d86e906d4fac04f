"""Structure of the report figures: labels, panels, the marked test-level point, Agg canvas."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from biastransfer.analysis.aggregate import aggregate, inheritance_comparison, salience_table
from biastransfer.report.plots import inheritance_chart, salience_plot, tradeoff_plot

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "runs.csv")


def visible_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_tradeoff_plot_structure(runs: pd.DataFrame) -> None:
    agg = aggregate(runs[runs["experiment_kind"] == "correlation_sweep"])
    fig = tradeoff_plot(agg)
    assert isinstance(fig, Figure) and isinstance(fig.canvas, FigureCanvasAgg)
    axes = visible_axes(fig)
    assert len(axes) == 2  # one panel per intervention, lines per base
    assert [ax.get_title() for ax in axes] == [
        "Blond_Hair · collect · test at 0.8",
        "Blond_Hair · reweight · test at 0.8",
    ]
    for ax in axes:
        assert ax.get_xlabel() == "Test AUC"
        assert ax.get_ylabel() == "FPR difference (Women − Men)"
        texts = {t.get_text() for t in ax.texts}
        assert {"0.2", "0.5", "0.8", "1"} <= texts
        # the test-level point: large marker with a black edge, at the aggregate of level 0.8
        bold = [ln for ln in ax.lines if ln.get_markersize() >= 12 and ln.get_markeredgecolor() == "black"]
        assert len(bold) == 2  # one per base
        assert any(ln.get_linestyle() == "--" for ln in ax.lines)  # the y = 0 line
    moco = agg[(agg["base"] == "moco") & (agg["intervention"] == "collect") & (agg["level"] == 0.8)].iloc[0]
    points = {(round(x, 6), round(y, 6)) for ln in visible_axes(fig)[0].lines for x, y in ln.get_xydata()}
    assert (round(moco["auc_mean"], 6), round(moco["fpr_diff_mean"], 6)) in points
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["moco", "scratch", "finetuning level = test level"]


def test_tradeoff_plot_single_base_lines_per_intervention(runs: pd.DataFrame) -> None:
    sweep = runs[(runs["experiment_kind"] == "correlation_sweep") & (runs["base"] == "moco")]
    fig = tradeoff_plot(aggregate(sweep), metric="tpr_diff", title="Custom")
    assert len(visible_axes(fig)) == 1
    assert fig.legends[0].get_title().get_text() == "Intervention"
    assert visible_axes(fig)[0].get_ylabel() == "TPR difference (Women − Men)"
    assert fig._suptitle.get_text() == "Custom"


def test_inheritance_chart_structure(runs: pd.DataFrame) -> None:
    agg = aggregate(runs[runs["experiment_kind"] == "inheritance"])
    fig = inheritance_chart(agg)
    axes = visible_axes(fig)
    assert len(axes) == 2
    assert axes[0].get_title().endswith("finetuning level: natural")
    assert axes[1].get_title().endswith("finetuning level: 0.8")
    assert axes[0].get_ylabel() == "|FPR difference| (Women − Men)"
    comp = inheritance_comparison(agg)
    for ax, label in zip(axes, ("natural", "0.8"), strict=True):
        stars = [t for t in ax.texts if t.get_text() == "*"]
        assert len(stars) == int(comp[comp["level_label"] == label]["separated"].sum())
        assert len(ax.patches) == 4 * 4  # 4 tasks × 4 bases
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "gendered",
        "control-bangs",
        "control-hat",
        "scratch",
    ]
    signed = inheritance_chart(agg, signed=True)
    assert visible_axes(signed)[0].get_ylabel() == "FPR difference (Women − Men)"


def test_salience_plot(runs: pd.DataFrame) -> None:
    fig = salience_plot(salience_table(runs))
    ax = visible_axes(fig)[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Smiling", "Earrings", "Eyebags", "Blond_Hair"]
    assert "AUC(a) − AUC(X) + 0.5" in ax.get_xlabel()

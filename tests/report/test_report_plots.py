"""Structure of the report figures: labels, panels, the marked test-level point, Agg canvas; the shared helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from biastransfer.experiments.correlation_sweep import CorrelationSweep
from biastransfer.experiments.correlation_sweep.plot import tradeoff_plot
from biastransfer.experiments.inheritance import Inheritance
from biastransfer.experiments.inheritance.analysis import inheritance_comparison
from biastransfer.experiments.inheritance.chart import inheritance_chart
from biastransfer.experiments.salience import salience_plot, salience_table
from biastransfer.render.markup import DPI
from biastransfer.render.plots import (
    METRIC_NAMES,
    PALETTE,
    err,
    gap_label,
    new_figure,
    role_order,
    role_styles,
    wrap_text,
)
from biastransfer.roles import derive_role

FIXTURES = Path(__file__).parent / "fixtures"
SENSITIVE = "a"  # the sensitive attribute of the fixture


def with_roles(runs: pd.DataFrame) -> pd.DataFrame:
    """The fixture with a ``base_role`` column (derived from each base as a study does, if the fixture has none)."""
    if "base_role" in runs.columns:
        return runs
    roles = [
        derive_role({"kind": k, "attribute": a}, SENSITIVE)
        for k, a in zip(runs["base_kind"], runs["base_attribute"], strict=True)
    ]
    return runs.assign(base_role=roles)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return with_roles(pd.read_csv(FIXTURES / "runs.csv"))


def kind(runs: pd.DataFrame, name: str) -> pd.DataFrame:
    return runs[runs["experiment_kind"] == name]


def visible_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_tradeoff_plot_structure(runs: pd.DataFrame) -> None:
    agg = CorrelationSweep().aggregate(kind(runs, "correlation_sweep"))
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
    sweep = kind(runs, "correlation_sweep").query("base == 'moco'")
    fig = tradeoff_plot(CorrelationSweep().aggregate(sweep), metric="tpr_diff", title="Custom")
    assert len(visible_axes(fig)) == 1
    assert fig.legends[0].get_title().get_text() == "Intervention"
    assert visible_axes(fig)[0].get_ylabel() == "TPR difference (Women − Men)"
    assert fig._suptitle.get_text() == "Custom"


def test_inheritance_chart_structure(runs: pd.DataFrame) -> None:
    inh = kind(runs, "inheritance")
    agg = Inheritance().aggregate(inh)
    fig = inheritance_chart(inh)
    axes = visible_axes(fig)
    assert len(axes) == 2
    assert " ".join(axes[0].get_title().split()).endswith("finetuning level: natural")
    assert " ".join(axes[1].get_title().split()).endswith("finetuning level: 0.8")
    assert axes[0].get_ylabel() == "|FPR difference| (Women − Men)"
    comp = inheritance_comparison(inh)
    for ax, label in zip(axes, ("natural", "0.8"), strict=True):
        stars = [t for t in ax.texts if t.get_text() == "*"]
        assert len(stars) == int(comp[comp["level_label"] == label]["holds"].sum())
        assert len(ax.patches) == 4 * 4  # 4 tasks × 4 bases
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "gendered",
        "control-bangs",
        "control-hat",
        "scratch",
    ]
    signed = inheritance_chart(agg, signed=True)
    assert visible_axes(signed)[0].get_ylabel() == "FPR difference (Women − Men)"


def outside_texts(fig: Figure) -> list[str]:
    """What of a drawn figure runs past its edges (it would be cut off in the PNG): each visible axes with its
    title, labels and drawn tick labels, and each figure-level text (suptitle, caption, legend)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height

    def outside(box) -> bool:
        return box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1

    out = [f"axes {ax.get_title()!r}" for ax in visible_axes(fig) if outside(ax.get_tightbbox(renderer))]
    texts = [*fig.texts, fig._suptitle, fig._supxlabel, fig._supylabel]  # no public getters
    for legend in fig.legends:
        texts += [*legend.get_texts(), legend.get_title()]
    for text in texts:
        shown = isinstance(text, Text) and text.get_visible() and text.get_text().strip()
        if shown and outside(text.get_window_extent(renderer)):
            out.append(text.get_text())
    return out


def test_no_title_caption_or_label_runs_past_the_figure(runs: pd.DataFrame) -> None:
    """The direction-signed inheritance chart has the longest facet titles (the demo's); every chart is drawn
    with every text inside the figure: constrained layout makes room but never breaks a line."""
    inh = kind(runs, "inheritance")
    signed = inh.assign(fpr_diff_signed=inh["fpr_diff"].abs())
    sweep = CorrelationSweep().aggregate(kind(runs, "correlation_sweep"))
    figures = {
        "inheritance (signed)": inheritance_chart(signed),
        "inheritance (one task)": inheritance_chart(signed[signed["task"] == signed["task"].iloc[0]]),
        "tradeoff": tradeoff_plot(sweep),
        "salience": salience_plot(salience_table(kind(runs, "salience"))),
    }
    assert "signed towards the correlation" in visible_axes(figures["inheritance (signed)"])[0].get_title()
    for name, fig in figures.items():
        assert outside_texts(fig) == [], name


def test_wrap_text_fits_the_width() -> None:
    text = "word " * 60
    lines = wrap_text(text, 5.0, 10).splitlines()
    assert len(lines) > 1 and all(len(line) <= int(72 * 5.0 / 6.0) for line in lines)
    assert wrap_text("short", 5.0, 10) == "short"


def test_salience_plot(runs: pd.DataFrame) -> None:
    fig = salience_plot(salience_table(kind(runs, "salience")))
    ax = visible_axes(fig)[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Smiling", "Earrings", "Eyebags", "Blond_Hair"]
    assert "AUC(a) − AUC(X) + 0.5" in ax.get_xlabel()


def test_shared_helpers(runs: pd.DataFrame) -> None:
    fig = new_figure(3.0, 2.0)
    assert isinstance(fig.canvas, FigureCanvasAgg) and fig.get_dpi() == DPI
    assert tuple(fig.get_size_inches()) == (3.0, 2.0)
    bars = err(np.array([0.5, 0.2, 0.3]), np.array([0.4, np.nan, 0.35]), np.array([0.7, np.nan, 0.4]))
    assert bars.shape == (2, 3)
    assert bars[:, 0] == pytest.approx([0.1, 0.2]) and bars[:, 1].tolist() == [0.0, 0.0]
    assert bars[:, 2] == pytest.approx([0.0, 0.1])  # a low bound above the mean is clipped to 0
    assert gap_label(runs) == "Women − Men"
    assert gap_label(pd.DataFrame({"gap_label": ["", None]})) == "a=1 − a=0"
    assert METRIC_NAMES["fpr_diff"] == "FPR difference" and len(set(PALETTE)) == len(PALETTE)


def test_role_order_and_styles_follow_base_role_not_names() -> None:
    df = pd.DataFrame(
        {
            "base": ["z-biased", "control-gender-free", "a-scratch", "moco", "b-control"],
            "base_role": ["control", "biased", "scratch", "other", "control"],
        }
    )
    bases = df["base"].tolist()
    assert role_order(bases, df) == ["control-gender-free", "b-control", "z-biased", "moco", "a-scratch"]
    style = role_styles(bases, df)
    assert style["control-gender-free"]["facecolor"] == "#d62728"  # the biased base is red and outlined
    assert style["control-gender-free"]["edgecolor"] == "black"
    assert style["z-biased"]["facecolor"] != "#d62728" and style["b-control"]["facecolor"] != "#d62728"
    assert style["a-scratch"]["hatch"] == "//"
    # without roles every base is "other", ordered by name
    assert role_order(bases, df.drop(columns="base_role")) == sorted(bases)

"""Paired evidence: paired intervals against scipy, the inheritance verdicts (holds, reversed, not established)
from the paired difference by seed, the direction-signed FPR difference, the chart's stars and clipped bars, and
seed counts that leave NaN runs out."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from analysis_builders import run_row
from matplotlib.collections import LineCollection
from scipy import stats

from biastransfer.analysis.aggregate import aggregate, paired_frame, paired_interval
from biastransfer.experiments.inheritance import Inheritance
from biastransfer.experiments.inheritance import analysis as inh
from biastransfer.experiments.inheritance.chart import inheritance_chart

BASES = {"gendered": ("trained", "a"), "control-t0": ("trained", "t0"), "control-t1": ("trained", "t1"),
         "scratch": ("scratch", "")}


def scipy_paired(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Mean and 95% interval of a − b by scipy's paired t-test."""
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    return float(np.mean(np.subtract(a, b))), float(ci.low), float(ci.high)


def runs_of(values: dict[str, list[float]], *, task: str = "t3", d: float | None = 1.0,
            level_label: str = "natural") -> pd.DataFrame:
    """One run per base and seed with ``fpr_diff = values[base][seed]``; ``d`` gives the direction of the set's
    correlation (``fpr_diff_signed = d · fpr_diff``), ``None`` leaves the signed columns out (an old store)."""
    rows = []
    for base, per_seed in values.items():
        kind, attr = BASES[base]
        for seed, v in enumerate(per_seed):
            extra = {} if d is None else {"fpr_diff_signed": d * v, "fpr_diff_abs": abs(v)}
            rows.append(run_row(task=task, base=base, base_kind=kind, base_attribute=attr, seed=seed, fpr_diff=v,
                                level_label=level_label, **extra))
    return pd.DataFrame(rows)


def test_paired_interval_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        a, b = rng.normal(0.3, 0.1, n), rng.normal(0.2, 0.1, n)
        mean, low, high, k = paired_interval(pd.Series(a), pd.Series(b))
        assert k == n and (mean, low, high) == pytest.approx(scipy_paired(list(a), list(b)), abs=1e-12)
        d = a - b
        t_low, t_high = stats.t.interval(0.95, n - 1, loc=d.mean(), scale=stats.sem(d))
        assert (low, high) == pytest.approx((t_low, t_high), abs=1e-12)
    # pairs by seed: a seed only one side has, and a NaN pair, are left out
    a = pd.Series([0.7, 0.5, 0.9, 0.1, math.nan], index=[0, 1, 2, 7, 4])
    b = pd.Series([0.42, 0.18, 0.63, 0.3], index=[0, 1, 2, 4])
    mean, low, high, k = paired_interval(a, b)
    assert k == 3 and (mean, low, high) == pytest.approx(scipy_paired([0.7, 0.5, 0.9], [0.42, 0.18, 0.63]))
    assert (round(mean, 3), round(low, 3), round(high, 3)) == (0.29, 0.224, 0.356)
    one = paired_interval(pd.Series([0.5]), pd.Series([0.2]))
    assert one[0] == pytest.approx(0.3) and math.isnan(one[1]) and math.isnan(one[2]) and one[3] == 1


def test_paired_frame_every_ordered_pair_per_group() -> None:
    runs = pd.concat([runs_of({"gendered": [0.7, 0.5, 0.9], "control-t0": [0.42, 0.18, 0.63]}, task="t3"),
                      runs_of({"gendered": [0.2, 0.1], "control-t0": [0.3, 0.25], "scratch": [0.0, 0.05]},
                              task="t4")], ignore_index=True)
    table = paired_frame(runs, ["task", "level_label"], "fpr_diff")
    assert list(table.columns) == ["task", "level_label", "base_a", "base_b", "mean", "low", "high", "n_pairs"]
    assert len(table) == 2 + 6  # t3: 2 bases → 2 ordered pairs; t4: 3 bases → 6
    row = table[(table["task"] == "t3") & (table["base_a"] == "gendered")].iloc[0]
    assert (row["mean"], row["low"], row["high"]) == pytest.approx(
        scipy_paired([0.7, 0.5, 0.9], [0.42, 0.18, 0.63]))
    back = table[(table["task"] == "t3") & (table["base_a"] == "control-t0")].iloc[0]
    assert (back["mean"], back["low"], back["high"]) == pytest.approx((-row["mean"], -row["high"], -row["low"]))
    t4 = table[(table["task"] == "t4") & (table["base_a"] == "control-t0") & (table["base_b"] == "scratch")].iloc[0]
    assert t4["n_pairs"] == 2 and (t4["mean"], t4["low"], t4["high"]) == pytest.approx(
        scipy_paired([0.3, 0.25], [0.0, 0.05]))


def test_issue_example_holds_although_the_intervals_overlap() -> None:
    runs = runs_of({"gendered": [0.70, 0.50, 0.90], "control-t0": [0.42, 0.18, 0.63], "scratch": [0.1, 0.2, 0.15]})
    (f,) = inh.findings(runs).values()
    assert f["biased_low"] < f["max_control_high"]  # the separate intervals overlap …
    assert f["verdict"] == "holds" and f["signed"]  # … the paired difference does not reach 0
    assert (f["paired_mean"], f["paired_low"], f["paired_high"]) == pytest.approx(
        scipy_paired([0.70, 0.50, 0.90], [0.42, 0.18, 0.63]))
    assert f["inherited_bias"] == pytest.approx(0.29)
    text = inh.reading(inh.findings(runs))
    assert text[0] == ("Inheritance at the natural finetuning level (biased base − each control base, paired by seed, "
                       "signed FPR difference): holds for 1 of 1 task(s) (t3).")
    assert text[-1].startswith("t3 (natural): holds — biased (gendered) − most biased control (control-t0), signed "
                               "FPR difference: +0.290 [0.224, 0.356] over 3 paired seeds; ")
    assert not any("does not hold" in s for s in text)
    # the same runs without their seeds (an aggregate) establish nothing
    agg = inh.findings(Inheritance().aggregate(runs))
    assert [g["verdict"] for g in agg.values()] == ["not established"]


def test_holds_needs_every_control_and_reversed_wins() -> None:
    runs = pd.concat([
        # t1: above control-t0 at every seed, but not clearly above control-t1: not established
        runs_of({"gendered": [0.40, 0.30, 0.50], "control-t0": [0.10, 0.00, 0.20],
                 "control-t1": [0.45, 0.20, 0.48]}, task="t1"),
        # t2: below control-t1 at every seed: reversed, although above control-t0
        runs_of({"gendered": [0.20, 0.25, 0.30], "control-t0": [0.0, 0.05, 0.1],
                 "control-t1": [0.40, 0.43, 0.52]}, task="t2"),
        # t3: above both at every seed: holds
        runs_of({"gendered": [0.70, 0.50, 0.90], "control-t0": [0.42, 0.18, 0.63],
                 "control-t1": [0.1, 0.0, 0.2]}, task="t3"),
    ], ignore_index=True)
    found = {task: f for (task, _), f in inh.findings(runs).items()}
    assert {t: f["verdict"] for t, f in found.items()} == {"t1": "not established", "t2": "reversed", "t3": "holds"}
    assert found["t1"]["controls_exceeded"] == ["control-t0"] and found["t2"]["controls_reversed"] == ["control-t1"]
    assert found["t2"]["max_control_base"] == "control-t1" and found["t2"]["inherited_bias"] < 0
    summary = inh.reading(inh.findings(runs))[0]
    assert summary.endswith("holds for 1 of 3 task(s) (t3); reversed for t2; not established at 3 seeds for t1.")


def test_a_base_biased_against_the_correlation_does_not_inherit_it() -> None:
    # the set's correlation is towards a=1 (d = +1); the biased base's gap is large but towards a=0
    values = {"gendered": [-0.45, -0.40, -0.50], "control-t0": [0.10, 0.05, 0.12]}
    (signed,) = inh.findings(runs_of(values, d=1.0)).values()
    assert signed["verdict"] == "reversed" and signed["paired_mean"] < 0 and not signed["holds"]
    # on the magnitude alone (an old store without the signed column) it would read as inherited
    (unsigned,) = inh.findings(runs_of(values, d=None)).values()
    assert unsigned["verdict"] == "holds" and not unsigned["signed"]
    text = " ".join(inh.reading(inh.findings(runs_of(values, d=None))))
    assert "|FPR difference| (unsigned" in text and "signed FPR difference" not in text
    # towards a=0 (d = −1) the same base does inherit the correlation
    (towards,) = inh.findings(runs_of(values, d=-1.0)).values()
    assert towards["verdict"] == "holds" and towards["biased_mean"] == pytest.approx(0.45)


def test_independent_set_falls_back_to_the_magnitude_in_that_group_only() -> None:
    runs = pd.concat([runs_of({"gendered": [0.4, 0.3, 0.5], "control-t0": [0.1, 0.0, 0.2]}, d=math.nan),
                      runs_of({"gendered": [0.4, 0.3, 0.5], "control-t0": [0.1, 0.0, 0.2]}, level_label="0.8")],
                     ignore_index=True)
    found = inh.findings(runs)
    assert not found[("t3", "natural")]["signed"] and found[("t3", "0.8")]["signed"]


def test_one_seed_gives_no_interval_and_no_verdict() -> None:
    runs = runs_of({"gendered": [0.7], "control-t0": [0.1]})
    (f,) = inh.findings(runs).values()
    assert f["verdict"] == "not established" and f["n_pairs"] == 1 and math.isnan(f["paired_low"])
    text = inh.reading(inh.findings(runs))
    assert text[0].endswith("holds for 0 of 1 task(s); not established (one seed, no interval) for t3.")
    assert "+0.600 over 1 paired seed;" in text[-1]


def test_seed_counts_leave_nan_runs_out() -> None:
    runs = runs_of({"gendered": [0.7, 0.5, 0.9, 0.6], "control-t0": [0.4, 0.2, 0.6, 0.3]})
    runs.loc[(runs["base"] == "gendered") & (runs["seed"] == 3), ["fpr_diff", "fpr_diff_signed"]] = math.nan
    runs.loc[(runs["base"] == "control-t0") & (runs["seed"] == 1), "fpr_diff_signed"] = math.nan
    (f,) = inh.findings(runs).values()
    assert f["biased_n_seeds"] == 3 and f["n_pairs"] == 2  # seeds 0 and 2 are finite on both sides
    nan_runs = runs.assign(auc=math.nan, tpr_diff=math.nan, eo_diff=math.nan, fpr_diff_abs=math.nan)
    with pytest.warns(UserWarning, match="NaN"):
        agg = aggregate(nan_runs, Inheritance.metrics(), Inheritance.settings())
    g = agg[agg["base"] == "gendered"].iloc[0]
    assert g["n_seeds"] == 3 and g["fpr_diff_n"] == 3 and g["auc_n"] == 0


def _bars(fig) -> list[tuple[list[float], list[str]]]:
    """Per visible axis: the y ends of its error bars, and its texts."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.patches:
            continue
        ys = [float(y) for c in ax.collections if isinstance(c, LineCollection)
              for seg in c.get_segments() for y in seg[:, 1]]
        out.append((ys, [t.get_text() for t in ax.texts]))
    return out


def test_chart_stars_from_the_paired_verdict_and_bars_clipped_to_the_range() -> None:
    # t1 holds paired with overlapping intervals (bounds beyond ±1 at two seeds); t2 is reversed (below −1)
    runs = pd.concat([runs_of({"gendered": [0.95, 0.30], "control-t0": [0.85, 0.21]}, task="t1"),
                      runs_of({"gendered": [-0.9, 0.2, -0.95], "control-t0": [0.5, 0.9, 0.4]}, task="t2")],
                     ignore_index=True)
    comp = inh.inheritance_comparison(runs)
    assert comp.set_index("task")["verdict"].to_dict() == {"t1": "holds", "t2": "reversed"}
    ((ys, texts),) = _bars(inheritance_chart(runs))
    assert texts.count("*") == 1
    assert ys and min(ys) >= -1.0 and max(ys) <= 1.0 and min(ys) == -1.0  # drawn clipped
    agg = Inheritance().aggregate(runs)
    assert (agg["fpr_diff_signed_high"] > 1).any() and (agg["fpr_diff_signed_low"] < -1).any()  # tables: not
    ((ys_abs, texts_abs),) = _bars(inheritance_chart(runs, signed=False))
    assert texts_abs.count("*") == 1 and min(ys_abs) >= 0.0 and max(ys_abs) == 1.0
    ((_, no_stars),) = _bars(inheritance_chart(agg))  # an aggregate pairs nothing: no star
    assert "*" not in no_stars

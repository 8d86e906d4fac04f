"""Training objectives in the correlation sweep (docs/objectives.md): each objective is its own line (findings,
tradeoff plot), and the report compares every objective with ERM, paired by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from biastransfer.experiments.base import Results
from biastransfer.experiments.correlation_sweep import CorrelationSweep, analysis, fixes, objectives_table
from biastransfer.experiments.correlation_sweep.plot import tradeoff_plot
from biastransfer.render.markup import Page

ERM_AUC = {0.5: [0.80, 0.84, 0.82], 0.8: [0.86, 0.88, 0.87]}
ERM_FPR = {0.5: [0.05, 0.04, 0.06], 0.8: [0.30, 0.28, 0.32]}
DRO_AUC_DIFF = [-0.02, -0.01, -0.03]  # group_dro − erm per seed, at every level
DRO_FPR = {0.5: [0.02, -0.01, 0.03], 0.8: [0.10, 0.12, -0.08]}


def sweep_runs() -> pd.DataFrame:
    rows = []
    for objective in ("erm", "group_dro(eta=0.1)"):
        for level in (0.5, 0.8):
            for seed in range(3):
                auc = ERM_AUC[level][seed] + (DRO_AUC_DIFF[seed] if objective != "erm" else 0.0)
                fpr = ERM_FPR[level][seed] if objective == "erm" else DRO_FPR[level][seed]
                rows.append({"run_key": f"{objective}|{level}|{seed}", "study": "s", "experiment": "sweep",
                             "experiment_kind": "correlation_sweep", "dataset": "synthetic", "task": "t3",
                             "base": "moco", "base_kind": "checkpoint", "base_attribute": "", "base_role": "other",
                             "n_train": 1024, "n_requested": 1024, "seed": seed, "intervention": "collect",
                             "objective": objective, "level": level, "level_label": f"{level:g}", "test_level": 0.8,
                             "test_label": "0.8", "threshold_policy": "val", "gap_label": "a=1 − a=0", "auc": auc,
                             "fpr_diff": fpr, "fpr_diff_abs": abs(fpr), "tpr_diff": 0.0, "eo_diff": abs(fpr)})
    return pd.DataFrame(rows)


def test_each_objective_is_its_own_line() -> None:
    found = analysis.findings(sweep_runs(), CorrelationSweep.settings())
    assert sorted(found) == [("t3", "moco", "collect"), ("t3", "moco", "collect + group_dro(eta=0.1)")]
    assert found["t3", "moco", "collect"]["objective"] == "erm"
    assert found["t3", "moco", "collect"]["auc_ref"] == pytest.approx(np.mean(ERM_AUC[0.8]))
    dro = found["t3", "moco", "collect + group_dro(eta=0.1)"]
    assert dro["auc_ref"] == pytest.approx(np.mean(np.add(ERM_AUC[0.8], DRO_AUC_DIFF)))
    assert analysis.line_name({"intervention": "reweight", "objective": "erm"}) == "reweight"
    assert analysis.line_name({"intervention": "reweight"}) == "reweight"  # runs stored before objectives


def test_objectives_are_compared_with_erm_paired_by_seed() -> None:
    """At level 0.8: d_s(|FPR|) = |0.10|−0.30, |0.12|−0.28, |−0.08|−0.32 = (−0.20, −0.16, −0.24); AUC
    differences (−0.02, −0.01, −0.03); mean ± t_{0.975, 2}·sd/√3."""
    pairs = analysis.objective_pairs(sweep_runs(), CorrelationSweep.settings())
    assert sorted(pairs["level"]) == [0.5, 0.8] and set(pairs["objective"]) == {"group_dro(eta=0.1)"}
    row = pairs[pairs["level"] == 0.8].iloc[0]
    for metric, d in (("fpr_diff_abs", [-0.20, -0.16, -0.24]), ("auc", DRO_AUC_DIFF)):
        half = stats.t.ppf(0.975, 2) * np.std(d, ddof=1) / np.sqrt(3)
        assert row[f"{metric}_mean"] == pytest.approx(np.mean(d))
        assert row[f"{metric}_low"] == pytest.approx(np.mean(d) - half)
        assert row[f"{metric}_high"] == pytest.approx(np.mean(d) + half)
    assert row["n_pairs"] == 3
    table = objectives_table(pairs)
    assert list(table.columns) == ["task", "base", "intervention", "level", "N", "objective", "AUC difference",
                                   "|FPR difference| difference", "seeds"]
    erm_only = sweep_runs().query("objective == 'erm'")
    assert analysis.objective_pairs(erm_only, CorrelationSweep.settings()).empty


def test_the_report_draws_every_objective_on_one_tradeoff_plot_and_tabulates_the_pairs(tmp_path: Path) -> None:
    runs = sweep_runs()
    plugin = CorrelationSweep()
    fig = tradeoff_plot(plugin.aggregate(runs))
    labels = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    labels |= {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert {"collect", "collect + group_dro(eta=0.1)"} <= labels
    assert len([ax for ax in fig.axes if ax.has_data()]) == 1  # one plot
    (section,) = plugin.sections(Results(runs), Page(tmp_path))
    html = "\n".join(section.body)
    assert "Training objectives against ERM, paired by seed" in html and "group_dro(eta=0.1)" in html
    (erm_section,) = plugin.sections(Results(runs.query("objective == 'erm'")), Page(tmp_path / "erm"))
    assert "Training objectives against ERM" not in "\n".join(erm_section.body)


def test_the_reading_says_which_fix_wins_at_the_tolerance() -> None:
    """One reference for both kinds: ERM on collect @ 0.8 (AUC 0.86, 0.88, 0.87). At ε = 0.1: ERM @ 0.5 keeps AUC
    (d = −0.06, −0.04, −0.05: lower bound −0.0748) with |mean FPR| 0.05; group_dro @ 0.8 keeps it (d = −0.02,
    −0.01, −0.03: −0.0448) with |mean FPR| |0.14/3| = 0.047, so the objective wins; group_dro @ 0.5 does not
    (d = −0.08, −0.05, −0.08: −0.113). Paired |FPR| objective − data: (0.05, 0.08, 0.02), whose interval holds 0.
    At ε = 0.01 nothing keeps AUC."""
    runs = sweep_runs()
    (found,) = fixes.fixes_at_tolerance(runs, CorrelationSweep.settings(), 0.1)
    assert found["n_keep"] == 2 and found["reference"]["abs_fpr"] == pytest.approx(0.30)
    winner, data = found["winner"], found["best_data"]
    assert winner == found["best_objective"] and winner["objective"] == "group_dro(eta=0.1)"
    assert winner["level"] == 0.8 and winner["abs_fpr"] == pytest.approx(0.14 / 3)
    assert data["level"] == 0.5 and data["abs_fpr"] == pytest.approx(0.05)
    d = np.array([-0.05, -0.08, -0.02])  # data − objective
    half = stats.t.ppf(0.975, 2) * np.std(d, ddof=1) / np.sqrt(3)
    assert found["versus"] == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    (text,) = fixes.fixes_reading([found])
    assert "is group_dro(eta=0.1) on collect @ 0.8, an objective: 0.047" in text
    assert "the best data fix, collect @ 0.5 (ERM), has 0.050" in text and "not established" in text
    assert "(winner − it) 0.050 [-0.025, 0.125]" in text  # objective − data: the sign turned around
    (strict,) = fixes.fixes_at_tolerance(runs, CorrelationSweep.settings(), 0.01)
    assert strict["winner"] is None and "no setting keeps AUC within ε = 0.01" in fixes.fixes_reading([strict])[0]
    assert fixes.fixes_at_tolerance(runs.query("objective == 'erm'"), CorrelationSweep.settings()) == []
    reading = CorrelationSweep().reading(Results(runs))
    assert any(line.startswith("Data fixes against objectives (task t3, base moco") for line in reading)

"""Findings and the reading of the inheritance and correlation-sweep kinds on synthetic runs whose answer is
known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_builders import inheritance_runs, sweep_runs
from scipy import stats as scipy_stats

from biastransfer.experiments.base import Results
from biastransfer.experiments.correlation_sweep import CorrelationSweep
from biastransfer.experiments.correlation_sweep import analysis as sweep_analysis
from biastransfer.experiments.inheritance import Inheritance
from biastransfer.experiments.inheritance import analysis as inheritance_analysis
from biastransfer.report.page import build_report, kind_results

# Blond_Hair: the biased base far above both controls (holds). Smiling: the biased base above both controls on
# average, but its paired difference from control-hat varies by seed (not established at 3 seeds). Eyebags:
# correlated with men, FPR differences negative; no signed column (a store written before it), so compared on the
# magnitude (holds, unsigned).
INHERITANCE = {
    ("Blond_Hair", "gendered"): (0.30, 0.35),
    ("Blond_Hair", "control-hat"): (0.10, 0.12),
    ("Blond_Hair", "control-bangs"): (0.08, 0.09),
    ("Blond_Hair", "scratch"): (0.03, 0.03),
    ("Smiling", "gendered"): (0.12, 0.14),
    ("Smiling", "control-hat"): (0.11, 0.10),
    ("Smiling", "control-bangs"): (0.04, 0.05),
    ("Smiling", "scratch"): (0.03, 0.03),
    ("Eyebags", "gendered"): (-0.40, 0.30),
    ("Eyebags", "control-hat"): (-0.10, 0.10),
    ("Eyebags", "control-bangs"): (-0.05, 0.05),
}
#: Smiling's biased base: paired differences from control-hat at natural 0.04, −0.02, 0.01 (mean 0.01)
JITTER = {("Smiling", "gendered"): (0.03, -0.03, 0.0)}


def inheritance_frame() -> pd.DataFrame:
    return inheritance_runs(INHERITANCE, levels={"Blond_Hair": 0.78, "Smiling": 0.55, "Eyebags": 0.25},
                            jitter=JITTER)


def inheritance_findings(runs: pd.DataFrame) -> dict:
    return inheritance_analysis.findings(runs)


def sweep_findings(runs: pd.DataFrame) -> dict:
    return sweep_analysis.findings(runs, CorrelationSweep.settings())


def sweep_reading(runs: pd.DataFrame) -> list[str]:
    return CorrelationSweep().reading(Results(runs))


def page_reading(runs: pd.DataFrame) -> list[str]:
    """The reading of the whole page: each kind present, with its own rows (as the report builds it)."""
    return [line for plugin, res in kind_results(runs) for line in plugin.reading(res)]


def test_inheritance_findings_paired_by_seed() -> None:
    inh = inheritance_findings(inheritance_frame())
    assert set(inh) == {(t, lv) for t in ("Blond_Hair", "Smiling", "Eyebags") for lv in ("natural", "0.8")}
    blond = inh[("Blond_Hair", "natural")]
    assert blond["verdict"] == "holds" and blond["holds"] is True and blond["signed"] is False
    assert blond["biased_base"] == "gendered"
    assert blond["biased_mean"] == pytest.approx(0.30)
    assert (blond["biased_low"], blond["biased_high"]) == pytest.approx(
        (0.30 - 4.302652729749464 * 0.01 / math.sqrt(3), 0.30 + 4.302652729749464 * 0.01 / math.sqrt(3))
    )
    assert blond["max_control_mean"] == pytest.approx(0.10)
    assert blond["max_control_base"] == "control-hat"
    assert blond["inherited_bias"] == pytest.approx(0.20)
    assert blond["paired_mean"] == pytest.approx(0.20) and blond["n_pairs"] == 3
    assert blond["scratch_below"] is True
    smiling = inh[("Smiling", "natural")]
    assert smiling["verdict"] == "not established" and smiling["holds"] is False
    assert smiling["controls_exceeded"] == ["control-bangs"] and smiling["controls_reversed"] == []
    d = [0.04, -0.02, 0.01]
    expected = (np.mean(d), *scipy_stats.t.interval(0.95, 2, loc=np.mean(d), scale=scipy_stats.sem(d)))
    assert (smiling["paired_mean"], smiling["paired_low"], smiling["paired_high"]) == pytest.approx(expected)
    eyebags = inh[("Eyebags", "natural")]
    assert eyebags["verdict"] == "holds" and eyebags["biased_fpr"] == pytest.approx(-0.40)
    assert eyebags["biased_mean"] == pytest.approx(0.40)  # unsigned: |FPR difference| per run
    assert eyebags["scratch_base"] == "" and math.isnan(eyebags["scratch_mean"])


def test_inheritance_reading_text() -> None:
    text = Inheritance().reading(Results(inheritance_frame(), {}))
    assert text[:-1] == inheritance_analysis.reading(inheritance_findings(inheritance_frame()))
    summary = next(s for s in text if s.startswith("Inheritance at the natural"))
    assert "paired by seed" in summary and "unsigned" in summary
    assert "holds for 2 of 3 task(s) (Blond_Hair and Eyebags); not established at 3 seeds for Smiling." in summary
    smiling = next(s for s in text if s.startswith("Smiling (natural)"))
    assert smiling.startswith("Smiling (natural): not established at 3 seeds — biased (gendered) − most biased "
                              "control (control-hat)")
    assert "+0.010 [" in smiling and "over 3 paired seeds" in smiling and "against control-bangs +0.080" in smiling
    blond = next(s for s in text if s.startswith("Blond_Hair (natural)"))
    assert blond.startswith("Blond_Hair (natural): holds — ")
    assert "biased 0.300 [0.275, 0.325], control 0.100 [" in blond  # 0.30 ± t_2 · 0.01 / √3
    assert "biased − scratch (scratch) +0.270" in blond
    assert not any("does not hold" in s for s in text)
    assert not any("Gendered" in s or "Control" in s for s in text)
    assert text[-1].startswith("Mixed-effects regression")  # 3 attributes: fitted or explained


def test_sweep_finding_with_known_best_level() -> None:
    runs = sweep_runs(
        {
            ("moco", "collect"): [
                (0.2, 0.800, -0.05),  # least biased but AUC too low
                (0.5, 0.861, 0.12),  # within 0.01 of the reference AUC: best
                (0.6, 0.864, 0.20),
                (0.8, 0.866, 0.31),  # test-equal level: reference
                (1.0, 0.850, 0.40),
            ],
            ("moco", "reweight"): [(0.5, 0.820, 0.02), (0.8, 0.870, 0.25), (1.0, 0.871, 0.30)],
        }
    )
    sweep = sweep_findings(runs)  # the seeds' offsets are shared, so every paired difference is constant
    collect = sweep[("Blond_Hair", "moco", "collect")]
    assert collect["reference_level"] == pytest.approx(0.8)
    assert collect["n_tried"] == 4 and collect["n_keep"] == 2  # 0.5 and 0.6 keep AUC; 0.2 and 1.0 do not
    assert collect["best_level"] == pytest.approx(0.5)
    assert collect["auc_ref"] == pytest.approx(0.866)
    assert collect["auc_best"] == pytest.approx(0.861)
    assert collect["abs_fpr_ref"] == pytest.approx(0.31)
    assert collect["abs_fpr_best"] == pytest.approx(0.12)
    assert collect["cut"] == pytest.approx(1 - 0.12 / 0.31)
    assert collect["established"] is True and collect["improves"] is True
    assert collect["abs_fpr_paired"][0] == pytest.approx(0.12 - 0.31)
    reweight = sweep[("Blond_Hair", "moco", "reweight")]
    assert reweight["improves"] is False and reweight["best_level"] == pytest.approx(1.0)
    text = sweep_reading(runs)
    assert text == sweep_analysis.reading(sweep)
    line = next(s for s in text if s.startswith("Blond_Hair, base moco, collect"))
    assert "of 4 levels tried besides the test-equal level 0.8 (AUC 0.866" in line
    assert "2 keep AUC (paired lower bound above −0.01); the best, 0.5 (AUC paired difference -0.005" in line
    assert "cuts |FPR difference| from 0.310 to 0.120 (−61%), paired difference -0.190" in line
    assert line.endswith("(Bonferroni for 4 levels): established.")
    other = next(s for s in text if s.startswith("Blond_Hair, base moco, reweight"))
    assert "1 keeps AUC" in other and "none has a smaller |FPR difference| than the test-equal level's 0.250" in other


def test_sweep_cut_not_established_when_paired_differences_vary() -> None:
    runs = sweep_runs({("moco", "collect"): [(0.6, 0.865, 0.20), (0.8, 0.866, 0.22)]})
    at = runs["level"] == 0.6
    runs.loc[at, "fpr_diff"] += runs.loc[at, "seed"].map({0: 0.05, 1: -0.04, 2: 0.0})  # means stay apart
    f = sweep_findings(runs)[("Blond_Hair", "moco", "collect")]
    assert f["improves"] is True and f["established"] is False and f["abs_fpr_paired"][2] > 0
    line = sweep_reading(runs)[0]
    assert line.endswith("(Bonferroni for 1 level): not established at 3 seeds.")


def test_sweep_without_test_level_and_missing_kinds(tmp_path: Path) -> None:
    runs = sweep_runs({("moco", "collect"): [(0.2, 0.8, 0.1), (0.5, 0.85, 0.2)]})
    f = sweep_findings(runs)[("Blond_Hair", "moco", "collect")]
    assert f["reference_level"] is None and "test level" in f["reason"]
    assert sweep_reading(runs) == ["Blond_Hair, base moco, collect: no run at the test level; no comparison made."]
    assert sweep_findings(runs.iloc[0:0]) == {}
    assert inheritance_findings(inheritance_frame().iloc[0:0]) == {}
    assert sweep_reading(runs.iloc[0:0]) == []
    assert page_reading(runs.iloc[0:0]) == []
    text = build_report(runs.iloc[0:0], tmp_path, title="empty").read_text(encoding="utf-8")
    assert "<li>No findings to read.</li>" in text
    only_sweep = page_reading(sweep_runs({("moco", "collect"): [(0.5, 0.86, 0.1), (0.8, 0.87, 0.3)]}))
    assert only_sweep and not any("Inheritance" in s or "regression" in s for s in only_sweep)


def test_lines_differing_in_set_size_are_told_apart() -> None:
    small = sweep_runs({("moco", "collect"): [(0.5, 0.80, 0.05), (0.8, 0.805, 0.20)]}).assign(n_train=128)
    large = sweep_runs({("moco", "collect"): [(0.5, 0.86, 0.10), (0.8, 0.866, 0.30)]}).assign(n_train=1024)
    sweep = sweep_findings(pd.concat([small, large], ignore_index=True))
    assert set(sweep) == {
        ("Blond_Hair", "moco", "collect (N=128)"),
        ("Blond_Hair", "moco", "collect (N=1024)"),
    }
    assert sweep[("Blond_Hair", "moco", "collect (N=128)")]["abs_fpr_ref"] == pytest.approx(0.20)
    assert sweep[("Blond_Hair", "moco", "collect (N=1024)")]["abs_fpr_best"] == pytest.approx(0.10)
    inh = inheritance_runs({("T", "gendered"): (0.3, 0.3), ("T", "control-hat"): (0.1, 0.1)})
    both = pd.concat([inh.assign(n_train=128), inh.assign(n_train=1024)], ignore_index=True)
    assert set(inheritance_findings(both)) == {("T", f"{lv} (N={n})") for lv in ("natural", "0.8") for n in (128, 1024)}

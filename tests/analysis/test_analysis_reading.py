"""Findings and the reading of the inheritance and correlation-sweep kinds on synthetic runs whose answer is
known."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from analysis_builders import inheritance_runs, sweep_runs

from biastransfer.experiments.base import Results
from biastransfer.experiments.correlation_sweep import CorrelationSweep
from biastransfer.experiments.correlation_sweep import analysis as sweep_analysis
from biastransfer.experiments.inheritance import Inheritance
from biastransfer.experiments.inheritance import analysis as inheritance_analysis
from biastransfer.report.page import build_report, kind_results

# Blond_Hair: the biased base far above both controls (holds). Smiling: the biased base above one control but its
# interval overlaps the other's (does not hold). Eyebags: correlated with men, signed differences negative (holds
# on magnitude).
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


def inheritance_frame() -> pd.DataFrame:
    return inheritance_runs(INHERITANCE, levels={"Blond_Hair": 0.78, "Smiling": 0.55, "Eyebags": 0.25})


def inheritance_findings(runs: pd.DataFrame) -> dict:
    return inheritance_analysis.findings(Inheritance().aggregate(runs))


def sweep_findings(runs: pd.DataFrame) -> dict:
    return sweep_analysis.findings(CorrelationSweep().aggregate(runs), sweep_analysis.AUC_TOLERANCE)


def sweep_reading(runs: pd.DataFrame) -> list[str]:
    return CorrelationSweep().reading(Results(runs))


def page_reading(runs: pd.DataFrame) -> list[str]:
    """The reading of the whole page: each kind present, with its own rows (as the report builds it)."""
    return [line for plugin, res in kind_results(runs) for line in plugin.reading(res)]


def test_inheritance_finding_holds_and_does_not_hold() -> None:
    inh = inheritance_findings(inheritance_frame())
    assert set(inh) == {(t, lv) for t in ("Blond_Hair", "Smiling", "Eyebags") for lv in ("natural", "0.8")}
    blond = inh[("Blond_Hair", "natural")]
    assert blond["separated"] is True
    assert blond["biased_base"] == "gendered"
    assert blond["biased_abs_fpr"] == pytest.approx(0.30)
    assert blond["biased_ci"] == pytest.approx(
        (0.30 - 4.302652729749464 * 0.01 / math.sqrt(3), 0.30 + 4.302652729749464 * 0.01 / math.sqrt(3))
    )
    assert blond["max_control_abs_fpr"] == pytest.approx(0.10)
    assert blond["max_control_base"] == "control-hat"
    assert blond["inherited_bias"] == pytest.approx(0.20)
    assert blond["scratch_below"] is True
    smiling = inh[("Smiling", "natural")]
    assert smiling["separated"] is False
    assert smiling["controls_exceeded"] == ["control-bangs"]
    eyebags = inh[("Eyebags", "natural")]
    assert eyebags["separated"] is True and eyebags["biased_fpr"] == pytest.approx(-0.40)
    assert eyebags["biased_abs_fpr"] == pytest.approx(0.40)
    assert math.isnan(eyebags["scratch_abs_fpr"])


def test_inheritance_reading_text() -> None:
    text = Inheritance().reading(Results(inheritance_frame(), {}))
    assert text[:-1] == inheritance_analysis.reading(inheritance_findings(inheritance_frame()))
    summary = next(s for s in text if s.startswith("Inheritance at the natural"))
    assert "the biased base's |FPR difference| exceeds every control base's" in summary
    assert "for 2 of 3 task(s) (Blond_Hair and Eyebags)" in summary
    assert "does not hold for Smiling" in summary
    smiling = next(s for s in text if s.startswith("Smiling (natural)"))
    assert "does not hold" in smiling and "0.120 [" in smiling and "control-hat" in smiling
    assert "exceeds 1 of 2 controls (control-bangs)" in smiling
    blond = next(s for s in text if s.startswith("Blond_Hair (natural)"))
    assert "holds" in blond and "0.300 [0.275, 0.325]" in blond  # 0.30 ± t_2 · 0.01 / √3
    assert "biased (gendered) 0.300 [0.275, 0.325] vs most biased control (control-hat) 0.100 [" in blond
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
    sweep = sweep_findings(runs)
    collect = sweep[("Blond_Hair", "moco", "collect")]
    assert collect["reference_level"] == pytest.approx(0.8)
    assert collect["best_level"] == pytest.approx(0.5)
    assert collect["auc_ref"] == pytest.approx(0.866)
    assert collect["auc_best"] == pytest.approx(0.861)
    assert collect["abs_fpr_ref"] == pytest.approx(0.31)
    assert collect["abs_fpr_best"] == pytest.approx(0.12)
    assert collect["cut"] == pytest.approx(1 - 0.12 / 0.31)
    assert collect["separated"] is True and collect["improves"] is True
    reweight = sweep[("Blond_Hair", "moco", "reweight")]
    assert reweight["improves"] is False and reweight["best_level"] == pytest.approx(0.8)
    text = sweep_reading(runs)
    assert text == sweep_analysis.reading(sweep, sweep_analysis.AUC_TOLERANCE)
    line = next(s for s in text if s.startswith("Blond_Hair, base moco, collect"))
    assert "finetuning at 0.5 keeps AUC 0.861" in line
    assert "(vs 0.866" in line and "at 0.8)" in line
    assert "cuts |FPR difference| from 0.310 to 0.120 (−61%)" in line
    assert "do not overlap" in line
    other = next(s for s in text if s.startswith("Blond_Hair, base moco, reweight"))
    assert other.startswith("Blond_Hair, base moco, reweight: no finetuning level keeps AUC within 0.01")


def test_sweep_cut_not_established_when_intervals_overlap() -> None:
    runs = sweep_runs({("moco", "collect"): [(0.6, 0.865, 0.20), (0.8, 0.866, 0.22)]}, spread=0.05)
    f = sweep_findings(runs)[("Blond_Hair", "moco", "collect")]
    assert f["improves"] is True and f["separated"] is False
    line = sweep_reading(runs)[0]
    assert "overlap, so the cut is not established" in line


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

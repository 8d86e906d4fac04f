"""The verdict at the top of the report: plain sentences answering "is the bias inherited here?" and "which
finetuning level overwrites it, at what AUC cost?", each linked to the section that holds its evidence; built
from constructed runs whose paired evidence is known."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
from analysis_builders import inheritance_runs, sweep_runs

from biastransfer import plugins  # noqa: F401
from biastransfer.analysis.text import fmt, fmt_signed
from biastransfer.experiments.base import Results
from biastransfer.experiments.correlation_sweep import CorrelationSweep
from biastransfer.experiments.inheritance import Inheritance
from biastransfer.report.page import build_report

#: Per-seed offsets shared by the biased and control bases of a task: intervals overlap, pairs do not.
SHARED = (0.2, -0.2, 0.0)


def _inheritance() -> pd.DataFrame:
    values = {("t1", "gendered"): (0.70, 0.70), ("t1", "control-hat"): (0.41, 0.41),
              ("t2", "gendered"): (0.60, 0.60), ("t2", "control-hat"): (0.40, 0.40),
              ("t3", "gendered"): (0.40, 0.40), ("t3", "control-hat"): (0.40, 0.40)}
    jitter = {(t, b): SHARED for t, b in values} | {("t3", "gendered"): (0.1, -0.1, 0.0)}
    directions = {(t, lv): 1.0 for t in ("t1", "t2", "t3") for lv in ("natural", "0.8")}
    return inheritance_runs(values, jitter=jitter, directions=directions)


def test_inheritance_verdict_names_the_tasks_where_it_holds_with_the_paired_range() -> None:
    lines = [v.text for v in Inheritance().verdict(Results(_inheritance()))]
    natural = next(s for s in lines if "natural" in s)
    assert natural.startswith("Inherited at the natural finetuning level on 2 of 3 task(s) (t1 and t2)")
    assert "+0.200 to +0.290" in natural and "3 seeds" in natural
    assert "not established for t3" in natural
    assert all(v.evidence == "inheritance" for v in Inheritance().verdict(Results(_inheritance())))


def test_inheritance_verdict_says_when_nothing_is_shown() -> None:
    values = {("t1", "gendered"): (0.4, 0.4), ("t1", "control-hat"): (0.4, 0.4)}
    runs = inheritance_runs(values, jitter={("t1", "gendered"): (0.1, -0.1, 0.0)},
                            directions={("t1", "natural"): 1.0, ("t1", "0.8"): 1.0})
    lines = [v.text for v in Inheritance().verdict(Results(runs))]
    assert lines[0].startswith("Not shown to be inherited at the natural finetuning level on any of 1 task(s)")


def _sweep(auc_06: float, fpr_06: float) -> pd.DataFrame:
    return sweep_runs({("gendered", "collect"): [(0.5, 0.80, 0.05), (0.6, auc_06, fpr_06), (0.8, 0.86, 0.60)]})


def test_sweep_verdict_gives_the_level_the_cut_and_the_auc_cost() -> None:
    [v] = CorrelationSweep().verdict(Results(_sweep(0.862, 0.30)))
    assert v.evidence == "tradeoff"
    assert v.text.startswith("Overwritten: finetuning Blond_Hair at level 0.6 (collect, base gendered) instead of "
                             "the test-equal 0.8 cuts |FPR difference| from 0.600 to 0.300 at an AUC change of "
                             "+0.002 [0.002, 0.002] (paired; within the 0.01 tolerance)")


def test_sweep_verdict_when_no_level_keeps_auc_names_the_closest_and_claims_nothing() -> None:
    """No level is shown to keep AUC: "not established" (never "not overwritten"), with the level whose paired
    AUC lower bound is highest among those that lower |FPR difference|."""
    runs = sweep_runs({("gendered", "collect"): [(0.5, 0.70, 0.05), (0.6, 0.80, 0.30), (0.7, 0.84, 0.70),
                                                 (0.8, 0.86, 0.60)]})
    [v] = CorrelationSweep().verdict(Results(runs))
    assert v.text == ("Not established at 3 seeds: no finetuning level tried is shown to keep AUC (paired "
                      "non-inferiority, tolerance 0.01). The closest, 0.6 for Blond_Hair (collect, base gendered), "
                      "has |FPR difference| 0.300 against 0.600 at the test-equal level, and a paired AUC difference "
                      "-0.060 [-0.060, -0.060] whose lower bound is below −0.01.")


def test_sweep_verdict_not_overwritten_when_no_level_lowers_the_gap() -> None:
    runs = sweep_runs({("gendered", "collect"): [(0.6, 0.80, 0.70), (0.8, 0.86, 0.60)]})
    [v] = CorrelationSweep().verdict(Results(runs))
    assert v.text.startswith("Not overwritten: on none of 1 sweep line(s) does a finetuning level tried have a "
                             "smaller |FPR difference|")


def test_the_page_opens_with_the_verdict_linked_to_existing_sections(tmp_path: Path) -> None:
    runs = pd.concat([_inheritance(), _sweep(0.862, 0.30)], ignore_index=True)
    html = build_report(runs, tmp_path, title="t").read_text()
    verdict = html[html.index('<section id="verdict"'):]
    verdict = verdict[: verdict.index("</section>")]
    assert html.index('id="verdict"') < html.index('id="reading"')
    links = re.findall(r'href="#([^"]+)"', verdict)
    assert links == ["inheritance", "inheritance", "tradeoff"]
    for target in set(links):
        assert f'<section id="{target}">' in html


def test_numbers_that_round_to_zero_carry_no_sign() -> None:
    assert (fmt(-0.0004), fmt(0.0004), fmt(-0.0006), fmt(math.nan)) == ("0.000", "0.000", "-0.001", "—")
    assert (fmt_signed(0.0123), fmt_signed(-0.0004), fmt_signed(-0.02), fmt_signed(None)) == (
        "+0.012", "0.000", "-0.020", "—")

"""Correlation sweep (paper §4.2, Fig. 4): one biased base finetuned at a sweep of correlation levels (collect,
subselect, reweight …) with the test set fixed; the AUC vs FPR-difference tradeoff.

The run is the shared finetuning run of :mod:`biastransfer.experiments.spurious`; :mod:`.analysis` tests, per
sweep line, which levels keep AUC against the test-equal level (paired non-inferiority with
``options.auc_tolerance``) and whether the best of them cuts |FPR difference| (paired, Bonferroni over the levels
tried); :mod:`.plot` draws the tradeoff.

``options.auc_tolerance`` is read by the analysis only: :meth:`CorrelationSweep.expand` does not put it in the
runs' specs, so it is in no run key and changing it reruns nothing. The export reads it from the study stored
with the runs (column ``auc_tolerance``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from biastransfer.analysis.text import fmt, fmt_ci, level_text
from biastransfer.experiments.base import EXPERIMENTS, Column, Results, Verdict, Verdicts
from biastransfer.experiments.correlation_sweep import analysis, fixes
from biastransfer.experiments.correlation_sweep.plot import tradeoff_plot
from biastransfer.experiments.grid import Objectives
from biastransfer.experiments.spurious import COLUMNS, FinetuneBlock, FinetuneExperiment
from biastransfer.render.markup import Page, Section


class CorrelationSweepOptions(BaseModel):
    """Options of the sweep's analysis (none of them reaches a run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    auc_tolerance: float = Field(analysis.AUC_TOLERANCE, ge=0.0, lt=1.0,
                                 description="a level keeps AUC when the paired 95% lower bound of AUC(level) − "
                                             "AUC(test-equal level) lies above −auc_tolerance")


class CorrelationSweepBlock(FinetuneBlock, Objectives):
    """bases × tasks × interventions × objectives × levels × N × seeds, and the analysis options."""

    options: CorrelationSweepOptions = CorrelationSweepOptions()


def _tolerance(run: dict[str, Any]) -> float:
    """``options.auc_tolerance`` of the run's block in the study stored with the runs (``run["block"]``)."""
    block = run.get("block") or {}
    options = (block.get("options") or {}) if block.get("kind") == "correlation_sweep" else {}
    return float(options.get("auc_tolerance", analysis.AUC_TOLERANCE))


@EXPERIMENTS.register("correlation_sweep")
class CorrelationSweep(FinetuneExperiment, Verdicts):
    """finetuning correlation level swept, test fixed: AUC vs FPR difference tradeoff."""

    title = "Performance–bias tradeoff across finetuning levels"
    description = "finetuning correlation level swept, test fixed: AUC vs FPR difference tradeoff"
    report_order = 20
    Block = CorrelationSweepBlock
    columns = (*COLUMNS,
               Column("n_requested", "int", "setting", "N asked for in the study; a subselect line keeps it while its "
                      "sets shrink (their size is n_train)", get=lambda run: run["spec"]["n_train"]),
               Column("auc_tolerance", "float", "outcome", "options.auc_tolerance of the block (analysis only; not "
                      "in the run key)", get=_tolerance))
    example: ClassVar[dict[str, Any]] = {
        "tasks": ["t3"], "bases": ["gendered"], "interventions": ["collect", "reweight"], "levels": [0.5, 0.8],
        "n_train": 32, "seeds": [0, 1], "test": 0.8
    }

    def findings(self, results: Results) -> dict[tuple[str, str, str], dict[str, Any]]:
        return analysis.findings(results.runs, self.settings())

    def reading(self, results: Results) -> list[str]:
        return [*analysis.reading(self.findings(results)),
                *fixes.fixes_reading(fixes.fixes_at_tolerance(results.runs, self.settings()))]

    def verdict(self, results: Results) -> list[Verdict]:
        return [Verdict(text, "tradeoff") for text in analysis.verdict(self.findings(results))]

    def sections(self, results: Results, page: Page) -> list[Section]:
        agg = self.aggregate(results.runs)
        groups = list(agg.groupby("experiment", sort=True))
        body: list[str] = []
        for name, agg_exp in groups:
            fig = tradeoff_plot(agg_exp, title=f"AUC vs FPR difference across finetuning levels — {name}")
            body += page.figure(
                fig, f"tradeoff_{name}" if len(groups) > 1 else "tradeoff", f"Tradeoff plot for {name}",
                f"Experiment {name}: x = test AUC, y = FPR difference; the outlined point is the level equal to "
                "the test level. Bars: 95% CI over seeds, drawn clipped to the metric's range.")
        table = levels_table(self.findings(results))
        if not table.empty:
            body.append(page.heading("Each level against the test-equal level, paired by seed"))
            body.append(page.note("AUC difference: level − test-equal level, paired by seed, Student-t 95% CI; a "
                                  "level keeps AUC when the lower bound lies above −tolerance."))
            body += page.table(table)
        pairs = objectives_table(analysis.objective_pairs(results.runs, self.settings()))
        if not pairs.empty:  # a block with objectives besides ERM (docs/objectives.md)
            body.append(page.heading("Training objectives against ERM, paired by seed"))
            body.append(page.note("Difference objective − ERM on the same task, base, intervention, level and N "
                                  "(the same finetuning sets at each seed), Student-t 95% CI over seeds; a negative "
                                  "|FPR difference| difference is a smaller gap."))
            body += page.table(pairs)
        return [Section("tradeoff", self.title, body)]


def objectives_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, base, intervention, level, N, objective ≠ ERM) of
    :func:`~.analysis.objective_pairs`: the paired differences objective − ERM of AUC and |FPR difference|."""
    if pairs.empty:
        return pd.DataFrame()
    return pd.DataFrame([{
        "task": r["task"], "base": r["base"], "intervention": r["intervention"],
        "level": level_text(r["level"], r["level_label"]), "N": int(r["n_train"]), "objective": r["objective"],
        "AUC difference": fmt_ci(r["auc_mean"], r["auc_low"], r["auc_high"]),
        "|FPR difference| difference": fmt_ci(r["fpr_diff_abs_mean"], r["fpr_diff_abs_low"],
                                              r["fpr_diff_abs_high"]),
        "seeds": int(r["n_pairs"])} for _, r in pairs.iterrows()])


def levels_table(sweep: dict[tuple[str, str, str], dict[str, Any]]) -> pd.DataFrame:
    """One row per (line, level tried): mean AUC, the paired AUC difference, whether it keeps AUC, mean FPR
    difference, and which level is the best."""
    rows = []
    for (task, base, label), f in sweep.items():
        for lv in f.get("levels", []):
            best = f.get("best_label") == lv["label"] and f.get("best_level") == lv["level"]
            rows.append({"task": task, "base": base, "line": label,
                         "level": level_text(lv["level"], lv["label"]),
                         "reference": level_text(f["reference_level"], f["reference_label"]),
                         "AUC": fmt(lv["auc"]),
                         "AUC difference": fmt_ci(lv["auc_diff"], lv["auc_diff_low"], lv["auc_diff_high"]),
                         "keeps AUC": "yes" if lv["keeps"] else "no", "tolerance": f"{f['tolerance']:g}",
                         "FPR difference": fmt(lv["fpr"]), "best": "yes" if best else "",
                         "seeds": int(lv["n_pairs"])})
    return pd.DataFrame(rows)

"""Correlation sweep (paper §4.2, Fig. 4): one biased base finetuned at a sweep of correlation levels (collect,
subselect, reweight …) with the test set fixed; the AUC vs FPR-difference tradeoff.

The run is the shared finetuning run of :mod:`biastransfer.experiments.spurious`; :mod:`.analysis` finds, per
sweep line, the level that keeps AUC within a tolerance of the test-equal level with the smallest |FPR
difference|; :mod:`.plot` draws the tradeoff.
"""

from __future__ import annotations

from typing import Any, ClassVar

from biastransfer.experiments.base import EXPERIMENTS, Results
from biastransfer.experiments.correlation_sweep import analysis
from biastransfer.experiments.correlation_sweep.plot import tradeoff_plot
from biastransfer.experiments.spurious import FinetuneExperiment
from biastransfer.report.markup import Page, Section


@EXPERIMENTS.register("correlation_sweep")
class CorrelationSweep(FinetuneExperiment):
    """finetuning correlation level swept, test fixed: AUC vs FPR difference tradeoff."""

    title = "Performance–bias tradeoff across finetuning levels"
    description = "finetuning correlation level swept, test fixed: AUC vs FPR difference tradeoff"
    report_order = 20
    example: ClassVar[dict[str, Any]] = {
        "tasks": ["t3"], "bases": ["gendered"], "interventions": ["collect", "reweight"], "levels": [0.5, 0.8],
        "n_train": 32, "seeds": [0, 1], "test": 0.8
    }

    def reading(self, results: Results) -> list[str]:
        return analysis.reading(analysis.findings(self.aggregate(results.runs)), analysis.AUC_TOLERANCE)

    def sections(self, results: Results, page: Page) -> list[Section]:
        agg = self.aggregate(results.runs)
        groups = list(agg.groupby("experiment", sort=True))
        body: list[str] = []
        for name, agg_exp in groups:
            fig = tradeoff_plot(agg_exp, title=f"AUC vs FPR difference across finetuning levels — {name}")
            body += page.figure(
                fig, f"tradeoff_{name}" if len(groups) > 1 else "tradeoff", f"Tradeoff plot for {name}",
                f"Experiment {name}: x = test AUC, y = FPR difference; the outlined point is the level equal to "
                "the test level.")
        return [Section("tradeoff", self.title, body)]

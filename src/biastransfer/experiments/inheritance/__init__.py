"""Inheritance (paper §4.1, Fig. 2): several bases (biased, controls, scratch) finetuned on each task at its
natural level and at a high level; does the biased base's FPR difference exceed every control's?

The run is the shared finetuning run of :mod:`biastransfer.experiments.spurious`. The analysis
(:mod:`.analysis`) compares the biased base with every control base per task and level; the report shows the
inheritance chart (:mod:`.chart`) and the mixed-effects regression of inherited bias on correlation level and
salience (:mod:`.regression`, with the study's salience runs when it has any).
"""

from __future__ import annotations

import html
from typing import Any, ClassVar

import pandas as pd

from biastransfer.analysis.text import fmt
from biastransfer.experiments.base import EXPERIMENTS, Results
from biastransfer.experiments.inheritance import analysis
from biastransfer.experiments.inheritance.chart import inheritance_chart
from biastransfer.experiments.inheritance.regression import inheritance_regression_with_reason
from biastransfer.experiments.salience import Salience, salience_table
from biastransfer.experiments.spurious import FinetuneExperiment
from biastransfer.report.markup import Page, Section


@EXPERIMENTS.register("inheritance")
class Inheritance(FinetuneExperiment):
    """bases × tasks × {natural, high level}: is the pretrained bias inherited?"""

    title = "Inherited bias: biased vs control bases"
    description = "bases × tasks × {natural, high level}: is the pretrained bias inherited?"
    report_order = 10
    example: ClassVar[dict[str, Any]] = {
        "tasks": ["t3"], "bases": ["gendered", "control-t0", "scratch"], "levels": ["natural", 0.8], "n_train": 32,
        "seeds": [0, 1]
    }

    def _regression(self, results: Results) -> tuple[dict | None, str | None]:
        agg = self.aggregate(results.runs)
        return inheritance_regression_with_reason(agg, salience_table(results.of(Salience.registry_name)))

    def reading(self, results: Results) -> list[str]:
        lines = analysis.reading(analysis.findings(self.aggregate(results.runs)))
        res, reason = self._regression(results)
        if res is None:
            return [*lines, f"Mixed-effects regression of inherited bias not fitted: {reason}."]
        parts = []
        for term, c in res["coefficients"].items():
            if term == "Intercept":
                continue
            sig = "p < .05" if c["p"] < 0.05 else f"p = {c['p']:.2f}, not significant at .05"
            parts.append(f"{term} {fmt(c['coef'], 2)} (95% CI [{fmt(c['low'], 2)}, {fmt(c['high'], 2)}], {sig})")
        return [*lines, f"Mixed-effects regression of inherited bias ({res['n_obs']} observations, "
                        f"{res['n_groups']} attributes, random intercept per attribute): " + "; ".join(parts) + "."]

    def sections(self, results: Results, page: Page) -> list[Section]:
        chart = Section("inheritance", self.title, page.figure(
            inheritance_chart(self.aggregate(results.runs)), "inheritance", "Inheritance chart",
            "|FPR difference| per task and base at each finetuning level; * the biased base's interval lies above "
            "every control interval."))
        return [chart, self._regression_section(results, page)]

    def _regression_section(self, results: Results, page: Page) -> Section:
        res, reason = self._regression(results)
        body = [page.note("inherited bias = |FPR diff(biased)| − max over controls |FPR diff(control)| per "
                          "(attribute, finetuning level); correlation = |2c − 1|; random intercept per attribute "
                          "(statsmodels mixedlm, REML); Wald 95% intervals.")]
        if res is None:
            body.append(page.paragraph(f"Not fitted: {reason}."))
        else:
            body.append(f"<p>{html.escape(res['formula'])}: {res['n_obs']} observations, {res['n_groups']} "
                        f"attributes; attribute variance {res['group_var']:.3g}, residual variance "
                        f"{res['residual_var']:.3g}.</p>")
            body += page.table(pd.DataFrame([
                {"term": t, "coefficient": fmt(c["coef"]), "95% CI": f"[{fmt(c['low'])}, {fmt(c['high'])}]",
                 "std. error": fmt(c["se"]), "p": "< 0.001" if c["p"] < 0.001 else fmt(c["p"])}
                for t, c in res["coefficients"].items()]))
            body += [page.note(n) for n in ([res["note"]] if res["note"] else []) + list(res["warnings"])]
        return Section("regression", "Mixed-effects regression of inherited bias", body)

"""Inheritance (paper §4.1, Fig. 2): several bases (biased, controls, scratch) finetuned on each task at its
natural level and at a high level; does the biased base's FPR difference exceed every control's?

The run is the shared finetuning run of :mod:`biastransfer.experiments.spurious`. The analysis
(:mod:`.analysis`) compares the biased base with every control base per task and level, paired by seed; the
report shows the inheritance chart (:mod:`.chart`) and the mixed-effects regression of inherited bias on
correlation level and salience (:mod:`.regression`, with the study's salience runs when it has any).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pandas as pd

from biastransfer.analysis.text import fmt
from biastransfer.experiments.base import EXPERIMENTS, Results, Verdict, Verdicts
from biastransfer.experiments.inheritance import analysis
from biastransfer.experiments.inheritance.chart import inheritance_chart
from biastransfer.experiments.inheritance.regression import Dependent, inheritance_regression_with_reason
from biastransfer.experiments.salience import Salience, salience_table
from biastransfer.experiments.spurious import FinetuneExperiment
from biastransfer.render.markup import Page, Section


@EXPERIMENTS.register("inheritance")
class Inheritance(FinetuneExperiment, Verdicts):
    """bases × tasks × {natural, high level}: is the pretrained bias inherited?"""

    title = "Inherited bias: biased vs control bases"
    description = "bases × tasks × {natural, high level}: is the pretrained bias inherited?"
    report_order = 10
    example: ClassVar[dict[str, Any]] = {
        "tasks": ["t3"], "bases": ["gendered", "control-t0", "scratch"], "levels": ["natural", 0.8], "n_train": 32,
        "seeds": [0, 1]
    }

    def _regression(self, results: Results, dependent: Dependent = "ratio") -> tuple[dict | None, str | None]:
        agg = self.aggregate(results.runs)
        return inheritance_regression_with_reason(agg, salience_table(results.of(Salience.registry_name)),
                                                  dependent=dependent)

    def reading(self, results: Results) -> list[str]:
        lines = analysis.reading(analysis.findings(results.runs))
        return [*lines, _regression_line(*self._regression(results))]

    def verdict(self, results: Results) -> list[Verdict]:
        return [Verdict(text, "inheritance") for text in analysis.verdict(analysis.findings(results.runs))]

    def sections(self, results: Results, page: Page) -> list[Section]:
        chart = Section("inheritance", self.title, page.figure(
            inheritance_chart(results.runs), "inheritance", "Inheritance chart",
            "FPR difference per task and base at each finetuning level, signed towards the finetuning set's "
            "correlation where the runs record its direction (|FPR difference| otherwise); 95% intervals over "
            "seeds, drawn clipped to the metric's range. * inheritance holds: every base is finetuned on the same "
            "set at a seed, and the paired difference biased − control over seeds has its 95% interval above 0 "
            "for every control."))
        return [chart, self._regression_section(results, page)]

    def _regression_section(self, results: Results, page: Page) -> Section:
        body = [page.note(REGRESSION_NOTE)]
        dependents: tuple[Dependent, ...] = ("ratio", "difference")
        for dependent in dependents:
            res, reason = self._regression(results, dependent)
            body.append(page.heading(DEPENDENT_TITLE[dependent]))
            if res is None:
                body.append(page.paragraph(f"Not fitted: {reason}."))
                continue
            body.append(page.paragraph(
                f"{res['formula']}: {res['n_obs']} observations, {res['n_groups']} attributes; attribute "
                f"variance {res['group_var']:.3g}, residual variance {res['residual_var']:.3g}; "
                f"{'converged' if res['converged'] else 'did NOT converge'}."))
            body += page.table(pd.DataFrame([
                {"term": t, "coefficient": fmt(c["coef"]), "95% CI (t)": f"[{fmt(c['low'])}, {fmt(c['high'])}]",
                 "df": c["df"], "std. error": fmt(c["se"]),
                 "p": "< 0.001" if c["p"] < 0.001 else fmt(c["p"])}
                for t, c in res["coefficients"].items()]))
            body += [page.note(f"Fit warning — {w}") for w in res["warnings"]]
            body += [page.note(n) for n in res["notes"]]
        return Section("regression", "Mixed-effects regression of inherited bias", body)


#: How the regression section explains itself (docs/protocols.md §3; formulas in :mod:`.regression`).
REGRESSION_NOTE = (
    "One observation per (attribute, finetuning level). s = d · mean FPR difference (a=1 − a=0), d = +1 when the "
    "set's correlation is towards a=1 (c > P(a=1)), −1 towards a=0; b = s of the biased base, k = the largest s "
    "among the controls. The paper's dependent variable is the ratio b / k (0 when b < 0 < k, 5 when k < 0 < b); "
    "the difference b − k is shown as a check. Covariates at the nominal levels: correlation = |c − P(a=1)| "
    "(P(a=1) = 0.5 in balanced sets), salience per attribute. Random intercept per attribute (statsmodels "
    "mixedlm, REML); Student-t 95% intervals and p-values with between-within degrees of freedom.")
DEPENDENT_TITLE = {"ratio": "Dependent variable: ratio b / k (the paper's)",
                   "difference": "Dependent variable: difference b − k"}


def _regression_line(res: dict[str, Any] | None, reason: str | None) -> str:
    """The reading's bullet on the regression of the ratio: coefficients with t intervals, or why not fitted."""
    if res is None:
        return f"Mixed-effects regression of inherited bias not fitted: {reason}."
    parts = []
    for term, c in res["coefficients"].items():
        if term == "Intercept":
            continue
        sig = ("no p-value: the standard error is undefined" if math.isnan(c["p"]) else
               "p < .05" if c["p"] < 0.05 else f"p = {c['p']:.2f}, not significant at .05")
        parts.append(f"{term} {fmt(c['coef'], 2)} (95% CI [{fmt(c['low'], 2)}, {fmt(c['high'], 2)}], "
                     f"t with {c['df']} df, {sig})")
    line = (f"Mixed-effects regression of the inherited-bias ratio ({res['n_obs']} observations, "
            f"{res['n_groups']} attributes, random intercept per attribute): " + "; ".join(parts) + ".")
    trouble = ([] if res["converged"] else ["the fit did not converge"]) + list(res["warnings"])
    if trouble:
        line += " Unreliable: " + "; ".join(trouble) + "."
    return line

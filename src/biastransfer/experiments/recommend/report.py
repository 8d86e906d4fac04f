"""The recommendation read from the stored runs: the answer (one paragraph), the tradeoff of what was tried with
the chosen point, its paired intervals, and the runs spent against a full sweep's count."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from biastransfer.analysis.text import fmt, fmt_ci
from biastransfer.experiments.recommend.search import (
    SCREENS,
    Candidate,
    Choice,
    Score,
    Values,
    accepted,
    choose,
    progress,
)
from biastransfer.interventions.base import reference_intervention
from biastransfer.render.plots import METRIC_NAMES

if TYPE_CHECKING:
    from biastransfer.experiments.base import Experiment, Results
    from biastransfer.render.markup import Page
    from biastransfer.spec import RunSpec


def values_of(runs: dict[tuple[Candidate, int], RunSpec], results: dict[str, dict[str, Any]], gap: str) -> Values:
    """(candidate, seed) → (AUC, gap) of the finished runs (``results``: run key → result)."""
    return {cs: (float(results[spec.key]["auc"]), float(results[spec.key].get(gap, math.nan)))
            for cs, spec in runs.items()}


def level_of(label: str) -> float | str:
    """A stored level label as a level: ``'natural'`` or a float."""
    return "natural" if label == "natural" else float(label)


def reference_at(test_label: str) -> Callable[[Candidate], Candidate]:
    """The reference of a candidate: ``collect`` at the test level (``test_label`` as stored) on its base."""
    level = level_of(test_label)

    def reference(c: Candidate) -> Candidate:
        return Candidate(c.base, reference_intervention(), (), level)
    return reference


def row_candidate(row: pd.Series) -> Candidate:
    raw = row.get("intervention_options")
    opts = raw if isinstance(raw, str) else ""  # absent or NaN (a sweep's rows pooled with a recommendation's)
    return Candidate(str(row["base"]), str(row["intervention"]),
                     tuple(sorted(json.loads(opts).items())) if opts else (), level_of(str(row["level_label"])))


@dataclass(frozen=True)
class Answer:
    """One block's recommendation: the choice, the text, and what the search spent."""

    experiment: str
    task: str
    gap: str
    tolerance: float
    choice: Choice
    recommended: Candidate        # the chosen setting, or the test-equal set when none beats it
    run_keys: dict[int, str]      # seed → run key of the recommended setting
    runs: int                     # runs of the block in the folder
    reused: int                   # of which adopted from runs stored by other blocks
    full: int                     # runs of a full sweep
    budget: float                 # options.budget (NaN: none)
    strategy: str                 # options.strategy ('' when the block is not in the stored study)
    finished: bool                # the search wants no more runs (False: its budget ran out first)
    accepted: frozenset[Candidate] | None  # what screen-and-confirm accepted (None: any that keeps AUC counts)
    n_train: int
    test: str
    headline: str
    text: str


def answers(runs: pd.DataFrame) -> dict[str, Answer]:
    """Each recommend block's answer (by block name) from its tidy rows."""
    out: dict[str, Answer] = {}
    if runs.empty:
        return out
    for name, rows in runs.groupby("experiment", sort=True):
        out[str(name)] = _answer(str(name), rows.reset_index(drop=True))
    return out


def _answer(name: str, rows: pd.DataFrame) -> Answer:
    first = rows.iloc[0]
    gap, tol = str(first["gap"]), float(first["auc_tolerance"])
    test = str(first["test_label"])
    cands = [row_candidate(r) for _, r in rows.iterrows()]
    seeds = sorted({int(s) for s in rows["seed"]})

    reference = reference_at(test)
    values: dict[tuple[Candidate, int], tuple[float, float]] = {}
    keys: dict[tuple[Candidate, int], str] = {}
    for c, (_, r) in zip(cands, rows.iterrows(), strict=True):
        values[c, int(r["seed"])] = (float(r["auc"]), float(r[gap]))
        keys[c, int(r["seed"])] = str(r["run_key"])
    tried = [c for c in dict.fromkeys(cands) if c != reference(c)]
    strategy = str(first["strategy"]) if "strategy" in rows.columns and pd.notna(first["strategy"]) else ""
    full_max = pd.to_numeric(rows["full_sweep_runs"], errors="coerce").max()
    full = 0 if pd.isna(full_max) else int(full_max)  # 0: the block is not in the stored study
    eligible, finished = _search_state(first, strategy, tried, reference, values, tol, full)
    choice = choose(tried, reference, seeds, values, tol, eligible)
    chosen = choice.best.candidate if choice.status == "chosen" and choice.best else choice.reference
    reused = int(rows["reused"].astype(bool).sum()) if "reused" in rows.columns else 0
    budget = float(pd.to_numeric(rows["budget"], errors="coerce").iloc[0])
    answer = Answer(name, str(first["task"]), gap, tol, choice, chosen,
                    {s: keys[chosen, s] for s in seeds if (chosen, s) in keys}, len(rows), reused, full, budget,
                    strategy, finished, None if eligible is None else frozenset(eligible),
                    int(first["n_requested"]), test, "", "")
    headline, text = _texts(answer, len(tried))
    if not finished:
        headline = f"{headline[:-1]} (provisional: the search is not finished; run it again to go on)."
    return Answer(**{**answer.__dict__, "headline": headline, "text": text})


def _search_state(first: pd.Series, strategy: str, tried: list[Candidate], reference, values: Values,
                  tolerance: float, full: int) -> tuple[set[Candidate] | None, bool]:
    """Replay the block's search on its stored runs: the candidates it accepted (screen-and-confirm; None: any
    that keeps AUC, as halving answers) and whether it is finished (it wants no more runs). Runs stored before
    these columns existed read as finished, with every candidate eligible."""
    raw = first.get("block_seeds")
    if not isinstance(raw, str) or not raw:
        return None, True
    block_seeds = [int(s) for s in json.loads(raw)]
    refs = {reference(c) for c in tried}
    missing = full > 0 and (len(tried) + len(refs)) * len(block_seeds) < full  # some setting never ran
    if strategy not in (*SCREENS, "halving"):
        return None, True
    s0, m0 = int(first["screen_seeds"]), int(first["min_seeds"])
    wanted = progress(strategy, tried, reference, block_seeds, s0, m0, values, tolerance).wanted
    return accepted(strategy, tried, reference, block_seeds, s0, values, tolerance), not (wanted or missing)


def _texts(a: Answer, k: int) -> tuple[str, str]:
    c, gap = a.choice, METRIC_NAMES.get(a.gap, a.gap)
    ref = c.reference.setting
    how = {"screen": "screen-and-confirm", "screen_full": "screen-and-confirm on all seeds",
           "halving": "successive halving"}.get(a.strategy, "an adaptive search")
    spent = (f"Searched {k} setting{'s' if k != 1 else ''} by {how}: {a.runs} runs ({a.reused} "
             f"reused from runs already in the folder) of the {a.full or '?'} a full sweep needs"
             + ("" if math.isnan(a.budget) else f"; budget {int(a.budget)} new runs per study run") + ".")
    if not a.finished:
        spent += (" The search is not finished: the budget ran out before it accepted a setting or ruled every one "
                  "out, so this answer is provisional. Run the same command again to go on (the runs already in "
                  "the folder are reused, not trained).")
    head = f"{a.task} ({a.experiment}, N={a.n_train}, test {a.test})"
    if c.status == "chosen" and c.best is not None:
        b = c.best
        headline = (f"Recommended for {head}: {b.candidate.label}, |{gap}| {fmt(abs(c.ref_gap))} → "
                    f"{fmt(b.abs_gap)} with AUC kept within {a.tolerance:g} (paired, {b.n} seeds).")
        text = (f"Recommended for {head}: finetune on {b.candidate.label}. It keeps AUC within ε = {a.tolerance:g} "
                f"of collecting at the test-equal level ({ref}; AUC {fmt(c.ref_auc)}): paired AUC difference "
                f"{fmt_ci(*b.auc_diff)} over {b.n} seeds. It cuts |{gap}| from {fmt(abs(c.ref_gap))} to "
                f"{fmt(b.abs_gap)}; paired difference of |{gap}| {fmt_ci(*c.gap_paired)} (Bonferroni for {k} "
                f"settings: {'established' if c.gap_paired[2] < 0 else 'not established'}). "
                f"{_undecided_text(a, b.abs_gap)}{spent}")
        return headline, text
    if c.status == "reference" and c.best is not None:
        b = c.best
        text = (f"For {head}, no setting tried beats collecting at the test-equal level ({ref}, base "
                f"{c.reference.base}; |{gap}| {fmt(abs(c.ref_gap))}): the best that keeps AUC within "
                f"ε = {a.tolerance:g}, {b.candidate.label}, has |{gap}| {fmt(b.abs_gap)}. Finetune on the "
                f"test-equal set. {_undecided_text(a, abs(c.ref_gap))}{spent}")
        return f"No setting tried beats the test-equal set for {head}.", text
    closest = "; ".join(f"{s.candidate.label}: paired AUC difference {fmt_ci(*s.auc_diff)}, |{gap}| "
                        f"{fmt(s.abs_gap)}, {s.n} seeds" for s in c.closest) or "none was run on 2 seeds"
    text = (f"For {head}, no setting tried keeps AUC within ε = {a.tolerance:g} of collecting at the test-equal "
            f"level ({ref}, base {c.reference.base}; AUC {fmt(c.ref_auc)}, |{gap}| {fmt(abs(c.ref_gap))}), so "
            f"the test-equal set stays the answer. The closest settings: {closest}. A larger tolerance, budget or "
            f"more seeds may change this. {spent}")
    return f"No setting keeps AUC within {a.tolerance:g} for {head}; the test-equal set stays the answer.", text


def undecided(a: Answer, below: float) -> list[Score]:
    """Settings with a |gap| below ``below`` that the paired rule leaves undecided although their mean AUC
    difference lies within ε (≥ −ε): more seeds may show that they keep AUC. At most 3, smallest |gap| first."""
    out = [s for s in a.choice.scores
           if s.n >= 2 and not s.keeps and not s.inferior and not math.isnan(s.gap) and s.abs_gap < below
           and not math.isnan(s.auc_diff[0]) and s.auc_diff[0] >= -a.tolerance]
    return sorted(out, key=lambda s: (s.abs_gap, s.candidate))[:3]


def _undecided_text(a: Answer, below: float) -> str:
    near = undecided(a, below)
    if not near:
        return ""
    gap = METRIC_NAMES.get(a.gap, a.gap)
    names = "; ".join(f"{s.candidate.label} (|{gap}| {fmt(s.abs_gap)}; paired AUC difference "
                      f"{fmt_ci(*s.auc_diff)} on {s.n} seeds)" for s in near)
    its, keeps = ("Its", "it keeps") if len(near) == 1 else ("Their", "they keep")
    return (f"Undecided with a smaller |{gap}|: {names}. {its} mean AUC difference lies within ε, so more seeds "
            f"per setting (a larger --seeds) may show that {keeps} AUC. ")


def _keeps_text(s: Score, accepted: frozenset[Candidate] | None) -> str:
    if s.keeps:
        return "yes" if accepted is None or s.candidate in accepted else "yes, not confirmed"
    return "inferior" if s.inferior else "no" if s.n >= 2 else "untested (1 seed)"


def tried_table(a: Answer) -> pd.DataFrame:
    """One row per setting tried: seeds, mean AUC, the paired AUC difference, keeps AUC (``untested`` on one
    seed: no paired interval, as after the screen; ``yes, not confirmed`` when the rule passes on seeds the
    search did not judge it on: a screen of 2 or more seeds, or a stage the budget cut short; so it is not the
    answer), |gap|, chosen."""
    rows = []
    for s in sorted(a.choice.scores, key=lambda s: (-s.n, s.abs_gap if not math.isnan(s.gap) else 9.0)):
        rows.append({"setting": s.candidate.label, "seeds": s.n, "AUC": fmt(s.auc),
                     "AUC difference": fmt_ci(*s.auc_diff),
                     "keeps AUC": _keeps_text(s, a.accepted),
                     f"|{METRIC_NAMES.get(a.gap, a.gap)}|": fmt(s.abs_gap),
                     "chosen": "yes" if s.candidate == a.recommended else ""})
    return pd.DataFrame(rows)


def budget_table(a: Answer) -> pd.DataFrame:
    return pd.DataFrame([{"runs in the recommendation": a.runs, "new runs": a.runs - a.reused, "reused": a.reused,
                          "full sweep": a.full, "budget": "none" if math.isnan(a.budget) else int(a.budget),
                          "saved": f"{(1 - a.runs / a.full) * 100:.0f}%" if a.full else "—"}])


def section(plugin: Experiment, results: Results, page: Page) -> list[str]:
    """The answer, the tradeoff of what was tried (the chosen point starred), the settings table, the budget."""
    from biastransfer.experiments.correlation_sweep.plot import tradeoff_plot

    body: list[str] = []
    found = answers(results.runs)
    for name, a in found.items():
        if len(found) > 1:
            body.append(page.heading(name))
        body.append(page.paragraph(a.text))
        agg = plugin.aggregate(results.runs[results.runs["experiment"] == name])
        fig = tradeoff_plot(agg, metric=a.gap, title=f"What the search tried — {name}")
        chosen = agg[[row_candidate(r) == a.recommended for _, r in agg.iterrows()]]
        if len(fig.axes) and not chosen.empty:
            ax = fig.axes[0]
            ax.plot(chosen["auc_mean"], chosen[f"{a.gap}_mean"], "*", ms=20, color="gold", markeredgecolor="black",
                    zorder=6, label="recommended")
        body += page.figure(fig, f"recommend_{name}" if len(found) > 1 else "recommend",
                            f"Tradeoff of the settings tried for {name}",
                            f"x = test AUC, y = {a.gap}; one line per intervention, the star is the recommended "
                            "setting, the outlined point the test-equal level. Bars: 95% CI over the seeds each "
                            "setting got (settings dropped early have fewer).")
        body.append(page.heading("Each setting tried against the test-equal set, paired by seed"))
        body.append(page.note(f"AUC difference: setting − collect at the test level on the same base, Student-t "
                              f"95% CI; keeps AUC when the lower bound lies above −{a.tolerance:g}; inferior when "
                              "the upper bound lies below it."))
        body += page.table(tried_table(a))
        body.append(page.heading("Runs spent"))
        body += page.table(budget_table(a))
    return body

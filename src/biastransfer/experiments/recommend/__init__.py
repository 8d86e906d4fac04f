"""Recommend a finetuning set (issue 14, item 1; docs/recommend.md): for one task, one or more bases, a
finetuning size N and a test level, the intervention setting (collect / subselect / reweight at a level, with
its options) that minimises a group gap while keeping AUC non-inferior to the test-equal set within ε.

The runs **are** the correlation sweep's finetuning runs (:func:`biastransfer.experiments.spurious.run`, the
same specs but for the block's name and kind): their :meth:`result_key` equals a sweep run's on the same
settings, so the driver adopts runs already in the folder instead of training them again. The block is
**adaptive** (:meth:`Recommend.next_runs`): screen-and-confirm (the default) or successive halving over the
candidates × seeds (:mod:`.search`), at most ``options.budget`` new runs per study run. The options are read by
the search and the analysis only: none reaches a run's spec, so none is in a run key.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from biastransfer.experiments.base import EXPERIMENTS, Adaptive, Column, Results, Verdict, Verdicts
from biastransfer.experiments.grid import InterventionRef, Level, Seeds, _check_level
from biastransfer.experiments.recommend import report, search
from biastransfer.experiments.spurious import COLUMNS, FinetuneExperiment
from biastransfer.interventions.base import INTERVENTIONS, plot_order, reference_intervention
from biastransfer.render.markup import Page, Section
from biastransfer.spec import RunSpec, StudyDefaults

DEFAULT_LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


class RecommendOptions(BaseModel):
    """What the search minimises and how far it may go (none of it reaches a run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gap: Literal["fpr_diff", "tpr_diff", "eo_diff"] = Field(
        "fpr_diff", description="the gap whose |mean over seeds| is minimised")
    auc_tolerance: float = Field(0.01, ge=0.0, lt=1.0, allow_inf_nan=False,
                                 description="ε: a setting keeps AUC when the paired 95% lower bound of "
                                             "AUC(setting) − AUC(test-equal set) lies above −ε")
    budget: int | None = Field(None, ge=1, description="most new runs per study run (None: no limit)")
    strategy: Literal["screen", "screen_full", "halving"] = Field(
        "screen", description="screen: every setting on screen_seeds, then confirm the best on all seeds, one at a "
        "time, accepting or dropping at the end of any stage; screen_full: the same, but accept only on all seeds "
        "and drop early only when inferior; halving: successive halving from min_seeds (docs/recommend.md)")
    screen_seeds: int = Field(1, ge=1, description="seeds of the screen (strategy screen or screen_full)")
    min_seeds: int = Field(3, ge=2, description="seeds of the first round of successive halving (strategy halving)")


class RecommendBlock(Seeds):
    """One task, bases, candidate interventions × levels, one N, the test level, seeds (the most a setting gets)."""

    task: str = Field(description="the target attribute")
    bases: list[str] = Field(default_factory=list, description="bases named in the study (default: scratch)")
    interventions: list[InterventionRef] = Field(
        default_factory=lambda: [InterventionRef(name=n) for n in ("collect", "subselect", "reweight")],
        description="samplers of the finetuning set searched")
    levels: list[float] = Field(default_factory=lambda: list(DEFAULT_LEVELS), description="levels searched")
    n_train: int = Field(512, ge=4, description="the finetuning set size N")
    n_val: int | None = Field(None, ge=4, description="validation set size (default: N)")
    test: Level = Field("natural", description="test level, or 'natural' (the whole test pool)")
    seeds: list[int] = Field(default_factory=lambda: list(range(8)), description="the seeds a setting may get")
    options: RecommendOptions = RecommendOptions()

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one level")
        return [float(_check_level(lv, "a level")) for lv in v]

    @field_validator("interventions")
    @classmethod
    def _interventions(cls, v: list[InterventionRef]) -> list[InterventionRef]:
        if not v:
            raise ValueError("needs at least one intervention")
        fixed = [ref.name for ref in v if not INTERVENTIONS.get(ref.name).takes_level]
        if fixed:
            levelled = ", ".join(n for n in sorted(INTERVENTIONS.names(), key=plot_order)
                                 if INTERVENTIONS.get(n).balances)
            raise ValueError(f"{fixed[0]!r} has no level to search; give one of {levelled}")
        return v

    def base_names(self) -> list[str]:
        return list(self.bases) or ["scratch"]

    def reference(self, candidate: search.Candidate) -> search.Candidate:
        """The reference intervention (``collect``) at the test-equal level on the candidate's base."""
        return search.Candidate(candidate.base, reference_intervention(), (), self.test)

    def candidates(self) -> list[search.Candidate]:
        """bases × interventions × levels, without the reference itself."""
        out = []
        for base, iv, level in itertools.product(self.base_names(), self.interventions, self.levels):
            c = search.Candidate(base, iv.name, tuple(sorted(iv.options().items())), level)
            if c != self.reference(c) and c not in out:
                out.append(c)
        return out

    def full_sweep_runs(self) -> int:
        """Runs of a full sweep: every candidate and every base's reference on every seed."""
        return (len(self.candidates()) + len(self.base_names())) * len(self.seeds)


def block_of(run: dict[str, Any]) -> RecommendBlock | None:
    """The validated block a stored run belongs to (from the study stored with it), or None."""
    raw = run.get("block") or {}
    try:
        return RecommendBlock.model_validate({k: v for k, v in raw.items() if k not in ("name", "kind", "dataset")})
    except ValueError:
        return None


def _from_block(get: Any, default: Any) -> Any:
    def read(run: dict[str, Any]) -> Any:
        block = block_of(run)
        return default if block is None else get(block)
    return read


@EXPERIMENTS.register("recommend")
class Recommend(FinetuneExperiment, Adaptive, Verdicts):
    """the finetuning set that minimises a gap with AUC kept, found by screen-and-confirm (or successive halving)
    within a budget."""

    title = "Recommended finetuning set"
    description = ("searches interventions × levels by screen-and-confirm or successive halving (budgeted) for the "
                   "finetuning set that "
                   "minimises a gap while AUC stays within ε of the test-equal set")
    report_order = 25
    Block = RecommendBlock
    columns = (*COLUMNS,
               Column("n_requested", "int", "setting", "N asked for (a subselect set is smaller)",
                      get=lambda run: run["spec"]["n_train"]),
               Column("intervention_options", "str", "setting", "the intervention's options (JSON; '' for none)",
                      get=lambda run: json.dumps(run["spec"].get("intervention_options") or {}, sort_keys=True)
                      if run["spec"].get("intervention_options") else ""),
               Column("gap", "str", "outcome", "the gap the block minimises (options.gap)",
                      get=_from_block(lambda b: b.options.gap, "fpr_diff")),
               Column("auc_tolerance", "float", "outcome", "ε (options.auc_tolerance)",
                      get=_from_block(lambda b: b.options.auc_tolerance, 0.01)),
               Column("strategy", "str", "outcome", "the search (options.strategy)",
                      get=_from_block(lambda b: b.options.strategy, "")),
               Column("block_seeds", "str", "outcome", "the seeds the block may give a setting (JSON list)",
                      get=_from_block(lambda b: json.dumps(list(b.seeds)), "")),
               Column("screen_seeds", "int", "outcome", "options.screen_seeds",
                      get=_from_block(lambda b: b.options.screen_seeds, float("nan"))),
               Column("min_seeds", "int", "outcome", "options.min_seeds",
                      get=_from_block(lambda b: b.options.min_seeds, float("nan"))),
               Column("budget", "float", "outcome", "options.budget (NaN: no limit)",
                      get=_from_block(lambda b: b.options.budget if b.options.budget else float("nan"),
                                      float("nan"))),
               Column("full_sweep_runs", "int", "outcome", "runs a full sweep of the block's settings would need",
                      get=_from_block(lambda b: b.full_sweep_runs(), float("nan"))),
               Column("reused", "bool", "outcome", "the result was adopted from an equal run already stored",
                      get=lambda run: bool(run["result"].get("reused_from"))))
    example: ClassVar[dict[str, Any]] = {
        "task": "t3", "bases": ["gendered"], "interventions": ["reweight"], "levels": [0.5, 0.8],
        "n_train": 32, "seeds": [0, 1, 2], "test": 0.8, "options": {"min_seeds": 2, "budget": 8},
    }

    @classmethod
    def tiny_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        """The default shrink, keeping the test level among the levels and 2 seeds in the first round."""
        out = super().tiny_block(block)
        options = dict(out.get("options") or {})
        options["min_seeds"] = 2
        out["options"] = options
        return out

    def expand(self, name: str, block: RecommendBlock, study: StudyDefaults) -> list[RunSpec]:
        """Every candidate and each base's reference on every seed (the most the search may run)."""
        cands = block.candidates()
        refs = list(dict.fromkeys(block.reference(c) for c in cands))
        return [study.spec(experiment=name, kind=self.registry_name, base=c.base, task=block.task, seed=seed,
                           intervention=c.intervention, intervention_options=dict(c.options), level=c.level,
                           n_train=block.n_train, n_val=block.n_val, test=block.test)
                for c, seed in itertools.product([*refs, *cands], block.seeds)]

    def next_runs(self, block: RecommendBlock, specs: list[RunSpec], done: dict[str, dict[str, Any]],
                  ) -> list[RunSpec]:
        by_run = {(search.candidate_of(s.to_dict()), s.seed): s for s in specs}
        values = report.values_of({k: v for k, v in by_run.items() if v.key in done},
                                  {s.key: done[s.key] for s in specs if s.key in done}, block.options.gap)
        o = block.options
        progress = search.progress(o.strategy, block.candidates(), block.reference, block.seeds, o.screen_seeds,
                                   o.min_seeds, values, o.auc_tolerance)
        return [by_run[c, seed] for c, seed in progress.wanted if (c, seed) in by_run]

    def run_budget(self, block: RecommendBlock) -> int | None:
        return block.options.budget

    def answers(self, results: Results) -> dict[str, report.Answer]:
        """Each block's recommendation from its stored runs."""
        return report.answers(results.runs)

    def reading(self, results: Results) -> list[str]:
        return [a.text for a in self.answers(results).values()]

    def verdict(self, results: Results) -> list[Verdict]:
        return [Verdict(a.headline, "recommendation") for a in self.answers(results).values()]

    def sections(self, results: Results, page: Page) -> list[Section]:
        return [Section("recommendation", self.title, report.section(self, results, page))]

"""Bias as underrepresentation (paper §5, docs/protocols.md §5).

The task is ``T1 ∨ T2``: two subcategories (appearances) of one object. It is written ``"T1+T2"`` in the study's
``tasks`` (both are binary columns of the dataset, e.g. ``pullover+coat`` on Fashion-MNIST). Negatives are the
examples of the classes listed in ``options.negatives`` (default: every example with neither T1 nor T2).
Examples that are both T1 and T2 are excluded from every set.

One run finetunes one base on a set of ``N`` examples whose ``⌊N/2⌋`` positives are a share ``p`` (the block's
``levels``) of T2 and the rest T1 (the ``subgroup_share`` intervention on a pool with columns ``y`` = T1 ∨ T2 and
``subgroup`` = T2); the validation set is drawn the same way from the ``val`` pool; the test set is held fixed
(``test: natural``: every T1-only, T2-only and negative example of the ``test`` pool; a number q: a set of
``evaluation.test_size`` examples at share q, drawn once for all seeds and settings). Results per run:

- ``auc``: AUC of ``T1 ∨ T2`` on the whole test set;
- ``auc_t2``: AUC of the T2 positives against **all** test negatives (T1 positives left out);
- ``auc_t1``: the same for T1;
- ``tpr_t1``, ``tpr_t2``, ``fpr``: rates at the study's threshold policy (by default calibrated on validation
  reweighted to the test set's (T2, y) cells: T1 positives, T2 positives, negatives; docs/metrics.md).

The bias of the paper is ``AUC_T2(Pretrain-T2) − AUC_T2(Pretrain-T1)``, computed per (share, N) by
:mod:`.analysis`, pairing the two bases by seed. A base is *Pretrain-T1* when it is of
kind ``trained`` with ``attribute`` = T1 (*Pretrain-T2* likewise): the role follows from data, not names.

Hyperparameters: the study's ``train.lr`` × ``train.weight_decay`` grid is searched once per
(base, task, N, negatives, training settings) on a set at share ``options.hp_share`` (default 0.5) by the
lowest mean validation loss over ``train.hp_seeds`` seeds, stored in the results database and reused for
every share and seed (docs/protocols.md §6). A 1 × 1 grid is used as is, without trials.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from biastransfer.analysis.text import fmt, fmt_ci
from biastransfer.data.table import DataError, LoadedDataset
from biastransfer.experiments.base import (
    EXPERIMENTS,
    Column,
    ExampleData,
    Experiment,
    HyperparameterSearch,
    Results,
    RunInputs,
    RunOutput,
)
from biastransfer.experiments.finetuning import finetune, grid_search, hparam_seed, score
from biastransfer.experiments.grid import FixedSizes, Levels, Seeds, TasksAndBases
from biastransfer.experiments.spurious import FIT_COLUMNS, SET_COLUMNS
from biastransfer.experiments.underrepresentation import analysis
from biastransfer.experiments.underrepresentation.plot import underrep_plot
from biastransfer.experiments.underrepresentation.sets import (
    SAMPLER,
    _counts,
    base_role,
    labels_of,
    negative_classes,
    parse_task,
    prepare_share_data,
    subgroup_aucs,
)
from biastransfer.metrics.threshold import cell_proportions, parse_threshold_policy, resolve_threshold
from biastransfer.models.bases import trained_attribute
from biastransfer.render.markup import Page, Section
from biastransfer.spec import RunSpec, StudyDefaults


class UnderrepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    negatives: list[str] | str | None = Field(None, description="attribute columns of the negatives, or 'rest' "
                                                                "(default: every example with neither T1 nor T2)")
    hp_share: float = Field(0.5, ge=0.0, le=1.0, description="share of T2 of the hyperparameter search's sets")

    @field_validator("negatives")
    @classmethod
    def _negatives(cls, v: Any) -> Any:
        negative_classes({"negatives": v})
        return v


class UnderrepBlock(TasksAndBases, Levels, FixedSizes, Seeds):
    """bases × tasks (T1+T2) × shares p of T2 (``levels``) × N × seeds."""

    options: UnderrepOptions = UnderrepOptions()

    @field_validator("tasks")
    @classmethod
    def _pairs(cls, v: list[str]) -> list[str]:
        for task in v:
            parse_task(task)
        return v



@EXPERIMENTS.register("underrepresentation")
class Underrepresentation(Experiment, HyperparameterSearch, ExampleData):
    """Paper §5: bases pretrained on one subcategory (Pretrain-T1, Pretrain-T2) finetuned on T1 ∨ T2 with a
    share p of T2 among the positives; the AUC on T2 of each, and their difference."""

    title = "Underrepresentation: AUC on the subcategory T2"
    description = "task T1+T2, share p of T2 among positives swept: AUC on T2 per base (Pretrain-T1 vs -T2)"
    report_order = 30
    Block = UnderrepBlock
    pool_columns = ("y", "subgroup")
    columns = (
        *SET_COLUMNS,
        Column("auc", "float", "metric", "AUC of T1 ∨ T2 on the whole test set"),
        Column("auc_t1", "float", "metric", "AUC of the T1 positives against all test negatives"),
        Column("auc_t2", "float", "metric", "AUC of the T2 positives against all test negatives"),
        Column("share", "float", "outcome", "realised share of T2 among the finetuning positives"),
        Column("tpr_t1", "float", "outcome", "TPR on T1 at the threshold"),
        Column("tpr_t2", "float", "outcome", "TPR on T2 at the threshold"),
        Column("fpr", "float", "outcome", "FPR at the threshold"),
        Column("threshold", "float", "outcome", "the decision threshold (logit)"),
        *FIT_COLUMNS,
    )
    example: ClassVar[dict[str, Any]] = {
        "tasks": ["t3+t5"], "bases": ["pretrain-t3", "pretrain-t5"], "levels": [0.25, 0.5], "n_train": 32,
        "seeds": [0, 1]
    }
    example_bases: ClassVar[dict[str, dict[str, Any]]] = {
        "pretrain-t3": {"kind": "trained", "attribute": "t3"}, "pretrain-t5": {"kind": "trained", "attribute": "t5"}
    }

    def expand(self, name: str, block: UnderrepBlock, study: StudyDefaults) -> list[RunSpec]:
        """bases × pairs × shares × N × seeds, where a pair runs only the bases that concern it: a base trained by
        us on an attribute of *another* pair of the block (that pair's Pretrain-T1 or -T2) is skipped, so one
        block can hold many pairs, each with its own two Pretrain bases (each trained once and cached)."""
        options = block.options.model_dump(mode="json", exclude_unset=True)
        pairs = {task: parse_task(task) for task in block.tasks}
        pretrain_of_some_pair = {t for pair in pairs.values() for t in pair}

        def concerns(base: str, task: str) -> bool:
            attribute = trained_attribute(study.base(base))
            return not (attribute in pretrain_of_some_pair and attribute not in pairs[task])

        return [study.spec(experiment=name, kind=self.registry_name, base=base, task=task, seed=seed,
                           intervention=SAMPLER, level=share, n_train=n, n_val=block.n_val, test=block.test,
                           options=options)
                for base, task, share, n, seed in itertools.product(
                    block.base_names(), block.tasks, block.levels, block.n_train, block.seeds)
                if concerns(base, task)]

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        """Columns T1, T2, the negatives and a trained base's attribute exist; every set can be drawn."""
        t1, t2 = parse_task(spec.task)
        negatives = negative_classes(spec.options)
        for name in (t1, t2, *(negatives or [])):
            dataset.table.column(name)
        if negatives is not None and {t1, t2} & set(negatives):
            raise DataError(f"task {spec.task!r}: options.negatives {negatives} include T1 or T2")
        attribute = trained_attribute(spec.base)
        if attribute is not None:
            dataset.table.column(attribute)
        prepare_share_data(spec, dataset, share=spec.level, seed=spec.seed)
        if len(spec.train["lr"]) * len(spec.train["weight_decay"]) > 1:
            prepare_share_data(spec, dataset, share=float(spec.options.get("hp_share", 0.5)), seed=hparam_seed())

    def hparam_payload(self, spec: RunSpec) -> dict[str, Any]:
        """Not the share, not the seed: (base, task, N, negatives, hp_share, training settings)."""
        return {**spec.hparam_key(), "experiment_kind": self.registry_name,
                "negatives": negative_classes(spec.options), "hp_share": float(spec.options.get("hp_share", 0.5))}

    def search(self, spec: RunSpec, inputs: RunInputs) -> dict[str, Any]:
        """lr × weight decay by the lowest mean validation loss at share ``hp_share`` (a 1 × 1 grid: no trials)."""
        dataset = inputs.dataset
        t1, t2 = parse_task(spec.task)
        hp_share = float(spec.options.get("hp_share", 0.5))
        return grid_search(spec, inputs, lambda seed: prepare_share_data(spec, dataset, share=hp_share, seed=seed),
                           labels=labels_of(dataset, t1, t2))

    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        t0 = time.perf_counter()
        dataset, hp = inputs.dataset, inputs.hparams
        assert hp is not None, "an underrepresentation run needs its chosen hyperparameters"
        t1, t2 = parse_task(spec.task)
        labels = labels_of(dataset, t1, t2)
        data = prepare_share_data(spec, dataset, share=spec.level, seed=spec.seed)
        model, res = finetune(spec, inputs, data, lr=hp["lr"], weight_decay=hp["weight_decay"], seed=spec.seed,
                              labels=labels)
        table = dataset.table
        val_scores, test_scores = score(spec, inputs, model, data.val_rows), score(spec, inputs, model, data.test_rows)
        c1, c2 = table.column(t1)[data.test_rows] == 1, table.column(t2)[data.test_rows] == 1
        policy = parse_threshold_policy(spec.threshold_policy)  # val: reweighted to the test's (T2, y) cells
        threshold = resolve_threshold(policy, val_scores=val_scores, val_labels=labels[data.val_rows],
                                      test_scores=test_scores, test_labels=labels[data.test_rows],
                                      val_groups=table.column(t2)[data.val_rows] == 1,
                                      target_cells=cell_proportions(labels[data.test_rows], c2))
        neg = ~c1 & ~c2
        pred = test_scores >= threshold
        test_counts = _counts(dataset, data.test_rows, t1, t2)
        result = {
            **subgroup_aucs(test_scores, c1.astype(np.int64), c2.astype(np.int64)),
            "tpr_t1": float(pred[c1 & ~c2].mean()) if (c1 & ~c2).any() else math.nan,
            "tpr_t2": float(pred[c2 & ~c1].mean()) if (c2 & ~c1).any() else math.nan,
            "fpr": float(pred[neg].mean()) if neg.any() else math.nan,
            "threshold": threshold, "threshold_policy": str(policy),
            "t1": t1, "t2": t2, "negatives": negative_classes(spec.options) or "rest",
            "role": base_role(spec.base, spec.task),
            "share": data.train_share, "natural_level": data.natural_share,
            "n_train_t1": data.train_counts["t1"], "n_train_t2": data.train_counts["t2"],
            "n_train_neg": data.train_counts["neg"],
            "n_test_t1": test_counts["t1"], "n_test_t2": test_counts["t2"], "n_test_neg": test_counts["neg"],
            "n_train_used": len(data.train_rows), "n_val_used": len(data.val_rows), "n_test": len(data.test_rows),
            "lr": hp["lr"], "weight_decay": hp["weight_decay"], "hp_val_loss": hp["val_loss"],
            "val_loss": res.best_val_loss, "epochs": res.epochs, "best_epoch": res.best_epoch,
            "fit_seconds": res.seconds, "seconds": time.perf_counter() - t0,
        }
        artifacts = {"train_rows": data.train_rows, "val_rows": data.val_rows, "test_rows": data.test_rows,
                     "test_scores": test_scores.astype(np.float32)}
        return RunOutput(result=result, artifacts=artifacts)

    def reading(self, results: Results) -> list[str]:
        return analysis.underrep_reading(results.runs)

    def sections(self, results: Results, page: Page) -> list[Section]:
        return _section(self.title, results.runs, page)


def _section(title: str, runs: pd.DataFrame, page: Page) -> list[Section]:
    """The underrepresentation section (paper §5): AUC on T2 per base vs share, the difference, the correction."""
    table = analysis.underrep_table(runs)
    if table.empty:
        return []
    gaps, corr = analysis.t2_gap_table(runs), analysis.correction_table(runs)
    body: list[str] = []
    body.append(
        '<p class="note">Task T1 ∨ T2; a share p of the finetuning positives is T2. AUC on T2 = T2 positives '
        "against all test negatives (T1 positives left out), likewise for T1. Pretrain-T1 / Pretrain-T2: bases "
        "trained by us on T1 / T2. Difference = AUC on T2 of Pretrain-T2 minus Pretrain-T1, paired by seed; "
        "mean [95% CI low, high] (Student-t over seeds).</p>"
    )
    body += page.figure(
        underrep_plot(table, gaps),
        "underrepresentation",
        "Underrepresentation plot",
        "Top: AUC on T2 (solid) and on T1 (dotted) per base against the share of T2; bottom: the difference "
        "in AUC on T2 between Pretrain-T2 and Pretrain-T1, 95% CI.",
    )
    if not gaps.empty:
        body.append("<h3>T2 AUC difference (Pretrain-T2 − Pretrain-T1)</h3>")
        body += page.table(
            pd.DataFrame(
                {
                    "task": gaps["task"].astype(str),
                    "N": gaps["n_train"].astype(str),
                    "share of T2": gaps["level_label"].astype(str),
                    "AUC on T2, Pretrain-T1": [fmt(x) for x in gaps["auc_t2_pretrain_t1"]],
                    "AUC on T2, Pretrain-T2": [fmt(x) for x in gaps["auc_t2_pretrain_t2"]],
                    "difference": [
                        fmt_ci(a, b, c)
                        for a, b, c in zip(gaps["gap_mean"], gaps["gap_low"], gaps["gap_high"], strict=True)
                    ],
                    "seeds": gaps["n_pairs"].astype(int),
                    "CI above 0": ["yes" if v else "no" for v in gaps["significant"]],
                }
            )
        )
    across, salience = analysis.pairs_table(runs), analysis.pair_salience_table(runs)
    if not across.empty:
        body.append("<h3>Across pairs: mean T2 AUC difference and how many pairs Pretrain-T1 matches</h3>")
        body.append('<p class="note">Mean over the pairs of each pair\'s paired T2 AUC difference, Student-t 95% '
                    "CI over pairs; pairs &gt; 0: the pair's own interval lies above 0; matched: Pretrain-T1 at "
                    "this share is not shown to be worse than Pretrain-T2 at the smallest share (the lower bound "
                    "of the remaining gap is ≤ 0).</p>")
        body += page.table(pd.DataFrame({
            "N": across["n_train"].astype(str), "share of T2": across["level_label"].astype(str),
            "pairs": across["n_pairs"].astype(int),
            "mean difference": [fmt_ci(a, b, c) for a, b, c in zip(across["across_mean"], across["across_low"],
                                                                   across["across_high"], strict=True)],
            "pairs > 0": across["significant"].astype(int), "matched": across["matched"].astype(int),
        }))
    if not salience.empty:
        body.append("<h3>Relative salience of each pair</h3>")
        body.append('<p class="note">AUC on T1 − AUC on T2 of a base that is neither Pretrain-T1 nor -T2, at the '
                    "share closest to 0.5, paired by seed: above 0, T1 is easier to learn (more salient).</p>")
        body += page.table(pd.DataFrame({
            "task": salience["task"].astype(str), "N": salience["n_train"].astype(str),
            "base": salience["base"].astype(str), "share": [f"{v:g}" for v in salience["level"]],
            "AUC T1 − AUC T2": [fmt_ci(a, b, c) for a, b, c in zip(salience["sal_mean"], salience["sal_low"],
                                                                   salience["sal_high"], strict=True)],
            "seeds": salience["n_seeds"].astype(int), "relation": salience["relation"].astype(str),
        }))
    if not corr.empty:
        body.append("<h3>Correction: Pretrain-T1 at share p against Pretrain-T2 at the smallest share</h3>")
        body += page.table(
            pd.DataFrame(
                {
                    "task": corr["task"].astype(str),
                    "N": corr["n_train"].astype(str),
                    "reference share": [f"{v:g}" for v in corr["reference_level"]],
                    "share p (Pretrain-T1)": corr["level_label"].astype(str),
                    "AUC on T2, reference": [fmt(x) for x in corr["auc_t2_reference"]],
                    "AUC on T2, Pretrain-T1": [fmt(x) for x in corr["auc_t2_pretrain_t1"]],
                    "remaining gap": [
                        fmt_ci(a, b, c)
                        for a, b, c in zip(
                            corr["remaining_mean"], corr["remaining_low"], corr["remaining_high"], strict=True
                        )
                    ],
                    "reaches": ["yes" if v else "no" for v in corr["reaches"]],
                }
            )
        )
    body.append("<h3>AUC per base and share</h3>")
    body += page.table(
        pd.DataFrame(
            {
                "task": table["task"].astype(str),
                "N": table["n_train"].astype(str),
                "base": table["base"].astype(str),
                "role": table["role"].astype(str),
                "share of T2": table["level_label"].astype(str),
                "seeds": table["n_seeds"].astype(int),
                **{
                    head: [
                        fmt_ci(a, b, c)
                        for a, b, c in zip(table[f"{m}_mean"], table[f"{m}_low"], table[f"{m}_high"], strict=True)
                    ]
                    for m, head in (("auc", "AUC"), ("auc_t1", "AUC on T1"), ("auc_t2", "AUC on T2"))
                },
            }
        )
    )
    return [Section("underrepresentation", title, body)]



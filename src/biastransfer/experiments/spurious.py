"""Spurious-correlation finetuning runs (paper §4, docs/protocols.md §2–4), shared by the kinds that audit the
group gaps of a finetuned model: inheritance, correlation sweeps and finetuning-number curves.

One run draws the finetuning and validation sets from their pools (columns ``y`` = the task, ``a`` = the
sensitive attribute) with the run's intervention and level, takes the fixed test set (balanced at the test
level, or the whole natural test pool), finetunes the base with the chosen hyperparameters, scores the test
set, picks the threshold by the study's policy and computes AUC and the group gaps (``fpr_diff``,
``tpr_diff``, ``eo_diff``: group a=1 minus group a=0). :data:`COLUMNS` is the outcome schema of such runs.

The default policy ``val`` calibrates on the validation set reweighted to the test set's (a, y) cell proportions
(known labels, not predictions), so the share predicted positive on the test set matches the test base rate even
when validation is balanced and the test set is the natural pool (docs/metrics.md). Each run also records the
direction d of the finetuning set's correlation (:func:`correlation_direction`) and the gap towards it,
``fpr_diff_signed = d·fpr_diff``, with its magnitude ``fpr_diff_abs = |fpr_diff|``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.base import (
    Column,
    Experiment,
    HyperparameterSearch,
    RunInputs,
    RunOutput,
    SharedResults,
    level_label,
    spec_field,
)
from biastransfer.experiments.finetuning import finetune, grid_search, hparam_seed, score
from biastransfer.experiments.grid import (
    FixedSizes,
    Interventions,
    Levels,
    NoOptions,
    ObjectiveRef,
    Seeds,
    TasksAndBases,
)
from biastransfer.interventions import Pool, Selection, get_intervention, natural_level, reference_intervention
from biastransfer.metrics.audit import evaluate_predictions
from biastransfer.metrics.threshold import cell_proportions, parse_threshold_policy, resolve_threshold
from biastransfer.models.bases import trained_attribute
from biastransfer.seeding import rng
from biastransfer.spec import RunSpec, StudyDefaults, content_key, threshold_policy_of
from biastransfer.train.objectives import baseline_objective


def _level(run: dict[str, Any]) -> float:
    level = run["spec"]["level"]
    return run["result"].get("natural_level", math.nan) if level == "natural" else float(level)


def _test_level(run: dict[str, Any]) -> float:
    test = run["spec"]["test"]
    return math.nan if test == "natural" else float(test)


def _policy(run: dict[str, Any]) -> str:
    """From the spec, so that 0.1's ``val`` (stored result ``"val"``, spec without ``calibration``) reads as
    ``val-unweighted`` and is never grouped with the reweighted ``val`` of later runs."""
    policy = threshold_policy_of(run["spec"])
    return policy if isinstance(policy, str) else run["result"].get("threshold_policy", f"{policy:g}")


def _fpr_diff_abs(run: dict[str, Any]) -> float:
    """|fpr_diff|, also for runs stored before the column existed (it needs nothing else)."""
    return run["result"].get("fpr_diff_abs", abs(run["result"].get("fpr_diff", math.nan)))


def objective_label(spec: dict[str, Any]) -> str:
    """``erm``, ``dfr``, ``group_dro(eta=0.1)``: the spec's objective and its options (specs stored before
    objectives existed read ``erm``)."""
    name, options = spec.get("objective") or baseline_objective(), spec.get("objective_options") or {}
    return f"{name}({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})" if options else name


def correlation_direction(y: np.ndarray, a: np.ndarray, weights: np.ndarray | None = None) -> int:
    """d = sign(c − P(a=1)) with c = N(a=1,y=1)/N(y=1), counted in the (weighted) finetuning set: +1 when the set's
    correlation is towards group a=1, −1 towards a=0, 0 when a and y are independent in it (or it lacks a class).

    Computed as the sign of N·N(a=1,y=1) − N(a=1)·N(y=1) (= N·N(y=1)·(c − P(a=1)); N² times the covariance of a
    and y), with N, N(·) sums of the weights (1 each without weights): exact for counts, and within 1e-9·N² of 0
    counts as 0 for weights.
    """
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    y1, a1 = np.asarray(y) == 1, np.asarray(a) == 1
    n = float(w.sum())
    cov = n * float(w[a1 & y1].sum()) - float(w[a1].sum()) * float(w[y1].sum())
    return 0 if abs(cov) <= 1e-9 * n * n else (1 if cov > 0 else -1)


#: Settings of a finetuning run beyond the common ones (what was drawn and how it was evaluated).
SET_COLUMNS: tuple[Column, ...] = (
    spec_field("intervention", "str", "setting", "sampler of the finetuning set"),
    Column("level", "float", "setting", "finetuning correlation level c (the natural one when 'natural')",
           get=_level),
    Column("level_label", "str", "setting", "the level as written in the study",
           get=lambda run: level_label(run["spec"]["level"])),
    Column("test_level", "float", "setting", "test correlation level (NaN: the natural test pool)", get=_test_level),
    Column("test_label", "str", "setting", "the test level as written in the study",
           get=lambda run: level_label(run["spec"]["test"])),
    Column("objective", "str", "setting", "training objective, with its options when not the defaults (erm: the "
           "weighted loss; docs/objectives.md)", get=lambda run: objective_label(run["spec"])),
    Column("threshold_policy", "str", "setting", "how the decision threshold was chosen: val (reweighted to the "
           "test cells), val-unweighted (0.1's val), test or the number", get=_policy),
)

#: Outcomes of a finetuning (the chosen hyperparameters and the training's early stopping).
FIT_COLUMNS: tuple[Column, ...] = (
    Column("lr", "float", "outcome", "chosen learning rate"),
    Column("weight_decay", "float", "outcome", "chosen weight decay"),
    Column("epochs", "int", "outcome", "epochs trained (early stopping)"),
    Column("val_loss", "float", "outcome", "best validation loss"),
)

COLUMNS: tuple[Column, ...] = (
    *SET_COLUMNS,
    Column("gap_label", "str", "setting", "the groups of the gaps, e.g. 'Women − Men' (a=1 − a=0)",
           get=lambda run: run["result"].get("gap_label", "a=1 − a=0")),
    Column("auc", "float", "metric", "test AUC"),
    Column("fpr_diff", "float", "metric", "FPR(a=1) − FPR(a=0) at the threshold"),
    Column("tpr_diff", "float", "metric", "TPR(a=1) − TPR(a=0) at the threshold"),
    Column("eo_diff", "float", "metric", "max(|fpr_diff|, |tpr_diff|)"),
    Column("fpr_diff_signed", "float", "metric", "d·fpr_diff: the FPR gap towards the finetuning correlation "
           "(NaN when d = 0)"),
    Column("fpr_diff_abs", "float", "metric", "|fpr_diff|", get=_fpr_diff_abs),
    Column("corr_direction", "int", "outcome", "d = sign(c − P(a=1)) in the (weighted) finetuning set: +1 "
           "towards a=1, −1 towards a=0, 0 independent"),
    Column("test_base_rate", "float", "outcome", "share of test examples with y = 1"),
    Column("test_predicted_positive_rate", "float", "outcome", "share of test examples predicted positive"),
    Column("fpr_a0", "float", "outcome", "FPR of group a=0"),
    Column("fpr_a1", "float", "outcome", "FPR of group a=1"),
    Column("tpr_a0", "float", "outcome", "TPR of group a=0"),
    Column("tpr_a1", "float", "outcome", "TPR of group a=1"),
    Column("threshold", "float", "outcome", "the decision threshold (logit)"),
    *FIT_COLUMNS,
)


@dataclass
class FinetuneData:
    """The three sets of one run, as rows of the dataset's store."""

    train_rows: np.ndarray
    train_weights: np.ndarray | None
    val_rows: np.ndarray
    val_weights: np.ndarray | None
    test_rows: np.ndarray
    train_level: float
    natural_level: float


def correlation_pool(dataset: LoadedDataset, split: str, task: str) -> tuple[np.ndarray, Pool]:
    """The rows of ``split`` whose task and sensitive attribute are known, and their pool (columns y, a)."""
    table = dataset.table
    rows = table.split_indices(split)
    y, a = table.column(task)[rows], table.column(table.sensitive)[rows]
    known = (y >= 0) & (a >= 0)
    return rows[known], Pool.of(y=y[known].astype(np.int64), a=a[known].astype(np.int64))


def draw(intervention: str, options: dict[str, Any], pool: Pool, level: float | str, n: int | str | None,
         generator: np.random.Generator, what: str) -> Selection:
    """``intervention`` (with its options) at ``level`` from ``pool``; an infeasible set names ``what``."""
    iv = get_intervention(intervention, **options)
    try:
        return iv.select(pool, level=None if level == "natural" else float(level),
                         n=None if n == "full" else n, rng=generator)
    except ValueError as exc:  # InfeasibleSelectionError is a ValueError; say which set it was
        raise type(exc)(f"{what}: {exc}") from None


def prepare_data(spec: RunSpec, dataset: LoadedDataset, *, level: float | str, seed: int,
                 intervention: str | None = None, intervention_options: dict[str, Any] | None = None,
                 ) -> FinetuneData:
    """Draw the finetuning, validation and test sets of a run (indices are rows of the image store)."""
    iv = intervention or spec.intervention
    options = spec.intervention_options if intervention is None else (intervention_options or {})
    n_val = spec.n_val or spec.n_train
    tr_rows, tr_pool = correlation_pool(dataset, "train", spec.task)
    va_rows, va_pool = correlation_pool(dataset, "val", spec.task)
    te_rows, te_pool = correlation_pool(dataset, "test", spec.task)
    # The finetuning draw depends on (seed, task, N) but not on the level, so nested interventions stay nested.
    train_sel = draw(iv, options, tr_pool, level, spec.n_train, rng(seed, "train-set", spec.task, spec.n_train),
                     "finetuning set")
    val_sel = draw(iv, options, va_pool, level, n_val, rng(seed, "val-set", spec.task, n_val), "validation set")
    if spec.test == "natural":
        test_rows = te_rows
    else:  # held fixed across seeds and settings
        test_sel = draw(reference_intervention(), {}, te_pool, spec.test, spec.test_size,
                        rng(0, "test-set", spec.task, spec.test, spec.test_size), "test set")
        test_rows = te_rows[test_sel.indices]
    y, a = tr_pool.binary("y", "a")
    return FinetuneData(train_rows=tr_rows[train_sel.indices], train_weights=train_sel.weights,
                        val_rows=va_rows[val_sel.indices], val_weights=val_sel.weights, test_rows=test_rows,
                        train_level=train_sel.level, natural_level=natural_level(y, a))


def check(spec: RunSpec, dataset: LoadedDataset, *, search: tuple[str, dict[str, Any]] | None = None) -> None:
    """Preflight: the task and a trained base's attribute exist and the run's sets (and, given ``search`` =
    (intervention, options) of the hyperparameter search, the search's sets) can be drawn."""
    dataset.table.column(spec.task)
    attribute = trained_attribute(spec.base)
    if attribute is not None:
        dataset.table.column(attribute)
    prepare_data(spec, dataset, level=spec.level, seed=spec.seed)
    if search is not None:
        prepare_data(spec, dataset, level="natural", seed=hparam_seed(), intervention=search[0],
                     intervention_options=search[1])


def search(spec: RunSpec, inputs: RunInputs, intervention: str | None = None,
           options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Grid search at the natural level with ``intervention`` (by default the reference one, ``collect``), once per
    (base, task, N, training settings), reused for every level, intervention and seed (docs/protocols.md §6)."""
    intervention = intervention or reference_intervention()
    return grid_search(spec, inputs, lambda seed: prepare_data(spec, inputs.dataset, level="natural", seed=seed,
                                                                intervention=intervention,
                                                                intervention_options=options))


def run(spec: RunSpec, inputs: RunInputs) -> RunOutput:
    """Finetune on the run's sets and audit the test set (the result holds every column of :data:`COLUMNS`)."""
    t0 = time.perf_counter()
    dataset, hp = inputs.dataset, inputs.hparams
    assert hp is not None, "a finetuning run needs its chosen hyperparameters"
    data = prepare_data(spec, dataset, level=spec.level, seed=spec.seed)
    model, res = finetune(spec, inputs, data, lr=hp["lr"], weight_decay=hp["weight_decay"], seed=spec.seed)
    table = dataset.table
    y, a = table.column(spec.task), table.column(table.sensitive)
    val_scores, test_scores = score(spec, inputs, model, data.val_rows), score(spec, inputs, model, data.test_rows)
    policy = parse_threshold_policy(spec.threshold_policy)
    threshold = resolve_threshold(policy, val_scores=val_scores, val_labels=y[data.val_rows],
                                  test_scores=test_scores, test_labels=y[data.test_rows],
                                  val_groups=a[data.val_rows],
                                  target_cells=cell_proportions(y[data.test_rows], a[data.test_rows]))
    audit = evaluate_predictions(y[data.test_rows], test_scores, a[data.test_rows], threshold=threshold,
                                 group_names=table.group_names)
    direction = correlation_direction(y[data.train_rows], a[data.train_rows], data.train_weights)
    groups = {v["group"]: v for v in audit["groups"].values()}
    test_level = natural_level(y[data.test_rows], a[data.test_rows])
    result = {
        "auc": audit["auc"], "fpr_diff": audit["fpr_diff"], "tpr_diff": audit["tpr_diff"],
        "eo_diff": audit["eo_diff"], "gap_label": audit["gap_label"], "threshold": threshold,
        "corr_direction": direction, "fpr_diff_signed": direction * audit["fpr_diff"] if direction else math.nan,
        "fpr_diff_abs": abs(audit["fpr_diff"]), "test_base_rate": audit["base_rate"],
        "test_predicted_positive_rate": audit["positive_rate"],
        "threshold_policy": str(policy),
        "fpr_a0": groups[0]["fpr"], "fpr_a1": groups[1]["fpr"],
        "tpr_a0": groups[0]["tpr"], "tpr_a1": groups[1]["tpr"],
        "count_a0": groups[0]["count"], "count_a1": groups[1]["count"],
        "group_names": list(table.group_names), "sensitive": table.sensitive,
        "train_level": data.train_level, "natural_level": data.natural_level, "test_level": test_level,
        "n_train_used": len(data.train_rows), "n_val_used": len(data.val_rows),
        "n_test": len(data.test_rows),
        "lr": hp["lr"], "weight_decay": hp["weight_decay"], "hp_val_loss": hp["val_loss"],
        "val_loss": res.best_val_loss, "epochs": res.epochs, "best_epoch": res.best_epoch,
        "fit_seconds": res.seconds, "seconds": time.perf_counter() - t0,
    }
    if res.objective:  # what the objective reported (GroupDRO's final group weights, DFR's held-out set …)
        result["objective_info"] = res.objective
    artifacts = {"train_rows": data.train_rows, "val_rows": data.val_rows, "test_rows": data.test_rows,
                 "test_scores": test_scores.astype(np.float32)}
    if data.train_weights is not None:
        artifacts["train_weights"] = data.train_weights
    return RunOutput(result=result, artifacts=artifacts)


class FinetuneBlock(TasksAndBases, Interventions, Levels, FixedSizes, Seeds):
    """bases × tasks × interventions × levels × N × seeds."""

    options: NoOptions = NoOptions()


class FinetuneExperiment(Experiment, HyperparameterSearch, SharedResults):
    """What the kinds of paper §4 share: the grid of :class:`FinetuneBlock`, one hyperparameter search per
    (base, task, N, training settings) with ``collect`` at the natural level, and :func:`run`. Each subclass
    adds its own analysis and report section."""

    Block = FinetuneBlock
    columns = COLUMNS

    def expand(self, name: str, block: FinetuneBlock, study: StudyDefaults) -> list[RunSpec]:
        """bases × tasks × interventions × objectives (a block with ``objectives``; else ERM) × levels × N × seeds."""
        objectives = getattr(block, "objectives", [ObjectiveRef(name=baseline_objective())])
        return [study.spec(experiment=name, kind=self.registry_name, base=base, task=task, seed=seed,
                           intervention=iv.name, intervention_options=iv.options(), level=level, n_train=n,
                           n_val=block.n_val, test=block.test, objective=obj.name, objective_options=obj.options())
                for base, task, iv, obj, level, n, seed in itertools.product(
                    block.base_names(), block.tasks, block.interventions, objectives, block.levels, block.n_train,
                    block.seeds)]

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        check(spec, dataset, search=(reference_intervention(), {}))

    def hparam_payload(self, spec: RunSpec) -> dict[str, Any]:
        return spec.hparam_key()

    def result_key(self, spec: RunSpec) -> str | None:
        """Every kind that runs :func:`run` unchanged gives the same result for the same settings, whatever its
        block's name: the run key without ``experiment`` and ``kind``."""
        if type(self).run is not FinetuneExperiment.run:
            return None
        return content_key({**spec.replace(experiment="", kind="").key_payload(), "run": "spurious.run"})

    def search(self, spec: RunSpec, inputs: RunInputs) -> dict[str, Any]:
        return search(spec, inputs)

    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        return run(spec, inputs)

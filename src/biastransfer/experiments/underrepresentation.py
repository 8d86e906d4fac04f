"""Bias as underrepresentation (paper §5, REFERENCE §5).

The task is ``T1 ∨ T2``: two subcategories (appearances) of one object. It is written ``"T1+T2"`` in the study's
``tasks`` (both are binary columns of the dataset, e.g. ``pullover+coat`` on Fashion-MNIST). Negatives are the
examples of the classes listed in ``options.negatives`` (default: every example with neither T1 nor T2).
Examples that are both T1 and T2 are excluded from every set.

One run finetunes one base on a set of ``N`` examples whose ``⌊N/2⌋`` positives are a share ``p`` (the block's
``levels``) of T2 and the rest T1 (:func:`biastransfer.interventions.share.select_share`); the validation set is
drawn the same way from the ``val`` pool; the test set is held fixed (``test: natural``: every T1-only, T2-only
and negative example of the ``test`` pool; a number q: a set of ``evaluation.test_size`` examples at share q,
drawn once for all seeds and settings). Results per run:

- ``auc``: AUC of ``T1 ∨ T2`` on the whole test set;
- ``auc_t2``: AUC of the T2 positives against **all** test negatives (T1 positives left out);
- ``auc_t1``: the same for T1;
- ``tpr_t1``, ``tpr_t2``, ``fpr``: rates at the study's threshold policy (val-calibrated by default).

The bias of the paper is ``AUC_T2(Pretrain-T2) − AUC_T2(Pretrain-T1)``, computed per (share, N) by
:mod:`biastransfer.analysis.underrep`, pairing the two bases by seed. A base is *Pretrain-T1* when it is of
kind ``trained`` with ``attribute`` = T1 (*Pretrain-T2* likewise), whatever its name.

Hyperparameters: the study's ``train.lr`` × ``train.weight_decay`` grid is searched once per
(base, task, N, negatives, training settings) on a set at share ``options.hp_share`` (default 0.5) by the
lowest mean validation loss over ``train.hp_seeds`` seeds, stored in the results database and reused for
every share and seed (REFERENCE §6). A 1 × 1 grid is used as is, without trials.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from biastransfer.config import ExperimentConfig, StudyConfig
from biastransfer.data.table import DataError, LoadedDataset
from biastransfer.experiments.base import EXPERIMENTS, Experiment, RunOutput
from biastransfer.experiments.finetune import finetune, grid_search, score
from biastransfer.interventions.share import natural_share, select_share
from biastransfer.metrics.ranking import auc
from biastransfer.metrics.threshold import parse_threshold_policy, resolve_threshold
from biastransfer.runner.context import RunContext
from biastransfer.runner.spec import RunSpec, content_key
from biastransfer.seeding import derive_seed, rng

KIND = "underrepresentation"
TASK_HELP = "an underrepresentation task is written 'T1+T2' with two different attribute columns, e.g. pullover+coat"


def parse_task(task: str) -> tuple[str, str]:
    """``"T1+T2"`` → ``(T1, T2)``; ValueError naming the task otherwise."""
    parts = [p.strip() for p in str(task).split("+")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"task {task!r}: {TASK_HELP}")
    return parts[0], parts[1]


def negative_classes(options: dict[str, Any]) -> list[str] | None:
    """``options.negatives`` as a list of column names (None: every example with neither T1 nor T2)."""
    negs = options.get("negatives")
    if negs is None or negs == "rest":
        return None
    if isinstance(negs, str):
        negs = [negs]
    if not isinstance(negs, list | tuple) or not negs or not all(isinstance(n, str) and n for n in negs):
        raise ValueError(f"options.negatives must be a non-empty list of attribute columns or 'rest'; got {negs!r}")
    return list(negs)


def base_role(spec_base: dict[str, Any], task: str) -> str:
    """``pretrain-t1`` / ``pretrain-t2`` for a trained base whose attribute is T1 / T2, else ``other``."""
    t1, t2 = parse_task(task)
    if spec_base.get("kind") == "trained":
        if spec_base.get("attribute") == t1:
            return "pretrain-t1"
        if spec_base.get("attribute") == t2:
            return "pretrain-t2"
    return "other"


@dataclass
class SharePool:
    """The usable rows of one pool and their subgroup indicators (negatives have t1 = t2 = 0)."""

    rows: np.ndarray
    t1: np.ndarray
    t2: np.ndarray


def share_pool(dataset: LoadedDataset, split: str, t1: str, t2: str, negatives: list[str] | None) -> SharePool:
    """Rows of ``split`` that are T1, T2 or a negative (one of ``negatives``; all others when None)."""
    table = dataset.table
    rows = table.split_indices(split)
    c1, c2 = table.column(t1)[rows], table.column(t2)[rows]
    keep = (c1 >= 0) & (c2 >= 0)
    if negatives is not None:
        neg = np.zeros(len(rows), dtype=bool)
        for name in negatives:
            neg |= table.column(name)[rows] == 1
        keep &= (c1 == 1) | (c2 == 1) | neg
    return SharePool(rows=rows[keep], t1=c1[keep].astype(np.int64), t2=c2[keep].astype(np.int64))


def labels_of(dataset: LoadedDataset, t1: str, t2: str) -> np.ndarray:
    """The task label T1 ∨ T2 of every row of the store (0/1)."""
    table = dataset.table
    return ((table.column(t1) == 1) | (table.column(t2) == 1)).astype(np.int64)


@dataclass
class ShareData:
    """The three sets of one run, as rows of the dataset's store."""

    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray
    train_share: float
    natural_share: float
    train_counts: dict[str, int]


def _draw(pool: SharePool, share: float | str, n: int, generator: np.random.Generator, what: str) -> np.ndarray:
    p: Fraction | float
    try:
        p = natural_share(pool.t1, pool.t2) if share == "natural" else float(share)
        sel = select_share(pool.t1, pool.t2, share=p, n=n, rng=generator)
    except ValueError as exc:  # InfeasibleSelectionError / DataError: say which set it was
        raise type(exc)(f"{what}: {exc}") from None
    return pool.rows[sel.indices]


def _counts(dataset: LoadedDataset, rows: np.ndarray, t1: str, t2: str) -> dict[str, int]:
    c1, c2 = dataset.table.column(t1)[rows] == 1, dataset.table.column(t2)[rows] == 1
    return {"t1": int((c1 & ~c2).sum()), "t2": int((c2 & ~c1).sum()), "neg": int((~c1 & ~c2).sum())}


def prepare_share_data(spec: RunSpec, dataset: LoadedDataset, *, share: float | str, seed: int) -> ShareData:
    """Draw the finetuning, validation and test sets of a run (the test set does not depend on seed/share)."""
    t1, t2 = parse_task(spec.task)
    negatives = negative_classes(spec.options)
    n_val = spec.n_val or spec.n_train
    tr, va, te = (share_pool(dataset, s, t1, t2, negatives) for s in ("train", "val", "test"))
    neg_key = "rest" if negatives is None else ",".join(negatives)
    # The draw depends on (seed, task, negatives, N) but not on the share: sets at different shares overlap as
    # much as possible (one random order per cell, prefixes taken).
    train_rows = _draw(tr, share, spec.n_train, rng(seed, "train-set", spec.task, neg_key, spec.n_train),
                       f"finetuning set (pool 'train', share {share}, N={spec.n_train})")
    val_rows = _draw(va, share, n_val, rng(seed, "val-set", spec.task, neg_key, n_val),
                     f"validation set (pool 'val', share {share}, N={n_val})")
    if spec.test == "natural":
        test_rows = te.rows[~((te.t1 == 1) & (te.t2 == 1))]
    else:  # held fixed across seeds and settings
        test_rows = _draw(te, spec.test, spec.test_size, rng(0, "test-set", spec.task, neg_key, spec.test,
                                                             spec.test_size),
                          f"test set (pool 'test', share {spec.test}, N={spec.test_size})")
    counts = _counts(dataset, train_rows, t1, t2)
    return ShareData(train_rows=train_rows, val_rows=val_rows, test_rows=test_rows,
                     train_share=counts["t2"] / max(counts["t1"] + counts["t2"], 1),
                     natural_share=float(natural_share(tr.t1, tr.t2)), train_counts=counts)


def hparam_payload(spec: RunSpec) -> dict[str, Any]:
    """What the hyperparameter choice of an underrepresentation run depends on (not the share, not the seed)."""
    return {**spec.hparam_key(), "experiment_kind": KIND, "negatives": negative_classes(spec.options),
            "hp_share": float(spec.options.get("hp_share", 0.5))}


def search_share_hparams(spec: RunSpec, ctx: RunContext) -> dict[str, Any]:
    """lr × weight decay by the lowest mean validation loss at share ``hp_share`` (a 1 × 1 grid: no trials)."""
    grid = [(lr, wd) for lr in spec.train["lr"] for wd in spec.train["weight_decay"]]
    if len(grid) == 1:
        return {"lr": grid[0][0], "weight_decay": grid[0][1], "val_loss": math.nan, "trials": [],
                "searched": False}
    dataset = ctx.dataset(spec)
    t1, t2 = parse_task(spec.task)
    hp_share = float(spec.options.get("hp_share", 0.5))
    found = grid_search(spec, ctx, lambda seed: prepare_share_data(spec, dataset, share=hp_share, seed=seed),
                        labels=labels_of(dataset, t1, t2))
    return {**found, "searched": True}


def ensure_share_hparams(spec: RunSpec, ctx: RunContext) -> dict[str, Any]:
    """The chosen hyperparameters of a run, searched on first use and kept in the store."""
    payload = hparam_payload(spec)
    key = content_key(payload)
    found = ctx.store.get_hparams(key)
    if found is None:
        found = search_share_hparams(spec, ctx)
        ctx.store.put_hparams(key, {**payload, "base_name": spec.base_name}, found)
    return found


def subgroup_aucs(scores: np.ndarray, t1: np.ndarray, t2: np.ndarray) -> dict[str, float]:
    """AUC of T1 ∨ T2 on all rows, of T2 positives vs all negatives, of T1 positives vs all negatives.

    ``t1``/``t2`` are 0/1 indicators of the scored rows (rows with both are left out of the subgroup AUCs).
    """
    t1, t2 = np.asarray(t1) == 1, np.asarray(t2) == 1
    neg = ~t1 & ~t2
    y = (t1 | t2).astype(np.int64)
    only1, only2 = t1 & ~t2, t2 & ~t1
    return {"auc": auc(y, scores),
            "auc_t1": auc(only1[only1 | neg].astype(np.int64), scores[only1 | neg]),
            "auc_t2": auc(only2[only2 | neg].astype(np.int64), scores[only2 | neg])}


@EXPERIMENTS.register(KIND)
class Underrepresentation(Experiment):
    """Paper §5: bases pretrained on one subcategory (Pretrain-T1, Pretrain-T2) finetuned on T1 ∨ T2 with a
    share p of T2 among the positives; the AUC on T2 of each, and their difference."""

    description = "task T1+T2, share p of T2 among positives swept: AUC on T2 per base (Pretrain-T1 vs -T2)"
    report_kind = KIND

    def hparam_store_key(self, spec: RunSpec) -> str:
        """Key of the run's hyperparameter choice in the store (for a runner that pre-searches per experiment)."""
        return content_key(hparam_payload(spec))

    def ensure_hparams(self, spec: RunSpec, ctx: RunContext) -> dict[str, Any]:
        """The run's hyperparameters, searched on first use (see :func:`ensure_share_hparams`)."""
        return ensure_share_hparams(spec, ctx)

    def expand(self, study: StudyConfig, block: ExperimentConfig) -> list[RunSpec]:
        for task in block.tasks:
            parse_task(task)
        negative_classes(block.options)
        if not block.tasks:
            raise ValueError(f"experiment {block.name!r}: 'tasks' needs at least one 'T1+T2' pair")
        specs = []
        for base, task, share, n, seed in itertools.product(block.bases or ["scratch"], block.tasks, block.levels,
                                                           block.n_train, block.seeds):
            specs.append(self.make_spec(study, block, base=base, task=task, intervention="subgroup_share",
                                        level=share, n_train=n, seed=seed))
        return specs

    def check(self, spec: RunSpec, ctx: RunContext) -> None:
        """Columns T1, T2, the negatives and a trained base's attribute exist; every set can be drawn."""
        dataset = ctx.dataset(spec)
        t1, t2 = parse_task(spec.task)
        negatives = negative_classes(spec.options)
        for name in (t1, t2, *(negatives or [])):
            dataset.table.column(name)
        if negatives is not None and {t1, t2} & set(negatives):
            raise DataError(f"task {spec.task!r}: options.negatives {negatives} include T1 or T2")
        if spec.base.get("kind") == "trained":
            dataset.table.column(spec.base.get("attribute", ""))
        prepare_share_data(spec, dataset, share=spec.level, seed=spec.seed)
        hp_share = spec.options.get("hp_share", 0.5)
        if len(spec.train["lr"]) * len(spec.train["weight_decay"]) > 1:
            prepare_share_data(spec, dataset, share=float(hp_share), seed=derive_seed(10_000, "hparam-search"))

    def run(self, spec: RunSpec, ctx: RunContext) -> RunOutput:
        t0 = time.perf_counter()
        dataset = ctx.dataset(spec)
        t1, t2 = parse_task(spec.task)
        labels = labels_of(dataset, t1, t2)
        hp = ensure_share_hparams(spec, ctx)
        data = prepare_share_data(spec, dataset, share=spec.level, seed=spec.seed)
        model, res = finetune(spec, ctx, data, lr=hp["lr"], weight_decay=hp["weight_decay"], seed=spec.seed,
                              labels=labels)
        table = dataset.table
        val_scores, test_scores = score(spec, ctx, model, data.val_rows), score(spec, ctx, model, data.test_rows)
        policy = parse_threshold_policy(spec.threshold)
        threshold = resolve_threshold(policy, val_scores=val_scores, val_labels=labels[data.val_rows],
                                      test_scores=test_scores, test_labels=labels[data.test_rows])
        c1, c2 = table.column(t1)[data.test_rows] == 1, table.column(t2)[data.test_rows] == 1
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

"""Spurious-correlation finetuning (paper §4): a base finetuned on a task at a correlation level, then audited.

One run: draw the finetuning and validation sets from their pools with the run's intervention and level, take
the fixed test set (balanced at the test level, or the natural pool), finetune the base with the hyperparameters
chosen for (base, task, N), score the test set, pick the threshold by the study's policy and compute AUC and the
group gaps. The ``inheritance`` and ``correlation_sweep`` experiments differ only in their report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.base import EXPERIMENTS, Experiment, RunOutput
from biastransfer.interventions import Selection, get_intervention, natural_level
from biastransfer.metrics.audit import evaluate_predictions
from biastransfer.metrics.threshold import parse_threshold_policy, resolve_threshold
from biastransfer.runner.context import RunContext
from biastransfer.runner.spec import RunSpec
from biastransfer.seeding import derive_seed, rng
from biastransfer.train.engine import FitConfig, FitResult, fit, make_split, predict_logits

log = logging.getLogger(__name__)


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


def _pool(dataset: LoadedDataset, split: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = dataset.table
    rows = table.split_indices(split)
    y, a = table.column(task)[rows], table.column(table.sensitive)[rows]
    known = (y >= 0) & (a >= 0)
    return rows[known], y[known].astype(np.int64), a[known].astype(np.int64)


def _select(intervention: str, rows: np.ndarray, y: np.ndarray, a: np.ndarray, level: float | str, n: int,
            generator: np.random.Generator, what: str) -> Selection:
    iv = get_intervention(intervention)
    try:
        return iv.select(y, a, level=None if level == "natural" else float(level), n=n, rng=generator)
    except ValueError as exc:  # InfeasibleSelectionError is a ValueError; say which set it was
        raise type(exc)(f"{what}: {exc}") from None


def prepare_data(spec: RunSpec, dataset: LoadedDataset, *, level: float | str, seed: int,
                 intervention: str | None = None) -> FinetuneData:
    """Draw the finetuning, validation and test sets of a run (indices are rows of the image store)."""
    iv = intervention or spec.intervention
    n_val = spec.n_val or spec.n_train
    tr_rows, tr_y, tr_a = _pool(dataset, "train", spec.task)
    va_rows, va_y, va_a = _pool(dataset, "val", spec.task)
    te_rows, te_y, te_a = _pool(dataset, "test", spec.task)
    # The finetuning draw depends on (seed, task, N) but not on the level, so nested interventions stay nested.
    train_sel = _select(iv, tr_rows, tr_y, tr_a, level, spec.n_train,
                        rng(seed, "train-set", spec.task, spec.n_train), "finetuning set")
    val_sel = _select(iv, va_rows, va_y, va_a, level, n_val, rng(seed, "val-set", spec.task, n_val),
                      "validation set")
    if spec.test == "natural":
        test_rows = te_rows
    else:  # held fixed across seeds and settings
        test_sel = _select("collect", te_rows, te_y, te_a, spec.test, spec.test_size,
                           rng(0, "test-set", spec.task, spec.test, spec.test_size), "test set")
        test_rows = te_rows[test_sel.indices]
    return FinetuneData(train_rows=tr_rows[train_sel.indices], train_weights=train_sel.weights,
                        val_rows=va_rows[val_sel.indices], val_weights=val_sel.weights, test_rows=test_rows,
                        train_level=train_sel.level, natural_level=natural_level(tr_y, tr_a))


def fit_config(spec: RunSpec, lr: float, weight_decay: float) -> FitConfig:
    t = spec.train
    return FitConfig(lr=lr, weight_decay=weight_decay, momentum=t["momentum"], batch_size=t["batch_size"],
                     max_epochs=t["max_epochs"], patience=t["patience"], flip=t["flip"],
                     compile=t.get("compile", False), precision=t.get("precision", "fp32"))


def score(spec: RunSpec, ctx: RunContext, model: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
    """The model's logits on the given store rows (with the study's compile/precision settings)."""
    images = ctx.dataset(spec).images.tensor()
    logits = predict_logits(model, images[torch.as_tensor(rows)], device=ctx.device,
                            compile=spec.train.get("compile", False), precision=spec.train.get("precision", "fp32"))
    return logits.numpy().ravel()


def finetune(spec: RunSpec, ctx: RunContext, data: Any, *, lr: float, weight_decay: float, seed: int,
             labels: np.ndarray | None = None) -> tuple[torch.nn.Module, FitResult]:
    """Finetune the run's base on ``data`` (all layers unless the transfer mode says otherwise).

    ``data`` has ``train_rows`` and ``val_rows`` (rows of the store) and optionally ``train_weights`` and
    ``val_weights``; ``labels`` (per store row) default to the run's task column.
    """
    dataset = ctx.dataset(spec)
    images = dataset.images.tensor()
    labels = dataset.table.column(spec.task) if labels is None else labels
    model = ctx.base_model(spec)
    phases = None
    if spec.transfer != "full" or spec.transfer_options:
        from biastransfer.models.transfer import get_transfer_mode

        mode = get_transfer_mode(spec.transfer, **spec.transfer_options)
        mode.validate(model)
        phases = mode.phases()
    train = make_split(images, data.train_rows, labels[data.train_rows], getattr(data, "train_weights", None))
    val = make_split(images, data.val_rows, labels[data.val_rows], getattr(data, "val_weights", None))
    result = fit(model, train, val, fit_config(spec, lr, weight_decay), seed=derive_seed(seed, "fit"),
                 device=ctx.device, phases=phases,
                 on_epoch=lambda epoch, rec: log.info("epoch %d: %s", epoch, rec))
    log.info("finetuned %s on %s (N=%d, lr=%g, wd=%g): best val loss %.4f at epoch %d of %d (%.1f s)",
             spec.base_name, spec.task, len(data.train_rows), lr, weight_decay, result.best_val_loss,
             result.best_epoch, result.epochs, result.seconds)
    return model, result


def grid_search(spec: RunSpec, ctx: RunContext, prepare: Callable[[int], Any],
                labels: np.ndarray | None = None) -> dict[str, Any]:
    """lr × weight decay (``spec.train``) by the lowest mean validation loss over ``hp_seeds`` seeds.

    ``prepare(seed)`` draws the sets one trial trains on (see :func:`finetune` for what they hold).
    """
    trials = []
    for lr in spec.train["lr"]:
        for wd in spec.train["weight_decay"]:
            losses, epochs = [], 0
            for k in range(spec.train["hp_seeds"]):
                seed = derive_seed(10_000 + k, "hparam-search")
                _, res = finetune(spec, ctx, prepare(seed), lr=lr, weight_decay=wd, seed=seed, labels=labels)
                losses.append(res.best_val_loss)
                epochs = res.epochs
            trials.append({"lr": lr, "weight_decay": wd, "val_loss": float(np.mean(losses)), "epochs": epochs})
    finite = [t for t in trials if np.isfinite(t["val_loss"])]
    if not finite:
        raise RuntimeError(f"every hyperparameter trial diverged for {spec.base_name} → {spec.task}; "
                           f"lower the learning rates in 'train.lr'")
    best = min(finite, key=lambda t: t["val_loss"])
    return {"lr": best["lr"], "weight_decay": best["weight_decay"], "val_loss": best["val_loss"],
            "trials": trials}


def search_hparams(spec: RunSpec, ctx: RunContext) -> dict[str, Any]:
    """Grid search at the natural level with ``collect``, once per (base, task, N, training settings), reused for
    every level, intervention and seed (REFERENCE §6)."""
    dataset = ctx.dataset(spec)
    return grid_search(spec, ctx, lambda seed: prepare_data(spec, dataset, level="natural", seed=seed,
                                                            intervention="collect"))


def ensure_hparams(spec: RunSpec, ctx: RunContext) -> dict[str, Any]:
    """The chosen hyperparameters of a run, searched on first use and kept in the store."""
    from biastransfer.runner.spec import content_key

    key = content_key(spec.hparam_key())
    found = ctx.store.get_hparams(key)
    if found is None:
        found = search_hparams(spec, ctx)
        ctx.store.put_hparams(key, {**spec.hparam_key(), "base_name": spec.base_name}, found)
    return found


class _Finetune(Experiment):
    def run(self, spec: RunSpec, ctx: RunContext) -> RunOutput:
        t0 = time.perf_counter()
        dataset = ctx.dataset(spec)
        hp = ensure_hparams(spec, ctx)
        data = prepare_data(spec, dataset, level=spec.level, seed=spec.seed)
        model, res = finetune(spec, ctx, data, lr=hp["lr"], weight_decay=hp["weight_decay"], seed=spec.seed)
        table = dataset.table
        y, a = table.column(spec.task), table.column(table.sensitive)
        val_scores, test_scores = score(spec, ctx, model, data.val_rows), score(spec, ctx, model, data.test_rows)
        policy = parse_threshold_policy(spec.threshold)
        threshold = resolve_threshold(policy, val_scores=val_scores, val_labels=y[data.val_rows],
                                      test_scores=test_scores, test_labels=y[data.test_rows])
        audit = evaluate_predictions(y[data.test_rows], test_scores, a[data.test_rows], threshold=threshold,
                                     group_names=table.group_names)
        groups = {v["group"]: v for v in audit["groups"].values()}
        test_level = natural_level(y[data.test_rows], a[data.test_rows])
        result = {
            "auc": audit["auc"], "fpr_diff": audit["fpr_diff"], "tpr_diff": audit["tpr_diff"],
            "eo_diff": audit["eo_diff"], "gap_label": audit["gap_label"], "threshold": threshold,
            "threshold_policy": str(policy),
            "fpr_a0": groups[0]["fpr"], "fpr_a1": groups[1]["fpr"],
            "tpr_a0": groups[0]["tpr"], "tpr_a1": groups[1]["tpr"],
            "count_a0": groups[0]["count"], "count_a1": groups[1]["count"],
            "group_names": list(table.group_names),
            "train_level": data.train_level, "natural_level": data.natural_level, "test_level": test_level,
            "n_train_used": len(data.train_rows), "n_val_used": len(data.val_rows),
            "n_test": len(data.test_rows),
            "lr": hp["lr"], "weight_decay": hp["weight_decay"], "hp_val_loss": hp["val_loss"],
            "val_loss": res.best_val_loss, "epochs": res.epochs, "best_epoch": res.best_epoch,
            "fit_seconds": res.seconds, "seconds": time.perf_counter() - t0,
        }
        artifacts = {"train_rows": data.train_rows, "val_rows": data.val_rows, "test_rows": data.test_rows,
                     "test_scores": test_scores.astype(np.float32)}
        if data.train_weights is not None:
            artifacts["train_weights"] = data.train_weights
        return RunOutput(result=result, artifacts=artifacts)


@EXPERIMENTS.register("inheritance")
class Inheritance(_Finetune):
    """Paper §4.1: several bases (gendered, controls, scratch) finetuned on each task at its natural level and
    at a high level; does the gendered base's FPR difference exceed every control's?"""

    description = "bases × tasks × {natural, high level}: is the pretrained bias inherited?"
    report_kind = "inheritance"


@EXPERIMENTS.register("correlation_sweep")
class CorrelationSweep(_Finetune):
    """Paper §4.2: one biased base finetuned at a sweep of correlation levels (collect / subselect / reweight)
    with the test set fixed; the AUC vs FPR-difference tradeoff."""

    description = "finetuning correlation level swept, test fixed: AUC vs FPR difference tradeoff"
    report_kind = "correlation_sweep"

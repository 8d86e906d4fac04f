"""Finetuning steps every experiment kind shares: train a fresh copy of the run's base on given store rows,
score rows, and search the learning-rate × weight-decay grid (docs/protocols.md §6)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from biastransfer.experiments.base import RunInputs
from biastransfer.models.transfer import FREEZE_BACKBONE, get_transfer_mode
from biastransfer.seeding import derive_seed
from biastransfer.spec import RunSpec
from biastransfer.train.engine import FitConfig, FitResult, fit, make_split, predict_logits
from biastransfer.train.features import RowFeatures, frozen_source, head_logits, mark_frozen
from biastransfer.train.objectives import cell_groups, get_objective
from biastransfer.train.placement import store_tensor

log = logging.getLogger(__name__)


def fit_config(spec: RunSpec, lr: float, weight_decay: float) -> FitConfig:
    """The engine's settings of a run: the study's ``train`` section with the chosen lr and weight decay."""
    t = spec.train
    return FitConfig(lr=lr, weight_decay=weight_decay, momentum=t["momentum"], batch_size=t["batch_size"],
                     max_epochs=t["max_epochs"], patience=t["patience"], flip=t["flip"],
                     compile=t.get("compile", False), precision=t.get("precision", "fp32"),
                     schedule=t.get("schedule", "constant"))


def score(spec: RunSpec, inputs: RunInputs, model: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
    """The model's logits on the given store rows (with the study's compile/precision settings): shape ``(n,)``
    for a one-logit head, ``(n, K)`` for a head of K logits."""
    images = store_tensor(inputs.dataset.images, inputs.device)
    source = frozen_source(model)
    if source is not None and source.store is images:  # a fixed-feature model: its backbone's features are cached
        logits = head_logits(model, source.features(rows, False), device=inputs.device,
                             precision=spec.train.get("precision", "fp32"))
        out = logits.numpy().reshape(len(rows), -1)
        return out[:, 0] if out.shape[1] == 1 else out
    logits = predict_logits(model, images[torch.as_tensor(rows)], device=inputs.device,
                            compile=spec.train.get("compile", False), precision=spec.train.get("precision", "fp32"))
    out = logits.numpy().reshape(len(rows), -1)
    return out[:, 0] if out.shape[1] == 1 else out


def finetune(spec: RunSpec, inputs: RunInputs, data: Any, *, lr: float, weight_decay: float, seed: int,
             labels: np.ndarray | None = None, num_outputs: int = 1,
             classes: bool = False) -> tuple[torch.nn.Module, FitResult]:
    """Finetune a fresh copy of the run's base on ``data`` (all layers unless the transfer mode says otherwise).

    ``data`` has ``train_rows`` and ``val_rows`` (rows of the store) and optionally ``train_weights`` and
    ``val_weights``; ``labels`` (per store row) default to the run's task column. With ``num_outputs`` K > 1 the
    head has K logits and ``labels`` has shape ``(n_rows, K)`` (binary cross-entropy on each), or, with ``classes``,
    ``labels`` are class indices (K-way cross-entropy).

    The loss is the spec's training objective (``spec.objective``, docs/objectives.md); one that needs groups
    gets each example's (a, y) cell (the dataset's sensitive attribute and the binary task label).
    """
    dataset = inputs.dataset
    images = store_tensor(dataset.images, inputs.device)
    labels = dataset.table.column(spec.task) if labels is None else labels
    model = inputs.new_model(spec, num_outputs) if num_outputs != 1 else inputs.new_model(spec)
    phases = None
    mode = get_transfer_mode(spec.transfer, **spec.transfer_options)
    if not mode.unphased or spec.transfer_options:
        mode.validate(model)
        phases = mode.phases()
    objective = get_objective(spec.objective, **spec.objective_options)
    groups = None
    if objective.needs_groups:
        sensitive = dataset.table.column(dataset.table.sensitive)
        groups = {part: cell_groups(sensitive[rows], labels[rows]) for part, rows in
                  (("train", data.train_rows), ("val", data.val_rows))}
    train = make_split(images, data.train_rows, labels[data.train_rows], getattr(data, "train_weights", None),
                       classes=classes, groups=None if groups is None else groups["train"])
    val = make_split(images, data.val_rows, labels[data.val_rows], getattr(data, "val_weights", None),
                     classes=classes, groups=None if groups is None else groups["val"])
    config = fit_config(spec, lr, weight_decay)
    features = RowFeatures(model, images, dataset.fingerprint, data.train_rows, data.val_rows,
                           device=inputs.device, precision=config.precision)
    result = fit(model, train, val, config, seed=derive_seed(seed, "fit"), device=inputs.device, phases=phases,
                 on_epoch=lambda epoch, rec: log.info("epoch %d: %s", epoch, rec), features=features,
                 objective=objective)
    if phases and features.used and all(p.freeze == FREEZE_BACKBONE and not p.update_bn for p in phases):
        mark_frozen(model, features)  # the backbone kept its weights: scoring reads the cache too
    log.info("finetuned %s on %s (N=%d, lr=%g, wd=%g): best val loss %.4f at epoch %d of %d (%.1f s)",
             spec.base_name, spec.task, len(data.train_rows), lr, weight_decay, result.best_val_loss,
             result.best_epoch, result.epochs, result.seconds)
    return model, result


def grid_search(spec: RunSpec, inputs: RunInputs, prepare: Callable[[int], Any],
                labels: np.ndarray | None = None, num_outputs: int = 1, classes: bool = False) -> dict[str, Any]:
    """lr × weight decay (``spec.train``) by the lowest mean validation loss over ``hp_seeds`` seeds.

    ``prepare(seed)`` draws the sets one trial trains on (see :func:`finetune` for what they hold). A 1 × 1 grid
    has nothing to choose: it trains nothing and returns its point with ``val_loss`` NaN (``searched`` False).
    """
    grid = [(lr, wd) for lr in spec.train["lr"] for wd in spec.train["weight_decay"]]
    if len(grid) == 1:
        return {"lr": grid[0][0], "weight_decay": grid[0][1], "val_loss": math.nan, "trials": [],
                "searched": False}
    trials = []
    for lr, wd in grid:
        losses, epochs = [], 0
        for k in range(spec.train["hp_seeds"]):
            seed = derive_seed(10_000 + k, "hparam-search")
            _, res = finetune(spec, inputs, prepare(seed), lr=lr, weight_decay=wd, seed=seed, labels=labels,
                              num_outputs=num_outputs, classes=classes)
            losses.append(res.best_val_loss)
            epochs = res.epochs
        trials.append({"lr": lr, "weight_decay": wd, "val_loss": float(np.mean(losses)), "epochs": epochs})
    finite = [t for t in trials if np.isfinite(t["val_loss"])]
    if not finite:
        raise RuntimeError(f"every hyperparameter trial diverged for {spec.base_name} → {spec.task}; "
                           f"lower the learning rates in 'train.lr'")
    best = min(finite, key=lambda t: t["val_loss"])
    return {"lr": best["lr"], "weight_decay": best["weight_decay"], "val_loss": best["val_loss"],
            "trials": trials, "searched": True}


def hparam_seed() -> int:
    """The seed of the first hyperparameter trial (preflight checks that its sets can be drawn)."""
    return derive_seed(10_000, "hparam-search")

"""Bases trained by us: a model trained to predict one attribute, trained once and cached by a content key."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biastransfer.data.table import DataError, LoadedDataset
from biastransfer.models.architectures import Classifier, build_model
from biastransfer.models.bases import DEFAULT_POOL, FINETUNING_POOLS
from biastransfer.paths import bases_cache_dir
from biastransfer.seeding import derive_seed
from biastransfer.spec import content_key
from biastransfer.train.engine import FitConfig, fit, make_split, predict_logits
from biastransfer.train.placement import store_tensor

log = logging.getLogger(__name__)


def base_cache_key(dataset: LoadedDataset, arch: str, attribute: str, config: dict[str, Any],
                   pool: str = DEFAULT_POOL) -> str:
    payload = {"data": dataset.fingerprint, "arch": arch, "attribute": attribute, "config": config}
    if pool != DEFAULT_POOL:  # the default stays out of the key, so bases cached before 'pool' keep theirs
        payload["pool"] = pool
    return content_key(payload)


def base_rows(dataset: LoadedDataset, attribute: str, config: dict[str, Any],
              pool: str = DEFAULT_POOL, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The rows a base of ``attribute`` trains on and the rows it holds out for early stopping (10%, at least 2),
    all from the split ``pool`` (and, with ``keep``, a boolean per row, only the rows it marks). There is no
    fallback: a pool that is a finetuning, validation or test split, or that the dataset lacks, raises DataError (a
    base must never see the examples the study finetunes and tests on)."""
    if pool in FINETUNING_POOLS:
        raise DataError(f"a base must not train on the {pool!r} split: finetuning, validation and test sets are "
                        f"drawn from {', '.join(FINETUNING_POOLS)}")
    table = dataset.table
    labels = table.column(attribute)
    if not table.has_split(pool):
        raise DataError(f"dataset {dataset.name!r} has no {pool!r} split to train a base on (splits: "
                        f"{', '.join(sorted(set(table.frame['split'])))}); carve one (docs/datasets.md)")
    rows = table.split_indices(pool)
    rows = rows[labels[rows] >= 0]
    if keep is not None:
        rows = rows[keep[rows]]
    rng = np.random.default_rng(derive_seed(config.get("seed", 0), "base-pool", attribute))
    rows = rng.permutation(rows)
    if config.get("max_examples"):
        rows = rows[: config["max_examples"]]
    n_hold = max(2, len(rows) // 10)
    if len(rows) < n_hold + 1:
        raise DataError(f"dataset {dataset.name!r}: the {pool!r} split has {len(rows)} row(s) labelled for "
                        f"{attribute!r}; a base needs at least {n_hold + 1}")
    return rows[n_hold:], rows[:n_hold]


def pool_record(pool: str, fit_idx: np.ndarray, hold: np.ndarray) -> dict[str, Any]:
    """What provenance keeps of a base's pool: the split, how many rows it used, and a fingerprint of them."""
    rows = np.sort(np.concatenate([fit_idx, hold]).astype(np.int64))
    return {"split": pool, "n_examples": int(rows.size), "n_holdout": int(hold.size),
            "rows_sha256": hashlib.sha256(rows.tobytes()).hexdigest()[:16]}


def train_attribute_base(dataset: LoadedDataset, *, arch: str, attribute: str, config: dict[str, Any],
                         cache_dir: Path, device: torch.device,
                         pool: str = DEFAULT_POOL) -> tuple[Classifier, dict[str, Any]]:
    """Train (or read from cache) a classifier of ``attribute`` on the split ``pool`` (default ``pretrain``): one
    logit and binary cross-entropy for a binary attribute, one logit per class and K-way cross-entropy for the
    multi-class label of a dataset with ``classes``.

    The rows are :func:`base_rows`: never those of the finetuning, validation or test splits. Returns the model
    and a summary (key, validation loss and accuracy, epochs, cached?, and ``pool``: the split, its number of
    rows and a fingerprint of them, :func:`pool_record`).
    """
    fit_idx, hold = base_rows(dataset, attribute, config, pool)
    multiclass = dataset.table.is_multiclass(attribute)
    return train_cached(dataset, arch=arch, attribute=attribute, labels=dataset.table.column(attribute),
                        fit_idx=fit_idx, hold=hold, outputs=len(dataset.table.classes) if multiclass else 1,
                        classes=multiclass, key=base_cache_key(dataset, arch, attribute, config, pool),
                        config=config, cache_dir=cache_dir, device=device, record=pool_record(pool, fit_idx, hold))


def train_cached(dataset: LoadedDataset, *, arch: str, attribute: str, labels: np.ndarray, fit_idx: np.ndarray,
                 hold: np.ndarray, outputs: int, classes: bool, key: str, config: dict[str, Any], cache_dir: Path,
                 device: torch.device, record: dict[str, Any],
                 evaluate: Any = None) -> tuple[Classifier, dict[str, Any]]:
    """Read the base ``key`` from the bases cache, or train it on ``fit_idx`` (early stopping on ``hold``) with
    ``labels`` (per store row; class indices when ``classes``) and a head of ``outputs`` logits, then cache it.
    ``evaluate(model)``, when given, adds entries to the summary of a freshly trained base."""
    folder = bases_cache_dir(cache_dir)
    weights_path, info_path = folder / f"{key}.pt", folder / f"{key}.json"
    model = build_model(arch, num_outputs=outputs, in_channels=dataset.images.channels)
    if weights_path.exists() and info_path.exists():
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            return model, {**json.loads(info_path.read_text()), "pool": record, "cached": True}
        except (RuntimeError, OSError, ValueError, json.JSONDecodeError) as exc:
            log.warning("cached base %s is unreadable (%s); training it again", weights_path, exc)

    images = store_tensor(dataset.images, device)
    torch.manual_seed(derive_seed(config.get("seed", 0), "base-init", attribute))
    model = build_model(arch, num_outputs=outputs, in_channels=dataset.images.channels)
    fc = FitConfig(lr=config["lr"], weight_decay=config["weight_decay"], batch_size=config["batch_size"],
                   max_epochs=config["epochs"], patience=max(2, config["epochs"]), flip=True)
    result = fit(model, make_split(images, fit_idx, labels[fit_idx], classes=classes),
                 make_split(images, hold, labels[hold], classes=classes), fc,
                 seed=derive_seed(config.get("seed", 0), "base-fit", attribute), device=device)
    logits = predict_logits(model, images[torch.as_tensor(hold)], device=device).numpy()
    predicted = logits.argmax(axis=1) if classes else (logits.ravel() > 0).astype(int)
    accuracy = float((predicted == labels[hold]).mean())
    info = {"key": key, "attribute": attribute, "arch": arch, "val_loss": result.best_val_loss,
            "val_accuracy": accuracy, "epochs": result.epochs, "n_train": len(fit_idx),
            "seconds": result.seconds, "pool": record}
    if evaluate is not None:
        info.update(evaluate(model))
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu()
    tmp = weights_path.with_name(f"{weights_path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(weights_path)
    tmp_info = info_path.with_name(f"{info_path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp_info.write_text(json.dumps(info, indent=2))
    tmp_info.replace(info_path)
    return model, {**info, "cached": False}

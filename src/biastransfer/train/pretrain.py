"""Bases trained by us: a model trained to predict one attribute, trained once and cached by a content key."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biastransfer.data.table import LoadedDataset
from biastransfer.models.architectures import Classifier, build_model
from biastransfer.paths import bases_cache_dir
from biastransfer.seeding import derive_seed
from biastransfer.spec import content_key
from biastransfer.train.engine import FitConfig, fit, make_split

log = logging.getLogger(__name__)


def base_cache_key(dataset: LoadedDataset, arch: str, attribute: str, config: dict[str, Any]) -> str:
    return content_key({"data": dataset.fingerprint, "arch": arch, "attribute": attribute, "config": config})


def train_attribute_base(dataset: LoadedDataset, *, arch: str, attribute: str, config: dict[str, Any],
                         cache_dir: Path, device: torch.device) -> tuple[Classifier, dict[str, Any]]:
    """Train (or read from cache) a classifier of ``attribute`` on the ``pretrain`` pool.

    The pool falls back to ``train`` when the dataset has no ``pretrain`` split. 10% of the pool is held out
    for early stopping. Returns the model and a summary (key, validation loss and accuracy, epochs, cached?).
    """
    table = dataset.table
    labels = table.column(attribute)
    key = base_cache_key(dataset, arch, attribute, config)
    folder = bases_cache_dir(cache_dir)
    weights_path, info_path = folder / f"{key}.pt", folder / f"{key}.json"
    model = build_model(arch, num_outputs=1, in_channels=dataset.images.channels)
    if weights_path.exists() and info_path.exists():
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            return model, {**json.loads(info_path.read_text()), "cached": True}
        except (RuntimeError, OSError, ValueError, json.JSONDecodeError) as exc:
            log.warning("cached base %s is unreadable (%s); training it again", weights_path, exc)

    pool = table.split_indices("pretrain" if table.has_split("pretrain") else "train")
    pool = pool[labels[pool] >= 0]
    rng = np.random.default_rng(derive_seed(config.get("seed", 0), "base-pool", attribute))
    pool = rng.permutation(pool)
    if config.get("max_examples"):
        pool = pool[: config["max_examples"]]
    n_hold = max(2, len(pool) // 10)
    hold, fit_idx = pool[:n_hold], pool[n_hold:]
    images = dataset.images.tensor()
    torch.manual_seed(derive_seed(config.get("seed", 0), "base-init", attribute))
    model = build_model(arch, num_outputs=1, in_channels=dataset.images.channels)
    fc = FitConfig(lr=config["lr"], weight_decay=config["weight_decay"], batch_size=config["batch_size"],
                   max_epochs=config["epochs"], patience=max(2, config["epochs"]), flip=True)
    result = fit(model, make_split(images, fit_idx, labels[fit_idx]), make_split(images, hold, labels[hold]), fc,
                 seed=derive_seed(config.get("seed", 0), "base-fit", attribute), device=device)
    from biastransfer.train.engine import predict_logits

    logits = predict_logits(model, images[torch.as_tensor(hold)], device=device).numpy().ravel()
    accuracy = float(((logits > 0).astype(int) == labels[hold]).mean())
    info = {"key": key, "attribute": attribute, "arch": arch, "val_loss": result.best_val_loss,
            "val_accuracy": accuracy, "epochs": result.epochs, "n_train": len(fit_idx),
            "seconds": result.seconds}
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu()
    tmp = weights_path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(weights_path)
    info_path.write_text(json.dumps(info, indent=2))
    return model, {**info, "cached": False}

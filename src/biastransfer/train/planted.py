"""Source bases with a planted trigger (Salman et al.; docs/protocols.md §7): a base trained like a ``trained``
base, on a source pool where a trigger is pasted on a share of the images of one class (or a group of classes).

The source task is the attribute the base predicts (the multi-class ``label``, optionally restricted to
``source_classes`` and renumbered 0 … K−1 in their order; or a binary attribute). Among the pool's training rows of
the ``trigger_classes``, exactly ``round(rate · m)`` (half to even) are replaced by their triggered version; the
held-out rows are planted the same way, so early stopping watches the task as trained. Both draws are seeded from
``base_training.seed``. The base is cached by a key that adds the plant (trigger options, classes, rate) to a
trained base's key.

A freshly trained base also records how strongly it learned the trigger, on the held-out clean rows of the other
classes: among those it classifies correctly, the share whose prediction changes when the trigger is pasted on
(``source_attack_success``), and among all of them, the share then predicted as a trigger class
(``source_targeted``). Base training flips images horizontally, so a corner trigger is also seen mirrored.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biastransfer.data.table import LoadedDataset
from biastransfer.models.architectures import Classifier
from biastransfer.models.bases import DEFAULT_POOL
from biastransfer.seeding import rng
from biastransfer.spec import content_key
from biastransfer.train.engine import predict_logits
from biastransfer.train.pretrain import base_rows, pool_record, train_cached
from biastransfer.triggers.plant import Plant
from biastransfer.triggers.store import trigger_content, triggered_dataset


def plant_rows(rows: np.ndarray, labels: np.ndarray, plant: Plant, n_clean: int, seed: int, part: str) -> np.ndarray:
    """``rows`` with exactly ``round(rate · m)`` of the ``m`` rows of a trigger class replaced by their triggered
    version (row + ``n_clean``), chosen by a permutation seeded from (seed, part)."""
    candidates = rows[np.isin(labels[rows], plant.trigger_classes)]
    k = round(Fraction(str(plant.rate)) * candidates.size)
    chosen = rng(seed, "plant", part).permutation(candidates)[:k]
    return np.where(np.isin(rows, chosen), rows + n_clean, rows)


def train_planted_base(dataset: LoadedDataset, *, arch: str, attribute: str, config: dict[str, Any],
                       plant_options: dict[str, Any], cache_dir: Path, device: torch.device,
                       pool: str = DEFAULT_POOL) -> tuple[Classifier, dict[str, Any]]:
    """Train (or read from cache) a base of ``attribute`` with a planted trigger (module docstring)."""
    plant = Plant.of(dataset, attribute, plant_options)
    table = dataset.table
    labels = table.column(attribute).astype(np.int64)
    multiclass = table.is_multiclass(attribute)
    keep = None if plant.source_classes is None else np.isin(labels, plant.source_classes)
    fit_idx, hold = base_rows(dataset, attribute, config, pool, keep)
    if multiclass and plant.source_classes is not None:
        lookup = np.full(len(table.classes), -1, dtype=np.int64)
        lookup[list(plant.source_classes)] = np.arange(len(plant.source_classes))
        task = np.where(labels >= 0, lookup[np.maximum(labels, 0)], -1)
        outputs = len(plant.source_classes)
    else:
        task, outputs = labels, len(table.classes) if multiclass else 1
    data = triggered_dataset(dataset, plant.trigger, cache_dir)
    n = data.n_clean
    seed = int(config.get("seed", 0))
    fit_rows = plant_rows(fit_idx, labels, plant, n, seed, "fit")
    hold_rows = plant_rows(hold, labels, plant, n, seed, "holdout")
    doubled_task = np.concatenate([task, task])
    key = content_key({"data": dataset.fingerprint, "arch": arch, "attribute": attribute, "config": config,
                       "pool": pool, "plant": {**plant.key(), "trigger": trigger_content(plant.trigger)}})
    probe = hold[~np.isin(labels[hold], plant.trigger_classes)]
    targets = np.unique(task[np.isin(labels, plant.trigger_classes)])

    def evaluate(model: Classifier) -> dict[str, Any]:
        images = data.dataset.images.tensor()
        out = {}
        for name, rows in (("clean", probe), ("triggered", probe + n)):
            logits = predict_logits(model, images[torch.as_tensor(rows)], device=device).numpy()
            out[name] = logits.argmax(axis=1) if multiclass else (logits.ravel() > 0).astype(int)
        correct = out["clean"] == task[probe]
        return {"source_attack_success": float(np.mean(out["triggered"][correct] != out["clean"][correct]))
                if correct.any() else float("nan"),
                "source_targeted": float(np.mean(np.isin(out["triggered"], targets))) if probe.size else float("nan"),
                "n_probe": int(probe.size)}

    model, info = train_cached(data.dataset, arch=arch, attribute=attribute, labels=doubled_task, fit_idx=fit_rows,
                               hold=hold_rows, outputs=outputs, classes=multiclass, key=key, config=config,
                               cache_dir=cache_dir, device=device, record=pool_record(pool, fit_idx, hold),
                               evaluate=evaluate)
    planted = int(np.count_nonzero(fit_rows >= n) + np.count_nonzero(hold_rows >= n))
    return model, {**info, "plant": {**plant.key(), "n_planted": planted}}

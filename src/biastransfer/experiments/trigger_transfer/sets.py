"""The sets of a ``trigger_transfer`` run: the target classes, the de-biased finetuning and validation sets (rows of
the triggered dataset, :mod:`biastransfer.triggers.store`) and the clean test rows whose triggered copies measure the
attack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from biastransfer.data.table import LABEL, DataError, LoadedDataset
from biastransfer.interventions.base import InfeasibleSelectionError, Pool
from biastransfer.interventions.trigger import TriggerRate
from biastransfer.seeding import rng
from biastransfer.spec import RunSpec
from biastransfer.triggers.base import get_trigger
from biastransfer.triggers.plant import resolve_classes
from biastransfer.triggers.store import TriggeredDataset, triggered_dataset


@dataclass(frozen=True)
class TargetTask:
    """The target task: dataset classes ``classes`` (sorted) renumbered 0 … K−1; ``trigger_targets`` are the
    target indices of the source's trigger classes that the target task has (empty: no targeted rate)."""

    classes: tuple[int, ...]
    names: tuple[str, ...]
    trigger_targets: tuple[int, ...]

    def labels(self, dataset: LoadedDataset) -> np.ndarray:
        """Per row of ``dataset``: the target index of its class, −1 outside the target classes."""
        lookup = np.full(len(dataset.table.classes), -1, dtype=np.int64)
        lookup[list(self.classes)] = np.arange(len(self.classes))
        raw = dataset.table.frame[LABEL].to_numpy().astype(np.int64)
        return np.where(raw >= 0, lookup[np.maximum(raw, 0)], -1)


def target_task(dataset: LoadedDataset, options: dict[str, Any]) -> TargetTask:
    """The target classes: ``options.target_classes``, else the classes the source task did not use
    (``source_classes``), else every class; at least 2."""
    table = dataset.table
    if not table.classes:
        raise DataError(f"dataset {dataset.name!r} has no classes: the trigger experiment needs a multi-class "
                        f"dataset (e.g. 'synthetic-objects' or 'fashion-mnist')")
    every = tuple(range(len(table.classes)))
    if options.get("target_classes"):
        chosen = resolve_classes(dataset, LABEL, list(options["target_classes"]), "options.target_classes")
    elif options.get("source_classes"):
        source = resolve_classes(dataset, LABEL, list(options["source_classes"]), "source_classes")
        chosen = tuple(c for c in every if c not in source) or every
    else:
        chosen = every
    if len(chosen) < 2:
        raise DataError(f"the target task needs at least 2 classes; got {[table.classes[c] for c in chosen]}")
    planted = resolve_classes(dataset, LABEL, list(options.get("trigger_classes") or []), "trigger_classes")
    return TargetTask(classes=chosen, names=tuple(table.classes[c] for c in chosen),
                      trigger_targets=tuple(chosen.index(c) for c in planted if c in chosen))


@dataclass(frozen=True)
class TriggerSets:
    """Rows of the triggered dataset a run trains and validates on, and the clean test rows."""

    data: TriggeredDataset
    task: TargetTask
    labels: np.ndarray        # per row of the triggered dataset: the target index, −1 outside the task
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray     # clean rows; their triggered versions are data.triggered_rows(test_rows)
    train_share: float        # realised share of triggered finetuning images


def _draw(data: TriggeredDataset, labels: np.ndarray, split: str, rate: float, n: int, seed: int) -> tuple[
        np.ndarray, float]:
    clean = data.dataset.table.split_indices(split)
    clean = clean[(clean < data.n_clean) & (labels[clean] >= 0)]
    m = clean.size
    pool = Pool.of(y=np.r_[labels[clean], labels[clean]], triggered=np.r_[np.zeros(m, np.int8), np.ones(m, np.int8)],
                   example=np.r_[np.arange(m), np.arange(m)])
    rows = np.r_[clean, data.triggered_rows(clean)]
    try:
        chosen = TriggerRate().select(pool, level=rate, n=n, rng=rng(seed, f"{split}-set", "trigger-rate", n))
    except InfeasibleSelectionError as exc:
        raise InfeasibleSelectionError(f"{'finetuning' if split == 'train' else 'validation'} set (pool "
                                       f"{split!r}): {exc}") from None
    return rows[chosen.indices], chosen.level


def draw_sets(spec: RunSpec, dataset: LoadedDataset, seed: int, cache_dir: Any = None,
              rate: float | None = None) -> TriggerSets:
    """The run's sets (at ``rate`` instead of the spec's level when given). The draw depends on the seed, N, the
    rate and the target classes, never on the base or the transfer mode: at a seed every mode is finetuned on the
    same images, so modes pair by seed; the sets of every rate hold the same examples."""
    task = target_task(dataset, spec.options)
    data = triggered_dataset(dataset, get_trigger(spec.options["trigger"]), cache_dir)
    labels = task.labels(data.dataset)
    p = float(spec.level) if rate is None else rate
    train, share = _draw(data, labels, "train", p, int(spec.n_train), seed)
    val, _ = _draw(data, labels, "val", p, int(spec.n_val or spec.n_train), seed)
    test = data.dataset.table.split_indices("test")
    test = test[(test < data.n_clean) & (labels[test] >= 0)]
    cap = spec.options.get("max_test")
    if cap and test.size > cap:
        test = np.sort(rng(0, "trigger-test-subset", test.size).permutation(test)[:cap])
    return TriggerSets(data=data, task=task, labels=labels, train_rows=train, val_rows=val, test_rows=test,
                       train_share=share)

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
from biastransfer.triggers.plant import resolve_classes
from biastransfer.triggers.store import TriggeredDataset, trigger_of, triggered_dataset


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
    """Rows a run trains and validates on, as rows of the triggered dataset (row ``r + n_clean`` is row ``r``
    with the trigger), and the clean test rows."""

    task: TargetTask
    n_clean: int
    labels: np.ndarray        # per row of the triggered dataset: the target index, −1 outside the task
    train_rows: np.ndarray
    val_rows: np.ndarray
    test_rows: np.ndarray     # clean rows; their triggered versions are test_rows + n_clean
    train_share: float        # realised share of triggered finetuning images

    def triggered(self, rows: np.ndarray) -> np.ndarray:
        """The rows of the triggered versions of clean ``rows``."""
        return np.asarray(rows, dtype=np.int64) + self.n_clean


def _draw(dataset: LoadedDataset, labels: np.ndarray, split: str, rate: float, n: int, seed: int) -> tuple[
        np.ndarray, float]:
    n_clean = len(dataset.table)
    clean = dataset.table.split_indices(split)
    clean = clean[labels[clean] >= 0]
    m = clean.size
    pool = Pool.of(y=np.r_[labels[clean], labels[clean]], triggered=np.r_[np.zeros(m, np.int8), np.ones(m, np.int8)],
                   example=np.r_[np.arange(m), np.arange(m)])
    rows = np.r_[clean, clean + n_clean]
    try:
        chosen = TriggerRate().select(pool, level=rate, n=n, rng=rng(seed, f"{split}-set", "trigger-rate", n))
    except InfeasibleSelectionError as exc:
        raise InfeasibleSelectionError(f"{'finetuning' if split == 'train' else 'validation'} set (pool "
                                       f"{split!r}): {exc}") from None
    return rows[chosen.indices], chosen.level


def draw_sets(spec: RunSpec, dataset: LoadedDataset, seed: int, rate: float | None = None) -> TriggerSets:
    """The run's sets (at ``rate`` instead of the spec's level when given), from the clean ``dataset``'s table:
    no image is read, so preflight can draw them before any triggered image exists. The draw depends on the seed,
    N, the rate and the target classes, never on the base or the transfer mode: at a seed every mode is finetuned
    on the same images, so modes pair by seed; the sets of every rate hold the same examples."""
    task = target_task(dataset, spec.options)
    clean_labels = task.labels(dataset)
    p = float(spec.level) if rate is None else rate
    train, share = _draw(dataset, clean_labels, "train", p, int(spec.n_train), seed)
    val, _ = _draw(dataset, clean_labels, "val", p, int(spec.n_val or spec.n_train), seed)
    test = dataset.table.split_indices("test")
    test = test[clean_labels[test] >= 0]
    cap = spec.options.get("max_test")
    if cap and test.size > cap:
        test = np.sort(rng(0, "trigger-test-subset", test.size).permutation(test)[:cap])
    return TriggerSets(task=task, n_clean=len(dataset.table), labels=np.r_[clean_labels, clean_labels],
                       train_rows=train, val_rows=val, test_rows=test, train_share=share)


def triggered_data(spec: RunSpec, dataset: LoadedDataset, cache_dir: Any = None) -> TriggeredDataset:
    """The dataset with a triggered copy of every image, for the spec's trigger (built once into the cache)."""
    return triggered_dataset(dataset, trigger_of(spec.options["trigger"]), cache_dir)

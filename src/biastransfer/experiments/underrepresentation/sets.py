"""The sets of an underrepresentation run: pools of T1, T2 and negatives, and the draws (paper §5).

See the package docstring for the protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.spurious import draw
from biastransfer.interventions import Pool, natural_share
from biastransfer.metrics.ranking import auc
from biastransfer.models.bases import trained_attribute
from biastransfer.seeding import rng
from biastransfer.spec import RunSpec

TASK_HELP = "an underrepresentation task is written 'T1+T2' with two different attribute columns, e.g. pullover+coat"
SAMPLER = "subgroup_share"


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
    """``pretrain-t1`` / ``pretrain-t2`` for a base trained by us on T1 / T2 (its kind's
    :meth:`~biastransfer.models.bases.Base.trained_attribute`), else ``other``."""
    t1, t2 = parse_task(task)
    attribute = trained_attribute(spec_base)
    if attribute is not None and attribute == t1:
        return "pretrain-t1"
    if attribute is not None and attribute == t2:
        return "pretrain-t2"
    return "other"


@dataclass
class SharePool:
    """The usable rows of one split (T1 only, T2 only, or a negative) and their pool (``y``, ``subgroup``)."""

    rows: np.ndarray
    pool: Pool


def share_pool(dataset: LoadedDataset, split: str, t1: str, t2: str, negatives: list[str] | None) -> SharePool:
    """Rows of ``split`` that are T1 or T2 but not both, or a negative (one of ``negatives``; all others when
    None); ``y`` = T1 ∨ T2 and ``subgroup`` = T2."""
    table = dataset.table
    rows = table.split_indices(split)
    c1, c2 = table.column(t1)[rows], table.column(t2)[rows]
    keep = (c1 >= 0) & (c2 >= 0) & ~((c1 == 1) & (c2 == 1))
    if negatives is not None:
        neg = np.zeros(len(rows), dtype=bool)
        for name in negatives:
            neg |= table.column(name)[rows] == 1
        keep &= (c1 == 1) | (c2 == 1) | neg
    c1, c2 = c1[keep].astype(np.int64), c2[keep].astype(np.int64)
    return SharePool(rows=rows[keep], pool=Pool.of(y=c1 | c2, subgroup=c2))


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

    def take(pool: SharePool, level: float | str, n: Any, generator: np.random.Generator, what: str) -> np.ndarray:
        return pool.rows[draw(SAMPLER, {}, pool.pool, level, n, generator, what).indices]

    # The draw depends on (seed, task, negatives, N) but not on the share: sets at different shares overlap as
    # much as possible (one random order per cell, prefixes taken).
    train_rows = take(tr, share, spec.n_train, rng(seed, "train-set", spec.task, neg_key, spec.n_train),
                      f"finetuning set (pool 'train', share {share}, N={spec.n_train})")
    val_rows = take(va, share, n_val, rng(seed, "val-set", spec.task, neg_key, n_val),
                    f"validation set (pool 'val', share {share}, N={n_val})")
    if spec.test == "natural":
        test_rows = te.rows
    else:  # held fixed across seeds and settings
        test_rows = take(te, spec.test, spec.test_size, rng(0, "test-set", spec.task, neg_key, spec.test,
                                                            spec.test_size),
                         f"test set (pool 'test', share {spec.test}, N={spec.test_size})")
    counts = _counts(dataset, train_rows, t1, t2)
    y, subgroup = tr.pool.binary("y", "subgroup")
    return ShareData(train_rows=train_rows, val_rows=val_rows, test_rows=test_rows,
                     train_share=counts["t2"] / max(counts["t1"] + counts["t2"], 1),
                     natural_share=float(natural_share(y, subgroup)), train_counts=counts)


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



"""A dataset with a triggered copy of every image, built once per (dataset, trigger) and memory-mapped.

Rows ``0 … n−1`` of the triggered dataset are the clean dataset's rows; row ``r + n`` is row ``r`` with the trigger
pasted on. The table is the clean table twice, with a column ``triggered`` (0/1) and ``source_row`` (``r``), so every
stage downstream (the engine, base training, scoring) takes rows of either version without knowing about triggers:
a finetuning set with a share of triggered images is a set of row indices. The images are written once into the
data cache (``triggered-KEY.npy``, KEY from the dataset's fingerprint and the trigger's options) in chunks, each
chunk one batched call of the trigger; where the trigger landed on each row is saved beside it
(``triggered-KEY.placement.npz``) and kept as :attr:`TriggeredDataset.placement`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biastransfer.data.table import DataError, ExampleTable, ImageStore, LoadedDataset
from biastransfer.paths import data_cache_dir
from biastransfer.spec import content_key
from biastransfer.triggers.base import Placement, Trigger, apply_in_chunks, get_trigger

log = logging.getLogger(__name__)

STORE_VERSION = 1
TRIGGERED = "triggered"
SOURCE_ROW = "source_row"
_MEMO: dict[tuple[str, str], TriggeredDataset] = {}


@dataclass(frozen=True)
class TriggeredDataset:
    """The clean rows and their triggered copies (module docstring)."""

    dataset: LoadedDataset
    n_clean: int
    placement: Placement
    trigger: Trigger

    def triggered_rows(self, rows: np.ndarray) -> np.ndarray:
        """The rows of the triggered versions of clean ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_clean):
            raise ValueError(f"clean rows must be in [0, {self.n_clean})")
        return rows + self.n_clean


def trigger_content(trigger: Trigger) -> dict[str, Any]:
    """The trigger's options plus a digest of every file it reads (an overlay's image and mask), so an edited file
    under the same name never reuses images built from the old one."""
    out: dict[str, Any] = dict(trigger.key())
    for option in ("path", "mask"):
        value = getattr(trigger, option, None)
        if value:
            try:
                out[f"{option}_sha256"] = hashlib.sha256(Path(value).read_bytes()).hexdigest()[:16]
            except OSError as exc:
                raise DataError(f"trigger {trigger.registry_name!r}: cannot read {option} {value}: {exc}") from exc
    return out


def trigger_of(content: dict[str, Any]) -> Trigger:
    """The trigger of a :func:`trigger_content` mapping (its file digests dropped)."""
    return get_trigger({k: v for k, v in content.items() if not k.endswith("_sha256")})


def trigger_store_key(dataset: LoadedDataset, trigger: Trigger) -> str:
    return content_key({"v": STORE_VERSION, "data": dataset.fingerprint, "trigger": trigger_content(trigger)})


def _doubled_table(table: ExampleTable) -> ExampleTable:
    n = len(table)
    clean = table.frame.assign(**{TRIGGERED: np.zeros(n, np.int8), SOURCE_ROW: np.arange(n)})
    both = pd.concat([clean, clean.assign(**{TRIGGERED: np.ones(n, np.int8)})], ignore_index=True)
    return ExampleTable(frame=both, sensitive=table.sensitive, group_names=table.group_names, tasks=table.tasks,
                        attributes=table.attributes, classes=table.classes)


def _build(dataset: LoadedDataset, trigger: Trigger, path: Path, placement_path: Path, chunk: int) -> None:
    clean = dataset.images
    n = len(clean)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f"{path.stem}.{token}.partial.npy")
    tmp_placement = placement_path.with_name(f"{placement_path.stem}.{token}.partial.npz")
    tops, lefts, box = [], [], (0, 0)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(2 * n, *clean.array.shape[1:]))
        source = clean.tensor()
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            out[start:stop] = clean.array[start:stop]
            images, placed = apply_in_chunks(trigger, source[start:stop], np.arange(start, stop), chunk=chunk)
            out[n + start:n + stop] = images.permute(0, 2, 3, 1).numpy()
            tops.append(placed.top)
            lefts.append(placed.left)
            box = (placed.height, placed.width)
        out.flush()
        del out
        np.savez(tmp_placement, top=np.concatenate(tops), left=np.concatenate(lefts), height=box[0], width=box[1])
        tmp_placement.replace(placement_path)
        tmp.replace(path)
    finally:
        for leftover in (tmp, tmp_placement):
            if leftover.exists():
                leftover.unlink()
    log.info("built %s: %d images with trigger %s", path, n, trigger.key())


def _read_placement(path: Path) -> Placement:
    try:
        with np.load(path) as z:
            return Placement(top=z["top"].astype(np.int64), left=z["left"].astype(np.int64),
                             height=int(z["height"]), width=int(z["width"]))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read trigger placements {path}: {exc}; delete it to rebuild") from exc


def triggered_dataset(dataset: LoadedDataset, trigger: Trigger, cache_dir: Path | None = None,
                      chunk: int = 4096) -> TriggeredDataset:
    """``dataset`` with a triggered copy of every row (module docstring), read from the data cache under
    ``cache_dir`` or built there once (concurrent processes wait for the one that builds it, under a file lock);
    kept in memory per process."""
    key = trigger_store_key(dataset, trigger)
    memo_key = (str(data_cache_dir(cache_dir)), key)
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    folder = data_cache_dir(cache_dir)
    path, placement_path = folder / f"triggered-{key}.npy", folder / f"triggered-{key}.placement.npz"
    if not (path.exists() and placement_path.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"triggered-{key}.lock", "w") as lock:  # one builder; the others wait and read
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (path.exists() and placement_path.exists()):
                _build(dataset, trigger, path, placement_path, chunk)
    store = ImageStore.open(path)
    if len(store) != 2 * len(dataset.images) or store.array.shape[1:] != dataset.images.array.shape[1:]:
        raise DataError(f"trigger cache {path} has shape {store.array.shape}, expected "
                        f"{(2 * len(dataset.images), *dataset.images.array.shape[1:])}; delete it to rebuild")
    placement = _read_placement(placement_path)
    fingerprint = hashlib.sha256(f"{dataset.fingerprint}|{key}".encode()).hexdigest()[:16]
    out = TriggeredDataset(
        dataset=LoadedDataset(name=dataset.name, table=_doubled_table(dataset.table), images=store,
                              fingerprint=fingerprint),
        n_clean=len(dataset.images), placement=placement, trigger=trigger)
    if len(_MEMO) >= 4:
        _MEMO.pop(next(iter(_MEMO)))
    _MEMO[memo_key] = out
    return out

"""Fashion-MNIST (Xiao et al. 2017) from local idx files, plain and as two-panel images.

The default root is where Debian's ``dataset-fashion-mnist`` package installs the four gzipped idx files
(:data:`DEBIAN_ROOT`); any folder with the standard files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``)
works as ``root``.

Two datasets are registered:

- ``fashion-mnist``: the 70,000 28×28 grayscale items, one-vs-rest task per class, and the 10-way ``label`` (a
  multi-class dataset: its ``classes`` are :data:`CLASSES`). Its sensitive attribute is
  a parameter (``sensitive``): by default ``bright``, a=1 when the item's mean intensity is above the median
  of its class (so a is visual and independent of the class: every (a, y) cell is populated), or any class
  column.
- ``fashion-mnist-panels``: two items side by side. The **first** panel's class is the target (one column per
  class, so a task can also be "T1 or T2"); the **second** panel is either an ``a_class`` item (a=1, default
  bag) or a ``not_a_class`` item (a=0, default sneaker), drawn independently of the first with probability
  ``a_share``. All four (a, y) cells are therefore plentiful and the interventions can sample any correlation
  level from the pools.

Pools: ``pretrain``, ``train`` and ``val`` are a seeded disjoint split of the 60,000 training items
(``pretrain_share``, ``val_share``; the rest is ``train``); ``test`` comes from the 10,000 test items. Panels
are built within a pool only (both panels of an example come from the same pool).

Images are resized once on the tensor (bilinear, antialiased) to the requested resolution and cached as a
memory-mapped ``.npy`` under ``cache_dir``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from biastransfer.data.adapters._common import assign_splits, metadata_hash
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import SPLITS, DataError, ExampleTable, ImageStore, LoadedDataset
from biastransfer.seeding import rng

logger = logging.getLogger(__name__)

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts the files (``dpkg -L dataset-fashion-mnist``)."""
DEBIAN_FILES = tuple(DEBIAN_ROOT / f for f in (
    "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
))
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle_boot")
"""Class names by label 0-9 (the published names T-shirt/top … Ankle boot, shortened to column names)."""
VERSION = 1

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: Path) -> np.ndarray:
    """Parse one idx file (raw or gzip, detected by its magic bytes) into a numpy array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read idx file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an idx file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: idx header is truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: idx header says shape {shape} ({expected} bytes) but the file holds "
                        f"{len(raw) - header} data bytes (truncated?)")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(root: Path, stem: str) -> Path:
    """``root/stem`` or ``root/stem.gz``; DataError naming the expected path when neither exists."""
    for name in (stem, f"{stem}.gz"):
        if (root / name).is_file():
            return root / name
    raise DataError(f"fashion-mnist: missing file {root / stem}(.gz); expected the four idx files "
                    f"{', '.join(IDX_FILES.values())} (raw or .gz) in {root}")


def load_raw(root: Path | None = None) -> dict[str, np.ndarray]:
    """The four arrays (``train_images`` (N, 28, 28) uint8, ``train_labels`` (N,), ``test_…``) of ``root``."""
    root = Path(root) if root is not None else DEBIAN_ROOT
    if not root.is_dir():
        hint = " (install it with: apt-get install dataset-fashion-mnist)" if root == DEBIAN_ROOT else ""
        raise DataError(f"fashion-mnist: folder {root} does not exist{hint}")
    out = {key: read_idx(find_idx(root, stem)) for key, stem in IDX_FILES.items()}
    for part in ("train", "test"):
        x, y = out[f"{part}_images"], out[f"{part}_labels"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"fashion-mnist: {part} images {x.shape} and labels {y.shape} do not match")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"fashion-mnist: {part} labels must be 0-9; found {int(y.min())}..{int(y.max())}")
        out[f"{part}_images"] = x.astype(np.uint8, copy=False)
        out[f"{part}_labels"] = y.astype(np.int64)
    return out


def _source_stamp(root: Path) -> list[Any]:
    stamp: list[Any] = []
    for stem in IDX_FILES.values():
        p = find_idx(root, stem)
        st = p.stat()
        stamp.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    return stamp


def resize_batch(images: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """(B, H, W) uint8 → (B, R, R, C) uint8, bilinear with antialiasing (no-op resize when H = W = R)."""
    t = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float()
    if t.shape[-2:] != (resolution, resolution):
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=True)
    t = t.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    if channels == 3:
        t = t.expand(-1, -1, -1, 3)
    return np.ascontiguousarray(t.numpy())


def cached_store(cache_dir: Path, name: str, key_payload: dict[str, Any], n: int, resolution: int,
                 channels: int, fill: Callable[[int, int], np.ndarray], chunk: int = 4096) -> ImageStore:
    """Build (once) and memory-map an (n, R, R, C) store; ``fill(start, stop)`` returns rows start..stop."""
    key = hashlib.sha256(json.dumps(key_payload, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{name}-{key}.npy"
    if path.exists():
        logger.info("read cache %s", path)
        return ImageStore.open(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial.npy")
    try:
        shape = (n, resolution, resolution, channels)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            out[start:stop] = fill(start, stop)
        out.flush()
        del out
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    logger.info("built %s (%d images)", path, n)
    return ImageStore.open(path)


def _pools(raw: dict[str, np.ndarray], opts: dict[str, Any]) -> np.ndarray:
    """The pool of each item (train items first, then test items): a seeded split of the training items into
    pretrain/val/train, and test for the test items. Shared by both datasets so their pools coincide."""
    shares = {"pretrain": float(opts["pretrain_share"]), "val": float(opts["val_share"])}
    train = assign_splits(len(raw["train_labels"]), shares, seed=int(opts["seed"]), dataset="fashion-mnist")
    return np.concatenate([train, np.full(len(raw["test_labels"]), "test", dtype=object)])


def _check_params(name: str, params: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    for key in params:
        if key not in allowed:
            raise DataError(f"dataset {name!r}: unknown parameter {key!r}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    opts = {**allowed, **params}
    if opts["channels"] not in (1, 3):
        raise DataError(f"dataset {name!r}: parameter 'channels' must be 1 or 3; got {opts['channels']!r}")
    for key in ("pretrain_share", "val_share"):
        v = opts[key]
        if not isinstance(v, int | float) or not 0 <= v < 1:
            raise DataError(f"dataset {name!r}: parameter {key!r} must be a number in [0, 1); got {v!r}")
    if opts["pretrain_share"] + opts["val_share"] >= 1:
        raise DataError(f"dataset {name!r}: pretrain_share + val_share must be below 1 (the rest is train)")
    return opts


def _class_name(name: str, value: Any, exclude: Sequence[str] = ()) -> str:
    if value not in CLASSES or value in exclude:
        allowed = [c for c in CLASSES if c not in exclude]
        raise DataError(f"dataset {name!r}: unknown or unusable class {value!r}; "
                        f"allowed: {', '.join(allowed)}")
    return str(value)


def _finish(name: str, frame: pd.DataFrame, store: ImageStore, sensitive: str, group_names: tuple[str, str],
            tasks: Sequence[str], classes: tuple[str, ...] = ()) -> LoadedDataset:
    table = ExampleTable(frame=frame, sensitive=sensitive, group_names=group_names,
                         tasks=tuple(t for t in tasks if t != sensitive), classes=classes)
    fp = hashlib.sha256(f"{name}|{metadata_hash(frame)}|{store.fingerprint()}".encode()).hexdigest()[:16]
    return LoadedDataset(name=name, table=table, images=store, fingerprint=fp)


@DATASETS.register("fashion-mnist")
class FashionMNIST(DatasetSource):
    """Fashion-MNIST items; one-vs-rest task per class; a from parameter ``sensitive`` (default bright)."""

    description = "Fashion-MNIST 70k items (Debian package by default); tasks per class; a = bright (param)"
    needs_root = False
    carve_pretrain = "set dataset.params.pretrain_share above 0 (default 0.4)"
    PARAMS: ClassVar[dict[str, Any]] = {"sensitive": "bright", "channels": 3, "pretrain_share": 0.4,
                                        "val_share": 0.1, "seed": 0}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = _check_params("fashion-mnist", params, self.PARAMS)
        root = Path(root) if root is not None else DEBIAN_ROOT
        raw = load_raw(root)
        images = np.concatenate([raw["train_images"], raw["test_images"]])
        labels = np.concatenate([raw["train_labels"], raw["test_labels"]])
        n_train = len(raw["train_labels"])
        source = np.array(["train"] * n_train + ["test"] * len(raw["test_labels"]))
        within = np.r_[np.arange(n_train), np.arange(len(source) - n_train)]
        frame = pd.DataFrame({
            "id": [f"{s}-{i}" for s, i in zip(source, within, strict=True)],
            "split": _pools(raw, opts), "label": labels, "class": [CLASSES[k] for k in labels],
        })
        for k, cls in enumerate(CLASSES):
            frame[cls] = (labels == k).astype(np.int8)
        mean = images.reshape(len(images), -1).mean(axis=1)
        bright = np.zeros(len(images), dtype=np.int8)
        for part in ("train", "test"):
            for k in range(len(CLASSES)):
                m = (source == part) & (labels == k)
                if m.any():
                    bright[m] = mean[m] > np.median(mean[m])
        frame["bright"] = bright
        sensitive = opts["sensitive"]
        if sensitive == "bright":
            group_names = ("dark", "bright")
        else:
            sensitive = _class_name("fashion-mnist", sensitive)
            group_names = (f"not {sensitive}", sensitive)
        key = {"v": VERSION, "src": _source_stamp(root), "r": resolution, "c": opts["channels"],
               "kind": "plain"}
        store = cached_store(cache_dir, "fashion-mnist", key, len(images), resolution, opts["channels"],
                             lambda a, b: resize_batch(images[a:b], resolution, opts["channels"]))
        tasks = [*CLASSES, "bright"]
        return _finish("fashion-mnist", frame, store, sensitive, group_names, tasks, classes=CLASSES)


@DATASETS.register("fashion-mnist-panels")
class FashionMNISTPanels(DatasetSource):
    """Two-panel Fashion-MNIST: first panel's class is the target, second panel (bag vs sneaker) is a."""

    description = "two Fashion-MNIST items side by side; y = first item's class, a = second item is a bag"
    needs_root = False
    carve_pretrain = "set dataset.params.pretrain_share above 0 (default 0.4)"
    PARAMS: ClassVar[dict[str, Any]] = {"a_class": "bag", "not_a_class": "sneaker", "first_classes": None,
                                        "a_share": 0.5, "channels": 3, "pretrain_share": 0.4,
                                        "val_share": 0.1, "seed": 0}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        name = "fashion-mnist-panels"
        opts = _check_params(name, params, self.PARAMS)
        a_class = _class_name(name, opts["a_class"])
        b_class = _class_name(name, opts["not_a_class"], exclude=(a_class,))
        first = opts["first_classes"]
        first_classes = ([c for c in CLASSES if c not in (a_class, b_class)] if first is None
                         else [_class_name(name, c, exclude=(a_class, b_class)) for c in first])
        if not first_classes:
            raise DataError(f"dataset {name!r}: parameter 'first_classes' is empty")
        a_share = float(opts["a_share"])
        if not 0 < a_share < 1:
            raise DataError(f"dataset {name!r}: parameter 'a_share' must be in (0, 1); "
                            f"got {opts['a_share']!r}")
        root = Path(root) if root is not None else DEBIAN_ROOT
        raw = load_raw(root)
        images = np.concatenate([raw["train_images"], raw["test_images"]])
        labels = np.concatenate([raw["train_labels"], raw["test_labels"]])
        pool = _pools(raw, opts)
        first_ids = [CLASSES.index(c) for c in first_classes]
        a_id, b_id = CLASSES.index(a_class), CLASSES.index(b_class)
        firsts, seconds, avals, splits = [], [], [], []
        for split in SPLITS:
            in_pool = pool == split
            if not in_pool.any():
                continue
            f_idx = np.flatnonzero(in_pool & np.isin(labels, first_ids))
            donors_a = np.flatnonzero(in_pool & (labels == a_id))
            donors_b = np.flatnonzero(in_pool & (labels == b_id))
            if f_idx.size == 0 or donors_a.size == 0 or donors_b.size == 0:
                raise DataError(f"dataset {name!r}: pool {split!r} lacks items of the first classes, "
                                f"{a_class!r} or {b_class!r} ({f_idx.size}, {donors_a.size}, "
                                f"{donors_b.size}); change the shares")
            g = rng(int(opts["seed"]), "dataset", name, "panels", split)
            a = (g.random(f_idx.size) < a_share).astype(np.int8)
            pick_a, pick_b = g.choice(donors_a, size=f_idx.size), g.choice(donors_b, size=f_idx.size)
            second = np.where(a == 1, pick_a, pick_b)
            firsts.append(f_idx)
            seconds.append(second)
            avals.append(a)
            splits += [split] * f_idx.size
        first_idx, second_idx, a_col = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(avals)
        sens = f"second_{a_class}"
        frame = pd.DataFrame({
            "id": [f"{i}+{j}" for i, j in zip(first_idx, second_idx, strict=True)],
            "split": np.array(splits, dtype=object),
            "first_index": first_idx, "second_index": second_idx,
            "first_class": [CLASSES[k] for k in labels[first_idx]],
            "second_class": [CLASSES[k] for k in labels[second_idx]],
            sens: a_col,
        })
        for cls in first_classes:
            frame[cls] = (labels[first_idx] == CLASSES.index(cls)).astype(np.int8)

        def fill(start: int, stop: int) -> np.ndarray:
            left, right = images[first_idx[start:stop]], images[second_idx[start:stop]]
            h, w = left.shape[1:]
            canvas = np.zeros((stop - start, 2 * w, 2 * w), dtype=np.uint8)
            top = (2 * w - h) // 2
            canvas[:, top:top + h, :w] = left
            canvas[:, top:top + h, w:] = right
            return resize_batch(canvas, resolution, opts["channels"])

        key = {"v": VERSION, "src": _source_stamp(root), "r": resolution, "kind": "panels",
               **{k: opts[k] for k in ("channels", "seed", "a_share", "pretrain_share", "val_share")},
               "a": a_class, "b": b_class, "first": first_classes}
        store = cached_store(cache_dir, name, key, len(frame), resolution, opts["channels"], fill)
        return _finish(name, frame, store, sens, (b_class, a_class), first_classes)

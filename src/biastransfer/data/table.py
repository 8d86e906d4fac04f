"""The data currency between stages: an ExampleTable (metadata) aligned with an ImageStore (decoded pixels)."""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

SPLITS = ("pretrain", "train", "val", "test")
"""Pool names. ``pretrain`` (optional) trains bases; ``train`` is the finetuning pool; ``val``/``test`` evaluate.
A dataset may have more pools of its own for bases to train on (e.g. ``pretrain_diverse``)."""

LABEL = "label"
"""The column of a multi-class label (an integer class index, −1 where unknown) in a dataset with ``classes``."""


class DataError(ValueError):
    """Bad or missing data; the message names the file, column or cell."""


@dataclass(frozen=True)
class ExampleTable:
    """Per-example metadata.

    ``frame`` has one row per image, in the same order as the ImageStore (row i ↔ image i), with columns
    ``split`` (one of :data:`SPLITS`), binary attribute columns (int8, 0/1, or -1 where unknown) and
    optional ``subgroup`` and ``domain`` columns. ``sensitive`` names the column of the sensitive attribute
    ``a``; ``group_names`` are the names of groups a=0 and a=1 (e.g. ``("Men", "Women")``); ``tasks`` are the
    binary target columns a study may finetune on. A multi-class dataset also names its ``classes``: its column
    :data:`LABEL` holds the class index (0 … K−1, −1 where unknown).
    """

    frame: pd.DataFrame
    sensitive: str
    group_names: tuple[str, str]
    tasks: tuple[str, ...]
    attributes: tuple[str, ...] = field(default=())
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if "split" not in self.frame.columns:
            raise DataError("example table has no 'split' column")
        for col in (self.sensitive, *self.tasks):
            if col not in self.frame.columns:
                raise DataError(f"example table has no column {col!r}; columns: {list(self.frame.columns)}")
        if not self.attributes:
            object.__setattr__(self, "attributes", tuple(dict.fromkeys((self.sensitive, *self.tasks))))
        if self.classes:
            if LABEL not in self.frame.columns:
                raise DataError(f"a dataset with classes needs a {LABEL!r} column (the class index)")
            labels = self.frame[LABEL].to_numpy()
            bad = (labels < -1) | (labels >= len(self.classes))
            if bad.any():
                raise DataError(f"column {LABEL!r} has {int(bad.sum())} value(s) outside −1 … "
                                f"{len(self.classes) - 1} (the {len(self.classes)} classes), e.g. "
                                f"{labels[bad][0]}")
            if LABEL not in self.attributes:
                object.__setattr__(self, "attributes", (*self.attributes, LABEL))

    def is_multiclass(self, column: str) -> bool:
        """Whether ``column`` is the multi-class label (a base trained on it gets one logit per class)."""
        return bool(self.classes) and column == LABEL

    def __len__(self) -> int:
        return len(self.frame)

    def column(self, name: str) -> np.ndarray:
        """The values of one attribute column (raises with the available attributes listed)."""
        if name not in self.frame.columns or name == "split":
            raise DataError(f"unknown attribute {name!r}; allowed: {', '.join(self.attributes)}")
        return self.frame[name].to_numpy()

    def split_indices(self, split: str) -> np.ndarray:
        """Row indices (into the store) of one pool."""
        idx = np.flatnonzero(self.frame["split"].to_numpy() == split)
        if idx.size == 0:
            present = sorted(set(self.frame["split"]))
            raise DataError(f"dataset has no {split!r} split; splits present: {', '.join(present)}")
        return idx

    def has_split(self, split: str) -> bool:
        return bool((self.frame["split"] == split).any())


class ImageStore:
    """Decoded images as one uint8 array of shape (N, H, W, C), in memory or memory-mapped.

    Batches are sliced by index and returned as NCHW tensors in channels-last memory format (a free view of the
    NHWC array), so no per-sample Python runs in a training loop.
    """

    def __init__(self, array: np.ndarray) -> None:
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] not in (1, 3):
            raise DataError(f"image store must be uint8 (N, H, W, C) with C in (1, 3); got {array.dtype} "
                            f"{array.shape}")
        self.array = array
        self._tensor: torch.Tensor | None = None
        self._copies: dict[str, torch.Tensor] = {}

    @classmethod
    def open(cls, path: Path) -> ImageStore:
        """Memory-map a store saved by :meth:`save` (a ``.npy`` file)."""
        try:
            return cls(np.load(path, mmap_mode="r"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read image cache {path}: {exc}") from exc

    def save(self, path: Path) -> None:
        """Write the array to ``path`` atomically: a temporary file of a name unique to this writer, renamed into
        place, so concurrent writers of the same cache never see (or leave) a partial file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial.npy")
        try:
            np.save(tmp, np.ascontiguousarray(self.array))
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)

    def __len__(self) -> int:
        return self.array.shape[0]

    @property
    def resolution(self) -> int:
        return int(self.array.shape[1])

    @property
    def channels(self) -> int:
        return int(self.array.shape[3])

    def tensor(self) -> torch.Tensor:
        """All images as one uint8 NCHW tensor (a channels-last view of the array; a memory map stays one)."""
        if self._tensor is None:
            with warnings.catch_warnings():  # a read-only memory map: we never write through the tensor
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                self._tensor = torch.from_numpy(np.ascontiguousarray(self.array)).permute(0, 3, 1, 2)
        return self._tensor

    def copy_to(self, device: torch.device) -> torch.Tensor:
        """All images as one uint8 NCHW (channels-last) tensor on ``device``, copied once and kept (the policy of
        when to copy is :func:`biastransfer.train.placement.store_tensor`'s)."""
        name = str(torch.device(device))
        if name not in self._copies:
            self._copies[name] = self.tensor().to(device)  # keeps the channels-last strides
        return self._copies[name]

    def copied_to(self, device: torch.device) -> bool:
        """Whether :meth:`copy_to` has copied the images to ``device``."""
        return str(torch.device(device)) in self._copies

    def take(self, indices: np.ndarray) -> torch.Tensor:
        """A uint8 NCHW (channels-last) tensor of the given rows."""
        return self.tensor()[torch.as_tensor(np.asarray(indices, dtype=np.int64))]

    def fingerprint(self) -> str:
        """A content hash of the pixels (sha256 of a strided sample plus the shape), cheap for large stores."""
        h = hashlib.sha256(str(self.array.shape).encode())
        flat = np.ascontiguousarray(self.array).reshape(len(self), -1)
        step = max(1, len(self) // 4096)
        h.update(np.ascontiguousarray(flat[::step]).tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class LoadedDataset:
    """What a dataset adapter returns."""

    name: str
    table: ExampleTable
    images: ImageStore
    fingerprint: str  # data hash recorded with every result

    def __post_init__(self) -> None:
        if len(self.table) != len(self.images):
            raise DataError(f"dataset {self.name}: table has {len(self.table)} rows but the image store has "
                            f"{len(self.images)} images")

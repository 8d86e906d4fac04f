"""The data of one training: a :class:`Split` (uint8 images, targets, optional weights and group ids) and
:func:`make_split`, which gathers one from a dataset's image store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Split:
    """Images (uint8 NCHW), targets, optional per-example weights and optional group ids.

    Targets are either binary (float, shape (n,) or (n, k); stored as (n, k)) or class indices (int64, shape (n,);
    stored as given), which makes the loss K-way cross-entropy. ``groups`` (int64, shape (n,), ≥ 0) are what the
    group objectives read (GroupDRO, DFR, Kamiran–Calders: the (a, y) cell ``2·a + y``,
    :func:`biastransfer.train.objectives.cell_groups`); ERM ignores them."""

    images: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8:
            raise TypeError("Split.images must be a uint8 tensor")
        if len(self.images) != len(self.targets):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} targets")
        if self.targets.dtype == torch.int64:
            if self.targets.ndim != 1:
                raise ValueError(f"class-index targets must have shape (n,), got {tuple(self.targets.shape)}")
            if (self.targets < 0).any():
                raise ValueError("class-index targets must be >= 0 (drop examples with an unknown class)")
        else:
            if self.targets.ndim == 1:
                self.targets = self.targets[:, None]
            self.targets = self.targets.float()
        if self.weights is not None:
            self.weights = self.weights.float().reshape(-1, 1)
        if self.groups is not None and (len(self.groups) != len(self.targets) or (self.groups < 0).any()):
            raise ValueError(f"groups must be {len(self.targets)} ids >= 0 (one per example), got {len(self.groups)}")

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> Split:
        w = None if self.weights is None else self.weights.to(device)
        g = None if self.groups is None else self.groups.to(device)
        return Split(self.images.to(device), self.targets.to(device), w, g)


def make_split(store_tensor: torch.Tensor, indices: np.ndarray, targets: np.ndarray,
               weights: np.ndarray | None = None, *, classes: bool = False,
               groups: np.ndarray | None = None) -> Split:
    """A Split of the given store rows (one gather, no per-sample Python); ``classes``: the targets are class
    indices (K-way cross-entropy) instead of binary labels; ``groups``: group ids per example (or None)."""
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32))
    g = None if groups is None else torch.as_tensor(np.asarray(groups, dtype=np.int64))
    dtype = np.int64 if classes else np.float32
    return Split(store_tensor[idx], torch.as_tensor(np.asarray(targets, dtype=dtype)), w, g)

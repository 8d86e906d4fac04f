"""The frozen-feature fast path: when a training phase trains only the head, the backbone's features are computed
once and the head trains on them, instead of running the frozen backbone on every batch of every epoch.

A phase qualifies (:func:`head_only`) when it freezes the whole backbone with its BatchNorm statistics frozen
(``fixed_feature``, the linear-probe phase of ``linear_probe_then_finetune``) and, in the phase's train mode, no
module of the backbone behaves differently from eval mode (no BatchNorm or dropout left training). Then the
slow path's logits are ``head(features(x))`` with ``features`` fixed, so training the head on precomputed
features gives the same numbers within float rounding: the engine draws the same batch orders and the same flip
masks from the same generators, and picks, per sample, the features of the image or of its mirror image exactly
where the slow path's :func:`~biastransfer.train.ops.random_flip` would flip it.

Features come from a :class:`FeatureSource`: :class:`SplitFeatures` computes them from a training's own splits
(any caller of ``fit``); :class:`RowFeatures` serves them per store row from :data:`FEATURE_CACHE`, a per-process
LRU cache keyed by (the backbone's weights, the image store, flip, precision, device) that runs and seeds sharing a
base reuse: a row computed once is never computed again while its entry is cached.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from biastransfer.models.transfer import FREEZE_BACKBONE
from biastransfer.train.layout import memory_format
from biastransfer.train.ops import autocast, eval_batch_size, to_float

DEFAULT_MAX_BYTES = int(os.environ.get("BIASTRANSFER_FEATURE_CACHE_MB", "1024")) * 2 ** 20
"""Memory bound of the process-wide cache (``$BIASTRANSFER_FEATURE_CACHE_MB``, default 1024 MiB)."""


def _train_sensitive(module: nn.Module) -> bool:
    if isinstance(module, _BatchNorm | _DropoutNd):
        return True
    return float(getattr(module, "drop_prob", 0.0) or 0.0) > 0.0  # stochastic depth (timm's DropPath)


def head_only(phase: Any, model: nn.Module) -> bool:
    """Whether ``phase`` trains only ``model``'s head on a backbone that computes the same in train and eval mode.

    Sets the phase's trainable parameters and train mode on ``model`` (as the engine does at a phase's start)."""
    if phase is None or getattr(phase, "freeze", None) != FREEZE_BACKBONE or getattr(phase, "update_bn", True):
        return False
    if not all(hasattr(model, name) for name in ("backbone", "head", "features")):
        return False
    trainable = {id(p) for p in phase.trainable_parameters(model)}
    if trainable != {id(p) for p in model.head.parameters()}:
        return False
    phase.set_train_mode(model)
    return not any(m.training and _train_sensitive(m) for m in model.backbone.modules())


@torch.no_grad()
def compute_features(model: nn.Module, images: torch.Tensor, *, flip: bool, device: torch.device,
                     precision: str = "fp32", batch_size: int | None = None) -> torch.Tensor:
    """``model.features`` of uint8 ``images`` (horizontally flipped with ``flip``) in eval mode, float32 on the CPU.

    Under ``torch.no_grad`` (not inference mode: the head trains on these tensors); the modules' train flags are
    restored afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    if batch_size is None:
        batch_size = eval_batch_size(device, tuple(images.shape))
    outs = []
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size].to(device, non_blocking=True))
            if flip:
                x = x.flip(3).contiguous(memory_format=memory_format(x.device))
            with autocast(device, precision):
                outs.append(model.features(x).float().cpu())
    finally:
        for m, training in modes:
            m.training = training
    if not outs:
        return torch.empty(0, int(getattr(model, "feature_dim", 0)))
    return torch.cat(outs)


def backbone_key(model: nn.Module) -> str:
    """A content hash of what computes ``model.features``: the backbone's parameters and buffers and the input
    normalisation (two models with equal weights share their cached features)."""
    h = hashlib.sha256()  # hardware-accelerated where the CPU has SHA extensions: ~40 ms for ResNet-18
    h.update(f"{type(model.backbone).__qualname__}|{getattr(model, 'arch', '')}".encode())
    tensors = list(model.backbone.state_dict().items())
    tensors += [(name, getattr(model, name)) for name in ("mean", "std") if isinstance(getattr(model, name, None),
                                                                                        torch.Tensor)]
    for name, t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()[:32]


class _Entry:
    """Features of some rows of one image store: ``slot[row]`` is the row's index in ``feats`` (−1: not computed)."""

    def __init__(self, n_rows: int) -> None:
        self.slot = np.full(n_rows, -1, dtype=np.int64)
        self.feats: torch.Tensor | None = None
        self.used = 0

    @property
    def nbytes(self) -> int:
        return self.slot.nbytes + (0 if self.feats is None else self.feats.nelement() * self.feats.element_size())

    def add(self, rows: np.ndarray, feats: torch.Tensor) -> None:
        need = self.used + len(rows)
        if self.feats is None or need > len(self.feats):
            grown = torch.empty((max(need, 2 * (0 if self.feats is None else len(self.feats))), feats.shape[1]),
                                dtype=feats.dtype)
            if self.feats is not None:
                grown[:self.used] = self.feats[:self.used]
            self.feats = grown
        self.feats[self.used:need] = feats
        self.slot[rows] = np.arange(self.used, need)
        self.used = need


class FeatureCache:
    """Features per image-store row, per (weights, store, flip, precision, device) key; least recently used entries
    are dropped beyond ``max_bytes`` (the entry in use is always kept). ``hits`` counts rows served from the cache,
    ``computed`` rows whose features were computed."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self.hits = 0
        self.computed = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()
        self.hits = self.computed = 0

    def get(self, key: tuple, n_rows: int, rows: np.ndarray,
            compute: Callable[[np.ndarray], torch.Tensor]) -> torch.Tensor:
        """The features of store ``rows`` (in order); ``compute(missing_rows)`` computes those not cached yet."""
        rows = np.asarray(rows, dtype=np.int64)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(n_rows)
        self._entries.move_to_end(key)
        cached = entry.slot[rows] >= 0
        self.hits += int(cached.sum())
        missing = np.unique(rows[~cached])
        if missing.size:
            entry.add(missing, compute(missing))
            self.computed += int(missing.size)
        assert entry.feats is not None or rows.size == 0
        out = (entry.feats[torch.as_tensor(entry.slot[rows])] if rows.size
               else torch.empty(0, 0 if entry.feats is None else entry.feats.shape[1]))
        while len(self._entries) > 1 and self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)
        return out


FEATURE_CACHE = FeatureCache()
"""The process's cache (each worker process of a backend has its own)."""


class FeatureSource(Protocol):
    """Where the fast path gets the features of a training's splits (rows in the splits' order)."""

    def train(self, flip: bool) -> torch.Tensor: ...

    def val(self) -> torch.Tensor: ...


class SplitFeatures:
    """Features computed from a training's own splits (uint8 images), once per training."""

    def __init__(self, model: nn.Module, train_images: torch.Tensor, val_images: torch.Tensor | None, *,
                 device: torch.device, precision: str = "fp32") -> None:
        self._args = (model, device, precision)
        self._images = {"train": train_images, "val": val_images}
        self._done: dict[tuple[str, bool], torch.Tensor] = {}

    def _get(self, part: str, flip: bool) -> torch.Tensor:
        if (part, flip) not in self._done:
            model, device, precision = self._args
            self._done[(part, flip)] = compute_features(model, self._images[part], flip=flip, device=device,
                                                        precision=precision)
        return self._done[(part, flip)]

    def train(self, flip: bool) -> torch.Tensor:
        return self._get("train", flip)

    def val(self) -> torch.Tensor:
        return self._get("val", False)


class RowFeatures:
    """Features of store rows from :data:`FEATURE_CACHE` (or ``cache``): ``store`` is the uint8 NCHW image store,
    ``data_key`` identifies it (a dataset's fingerprint), ``train_rows``/``val_rows`` are the splits' rows. The
    weights are hashed when first needed (:func:`backbone_key`), so a frozen phase after a trained one is keyed
    by the weights it starts from."""

    def __init__(self, model: nn.Module, store: torch.Tensor, data_key: str, train_rows: np.ndarray,
                 val_rows: np.ndarray | None, *, device: torch.device, precision: str = "fp32",
                 cache: FeatureCache | None = None) -> None:
        self.model, self.store, self.data_key = model, store, data_key
        self.rows = {"train": np.asarray(train_rows, dtype=np.int64),
                     "val": None if val_rows is None else np.asarray(val_rows, dtype=np.int64)}
        self.device, self.precision = device, precision
        self.cache = FEATURE_CACHE if cache is None else cache
        self.key: str | None = None
        self.used = False

    def features(self, rows: np.ndarray, flip: bool) -> torch.Tensor:
        """The features of any ``rows`` of the store (e.g. a test set), through the cache."""
        if self.key is None:
            self.key = backbone_key(self.model)
        self.used = True

        def compute(missing: np.ndarray) -> torch.Tensor:
            return compute_features(self.model, self.store[torch.as_tensor(missing)], flip=flip, device=self.device,
                                    precision=self.precision)

        key = (self.key, self.data_key, tuple(self.store.shape), flip, self.precision, torch.device(self.device).type)
        return self.cache.get(key, len(self.store), rows, compute)

    def train(self, flip: bool) -> torch.Tensor:
        return self.features(self.rows["train"], flip)

    def val(self) -> torch.Tensor:
        assert self.rows["val"] is not None
        return self.features(self.rows["val"], False)


@torch.inference_mode()
def head_logits(model: nn.Module, feats: torch.Tensor, *, device: torch.device, precision: str = "fp32"
                ) -> torch.Tensor:
    """``model.head`` on precomputed features (what ``predict_logits`` returns for their images), on the CPU."""
    model.eval()
    with autocast(device, precision):
        return model.head(feats.to(device)).float().cpu()


_FROZEN: weakref.WeakKeyDictionary[nn.Module, RowFeatures] = weakref.WeakKeyDictionary()


def mark_frozen(model: nn.Module, source: RowFeatures) -> None:
    """Record that ``model``'s backbone still has the weights ``source`` was keyed by (a fixed-feature training):
    :func:`frozen_source` then lets scoring read the cache too."""
    _FROZEN[model] = source


def frozen_source(model: nn.Module) -> RowFeatures | None:
    """The cached features of ``model``'s frozen backbone, when :func:`mark_frozen` recorded them."""
    return _FROZEN.get(model)

"""The frozen-feature fast path: one fixed-feature run the slow way (the frozen backbone runs on every batch of
every epoch and on the validation set every epoch) against the fast path (the head trains on cached features).

A run is the pipeline benchmark's (N = 512, validation 512, test 1,600, batch 64, flips on, every epoch run:
patience > epochs): ``fit`` with the ``fixed_feature`` mode, then the test logits. Rows are drawn per seed from a
pool of 2,048 images, as a study's seeds draw from a dataset's pool. Figures, each the median over alternating
repetitions of slow / fast:

* ``fixed_feature_speedup``: a run of a base whose features are cached (every run of a study after the base's
  first runs: the cache holds the pool's and the test set's features);
* ``fixed_feature_speedup_cold``: a run on an empty cache (the fast path computes the features of its rows, their
  mirror images and the test set once);
* the same two for ResNet-18 at 64×64 (``…_resnet18_64``; with ``--quick`` at the sizes of
  :data:`QUICK_RESNET18`).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from bench_common import DETAILS, current_device, emit, note, sync

from biastransfer.models.architectures import build_model
from biastransfer.models.transfer import get_transfer_mode
from biastransfer.train.engine import FitConfig, fit, make_split, predict_logits
from biastransfer.train.features import FeatureCache, RowFeatures, head_logits

SIZES = {"pool": 2048, "n": 512, "val": 512, "test": 1600}
QUICK_RESNET18 = {"pool": 1024, "n": 256, "val": 256, "test": 512}
"""``--quick`` measures ResNet-18 at these smaller sizes (the demo model at the full ones)."""


def _data(resolution: int, sizes: dict[str, int]) -> tuple[torch.Tensor, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    total = sizes["pool"] + sizes["test"]
    images = torch.randint(0, 256, (total, resolution, resolution, 3), dtype=torch.uint8, generator=g)
    labels = (torch.rand(total, generator=g) < 0.5).numpy().astype(np.float32)
    return images.permute(0, 3, 1, 2), labels


def _run(arch: str, store: torch.Tensor, labels: np.ndarray, seed: int, epochs: int, sizes: dict[str, int], *,
         cache: FeatureCache | None) -> float:
    """Seconds of one fixed-feature run (slow path when ``cache`` is None)."""
    dev = current_device()
    pool, n, n_val = sizes["pool"], sizes["n"], sizes["val"]
    order = np.random.default_rng(seed).permutation(pool)
    tr, va, te = order[:n], order[n:n + n_val], np.arange(pool, len(store))
    torch.manual_seed(0)
    model = build_model(arch)
    config = FitConfig(lr=0.01, batch_size=64, max_epochs=epochs, patience=epochs + 1, flip=True)
    phases = get_transfer_mode("fixed_feature").phases()
    sync()
    t0 = time.perf_counter()
    train, val = make_split(store, tr, labels[tr]), make_split(store, va, labels[va])
    if cache is None:
        fit(model, train, val, config, seed=seed, device=dev, phases=phases, fast=False)
        predict_logits(model, store[torch.as_tensor(te)], device=dev)
    else:
        source = RowFeatures(model, store, "bench", tr, va, device=dev, cache=cache)
        fit(model, train, val, config, seed=seed, device=dev, phases=phases, features=source)
        head_logits(model, source.features(te, False), device=dev)
    sync()
    return time.perf_counter() - t0


def _measure(arch: str, resolution: int, epochs: int, reps: int, sizes: dict[str, int]) -> dict[str, float]:
    store, labels = _data(resolution, sizes)
    _run(arch, store, labels, 99, 1, sizes, cache=FeatureCache())  # warm-up (allocator, oneDNN kernels)
    warm_cache = FeatureCache()
    slow, cold, warm = [], [], []
    for rep in range(reps):
        seed = 1 + rep
        slow.append(_run(arch, store, labels, seed, epochs, sizes, cache=None))
        cold.append(_run(arch, store, labels, seed, epochs, sizes, cache=FeatureCache()))
        if rep == 0:  # earlier runs of the study filled the cache with the pool's and the test set's features
            torch.manual_seed(0)
            base = build_model(arch)
            every = np.arange(len(store))
            for flip in (False, True):
                RowFeatures(base, store, "bench", every, None, device=current_device(), cache=warm_cache).train(flip)
        warm.append(_run(arch, store, labels, seed, epochs, sizes, cache=warm_cache))
    out = {"slow_seconds": statistics.median(slow), "cold_seconds": statistics.median(cold),
           "warm_seconds": statistics.median(warm),
           "speedup": statistics.median(s / w for s, w in zip(slow, warm, strict=True)),
           "speedup_cold": statistics.median(s / c for s, c in zip(slow, cold, strict=True))}
    note(f"fixed-feature run, {arch} at {resolution}x{resolution}, {epochs} epochs: slow {slow}, cold {cold}, "
         f"warm {warm} s")
    return out


def bench_frozen(quick: bool) -> None:
    epochs, reps = (4, 2) if quick else (10, 3)
    for arch, resolution, suffix in (("small_resnet", 32, ""), ("resnet18", 64, "_resnet18_64")):
        sizes = QUICK_RESNET18 if quick and arch == "resnet18" else SIZES
        r = _measure(arch, resolution, epochs, reps, sizes)
        DETAILS[f"fixed_feature{suffix}"] = {"arch": arch, "resolution": resolution, "epochs": epochs, **sizes, **r}
        emit(f"fixed_feature_speedup{suffix}", r["speedup"], "{:.1f}")
        emit(f"fixed_feature_speedup_cold{suffix}", r["speedup_cold"], "{:.1f}")
        emit(f"fixed_feature_run_seconds{suffix}", f"slow {r['slow_seconds']:.2f}, cold {r['cold_seconds']:.2f}, "
                                                   f"cached {r['warm_seconds']:.3f}")

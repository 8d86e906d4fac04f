"""Time per run as N and the image size grow (extrapolated from a few steps at large images)."""

from __future__ import annotations

import math
import time

import torch
from bench_common import DETAILS, current_device, emit, sync

from biastransfer.models.architectures import build_model
from biastransfer.train.engine import FitConfig, Split, eval_batch_size, fit, predict_logits


def run_seconds(arch: str, resolution: int, n: int, *, epochs: int, n_test: int = 1600,
                max_steps: int | None = None) -> dict[str, float]:
    """Time per run (fit with validation of size N every epoch, then the test set once) at ``n`` images.

    With ``max_steps`` only that many training steps and one evaluation batch are timed and the run is
    extrapolated: steps × step time + (N_val × epochs + N_test) × per-image evaluation time."""
    gen = torch.Generator().manual_seed(0)
    pool = torch.randint(0, 256, (min(n, 2048), resolution, resolution, 3), dtype=torch.uint8, generator=gen)
    store = pool.permute(0, 3, 1, 2)
    idx = torch.arange(n) % len(pool)
    targets = (torch.rand(n, generator=gen) < 0.5).float()
    torch.manual_seed(0)
    model = build_model(arch)
    dev = current_device()
    steps_per_epoch = math.ceil(n / 64)
    if max_steps is None:
        t0 = time.perf_counter()
        fit(model, Split(store[idx], targets), Split(store[idx], targets),
            FitConfig(max_epochs=epochs, patience=epochs + 1), seed=0, device=dev)
        predict_logits(model, store[torch.arange(n_test) % len(pool)], device=dev)
        return {"seconds": time.perf_counter() - t0, "extrapolated": False}
    k = min(max_steps, steps_per_epoch)
    sub = Split(store[idx[:64 * k]], targets[:64 * k])
    fit(model, Split(sub.images[:128], sub.targets[:128]), None, FitConfig(max_epochs=1), seed=0, device=dev)
    res = fit(model, sub, None, FitConfig(max_epochs=1), seed=0, device=dev)
    step = res.seconds / k
    bs = eval_batch_size(dev, (1, 3, resolution, resolution))
    batch = store[:bs] if len(store) >= bs else store
    predict_logits(model, batch, device=dev)
    sync()
    t0 = time.perf_counter()
    predict_logits(model, batch, device=dev)
    per_image = (time.perf_counter() - t0) / len(batch)
    seconds = epochs * (steps_per_epoch * step + n * per_image) + n_test * per_image
    return {"seconds": seconds, "extrapolated": True, "step_seconds": step, "eval_seconds_per_image": per_image}


def bench_scaling(quick: bool) -> None:
    epochs = 1 if quick else 2
    ns = [128, 512, 2048] if quick else [128, 512, 2048, 8192]
    rows = []
    for n in ns:
        r = run_seconds("small_resnet", 32, n, epochs=epochs)
        rows.append({"arch": "small_resnet", "resolution": 32, "n": n, "epochs": epochs, **r})
        emit(f"run_seconds_small_resnet_32_n{n}_e{epochs}", r["seconds"], "{:.2f}")
    sizes = [] if quick else [(64, None), (224, 3)]
    for res, max_steps in sizes:
        r = run_seconds("small_resnet", res, 512, epochs=epochs, max_steps=max_steps)
        rows.append({"arch": "small_resnet", "resolution": res, "n": 512, "epochs": epochs, **r})
        suffix = "_extrapolated" if r["extrapolated"] else ""
        emit(f"run_seconds_small_resnet_{res}_n512_e{epochs}{suffix}", r["seconds"], "{:.2f}")
    base = {row["n"]: row["seconds"] for row in rows if row["resolution"] == 32}
    # growth exponent between the smallest and largest N: 1 = linear, < 1 = sublinear (fixed costs amortised)
    lo, hi = min(base), max(base)
    emit("run_seconds_growth_exponent_n", math.log(base[hi] / base[lo]) / math.log(hi / lo), "{:.2f}")
    DETAILS["scaling"] = rows


"""Backbones at the paper's scale: training throughput at 224×224 and, on a GPU, one paper-size run.

Figures (``<arch>`` is ``resnet50`` or ``vit_small``, the timm ``vit_small_patch16_224``):

* ``train_images_per_s_<arch>_224_<precision>``: images per second through the engine's training loop (``fit``:
  uint8 → float, random flips, the forward and backward pass, SGD with momentum) at 224×224, on the device, after
  a warm-up epoch; fp32 everywhere, and bf16 autocast on CUDA (``train.precision: bf16``).
* ``eval_images_per_s_resnet50_224``: inference images per second (``predict_logits``, the device's evaluation
  batch).
* ``paper_run_seconds_resnet50_<precision>`` (CUDA, or ``--paper-run``): one finetuning run of the paper's size on
  ResNet-50 at 224 (N = 1,024, validation 512, test 1,024, batch 64, 25 epochs, every epoch run: the most a run of
  ``celeba_paper.yaml`` trains), our way (``fit`` with validation every epoch, the store on the device, then the
  test logits), and ``paper_run_seconds_resnet50_reference`` the original pipeline's design in the same
  invocation (:mod:`reference_pipeline`: one PNG per image decoded by PIL in a DataLoader of 4 workers on every
  epoch, the test set evaluated every epoch), with ``paper_run_speedup`` their ratio.
* ``paper_run_estimate_seconds_resnet50_cpu`` (CPU without ``--paper-run``): the same run's time estimated from the
  throughputs measured here: 25 × (1,024 / training images/s + 512 / inference images/s) + 1,024 / inference
  images/s. It is an estimate (a measured run takes about an hour on 2 cores), printed as one.

Images are random uint8 noise: throughput does not depend on pixel values (PNG sizes do, so the reference's PNGs
are smoothed noise, about the size of a photo's PNG at 224).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import DETAILS, current_device, emit, note, sync

from biastransfer.models.architectures import build_model
from biastransfer.train.engine import FitConfig, Split, fit, make_split, predict_logits
from biastransfer.train.layout import memory_format

ARCHS = {"resnet50": "resnet50", "vit_small": "vit_small_patch16_224"}
PAPER_RUN = {"n": 1024, "val": 512, "test": 1024, "epochs": 25, "batch": 64}
RESOLUTION = 224


def _images(n: int, seed: int = 0, smooth: bool = False) -> np.ndarray:
    """``n`` uint8 NHWC images at 224; ``smooth``: 8×8 noise upsampled (photo-like PNG sizes)."""
    rng = np.random.default_rng(seed)
    if not smooth:
        return rng.integers(0, 256, (n, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, axis=1), 8, axis=2)


def _store(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).to(device)  # NCHW view of NHWC: channels-last


def train_images_per_second(arch: str, precision: str, batch: int, steps: int) -> float:
    """Images per second of ``fit`` on ``steps`` batches of ``batch`` images, after one warm-up epoch."""
    device = current_device()
    torch.manual_seed(0)
    model = build_model(arch)
    store = _store(_images(batch * steps), device)
    targets = torch.tensor([0.0, 1.0] * (batch * steps // 2))
    config = FitConfig(lr=0.01, batch_size=batch, max_epochs=1, flip=True, precision=precision)
    fit(model, Split(store[:batch], targets[:batch]), None, config, seed=0, device=device)  # warm-up
    sync()
    result = fit(model, Split(store, targets), None, config, seed=1, device=device)
    sync()
    return batch * steps / result.seconds


def eval_images_per_second(arch: str, n: int) -> float:
    device = current_device()
    torch.manual_seed(0)
    model = build_model(arch).to(device).to(memory_format=memory_format(device))  # as after fit
    store = _store(_images(n), device)
    predict_logits(model, store[: min(n, 8)], device=device)  # warm-up
    sync()
    t0 = time.perf_counter()
    predict_logits(model, store, device=device)
    sync()
    return n / (time.perf_counter() - t0)


def warm_up(precision: str) -> None:
    """One training step and one evaluation batch of ResNet-50 at the paper run's batch size, untimed, so that
    neither side of the comparison pays the kernels' first-call costs (oneDNN primitives, cuDNN autotuning)."""
    device = current_device()
    batch = PAPER_RUN["batch"]
    torch.manual_seed(0)
    model = build_model("resnet50")
    store = _store(_images(batch), device)
    fit(model, Split(store, torch.tensor([0.0, 1.0] * (batch // 2))), None,
        FitConfig(batch_size=batch, max_epochs=1, precision=precision), seed=0, device=device)
    predict_logits(model, store, device=device, precision=precision)
    sync()


def paper_run(precision: str) -> dict[str, float]:
    """One paper-size run our way (fit with validation every epoch, then the test logits)."""
    device = current_device()
    p = PAPER_RUN
    images = _images(p["n"] + p["val"] + p["test"], smooth=True)
    labels = (np.arange(len(images)) % 2).astype(np.float32)
    rows = np.arange(len(images))
    train, val, test = np.split(rows, [p["n"], p["n"] + p["val"]])
    torch.manual_seed(0)
    model = build_model("resnet50")
    t0 = time.perf_counter()
    store = _store(images, device)  # the store on the device (placement.store_tensor's choice on a GPU)
    config = FitConfig(lr=0.01, batch_size=p["batch"], max_epochs=p["epochs"], patience=p["epochs"] + 1,
                       precision=precision)
    fit(model, make_split(store, train, labels[train]), make_split(store, val, labels[val]), config, seed=0,
        device=device)
    predict_logits(model, store[torch.as_tensor(test)], device=device, precision=precision)
    sync()
    return {"seconds": time.perf_counter() - t0}


def reference_paper_run(workers: int = 4) -> dict[str, float]:
    """The same run the original pipeline's way, in the same process."""
    from reference_pipeline import reference_finetune, write_pngs

    p = PAPER_RUN
    images = _images(p["n"] + p["val"] + p["test"], smooth=True)
    labels = (np.arange(len(images)) % 2).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_pngs(images, Path(tmp))
        cut = [p["n"], p["n"] + p["val"]]
        sets = [(list(f), y) for f, y in zip(np.split(np.array(files, dtype=object), cut),
                                                np.split(labels, cut), strict=True)]
        torch.manual_seed(0)
        result = reference_finetune(build_model("resnet50"), *sets, epochs=p["epochs"], batch_size=p["batch"],
                                    num_workers=workers, device=current_device())
    return {"seconds": result["seconds"]}


def bench_large(quick: bool, paper_run_on_cpu: bool = False) -> None:
    device = current_device()
    cuda = device.type == "cuda"
    precisions = ("fp32", "bf16") if cuda else ("fp32",)
    batch, steps = (64, 5 if quick else 20) if cuda else (16, 2 if quick else 4)
    figures: dict[str, float] = {}
    for short, arch in ARCHS.items():
        for precision in precisions:
            ips = train_images_per_second(arch, precision, batch, steps)
            figures[f"train_images_per_s_{short}_224_{precision}"] = ips
            emit(f"train_images_per_s_{short}_224_{precision}", ips, "{:.1f}")
    eval_ips = eval_images_per_second("resnet50", 256 if cuda else (32 if quick else 64))
    figures["eval_images_per_s_resnet50_224"] = eval_ips
    emit("eval_images_per_s_resnet50_224", eval_ips, "{:.1f}")
    p = PAPER_RUN
    if cuda or paper_run_on_cpu:
        for precision in precisions:
            warm_up(precision)
            seconds = paper_run(precision)["seconds"]
            figures[f"paper_run_seconds_resnet50_{precision}"] = seconds
            emit(f"paper_run_seconds_resnet50_{precision}", seconds, "{:.1f}")
        reference = reference_paper_run()["seconds"]
        figures["paper_run_seconds_resnet50_reference"] = reference
        emit("paper_run_seconds_resnet50_reference", reference, "{:.1f}")
        emit("paper_run_speedup", reference / figures["paper_run_seconds_resnet50_fp32"], "{:.2f}")
    else:
        train_ips = figures["train_images_per_s_resnet50_224_fp32"]
        estimate = p["epochs"] * (p["n"] / train_ips + p["val"] / eval_ips) + p["test"] / eval_ips
        figures["paper_run_estimate_seconds_resnet50_cpu"] = estimate
        emit("paper_run_estimate_seconds_resnet50_cpu", estimate, "{:.0f}")
        note("paper-size run on CPU: estimated from the throughputs above (--paper-run measures one, ~1 h)")
    DETAILS["large"] = {"device": str(device), "batch": batch, "steps": steps, "paper_run": p, **figures}

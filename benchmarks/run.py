"""Speed benchmarks of the training engine against the original protocol and the machine's limit.

Prints one ``name: value`` line per figure, every figure measured in this invocation:

* ``pipeline_speedup`` — one finetuning run of the demo's model at 32x32 (N=512, validation 512, test 1600,
  batch 64, same initial weights and epochs) the original's way (:mod:`reference_pipeline`: one PNG per image
  decoded by PIL in a DataLoader on every epoch, torchvision transforms, test set evaluated every epoch, eager,
  contiguous) over ours (``engine.fit`` with validation every epoch for early stopping, then ``predict_logits``
  on the test set once). Reference and ours alternate; the figure is the median over repetitions of
  (fastest reference configuration) / ours. Printed with it: the reference's data-loading share, our
  training-step share and the bound they imply; in full mode also the opt-in engine variants (compiled, bf16).
* ``mfu`` — achieved training FLOP/s of the engine's steady-state loop (FLOPs of one forward+backward counted by
  ``torch.utils.flop_counter``) over the FLOP/s of a large fp32 matmul measured in this process (best of MKL
  ``torch.mm`` and oneDNN ``mkldnn_linear``, measured before, between and after the training timings), for the
  demo's model at 32x32 and ResNet-18 at 64x64; in full mode also the convolutions' own FLOP/s and time share.
* ``trainings_ratio`` — trainings the demo study runs over the trainings the original protocol would run for the
  same grid (:func:`original_protocol_trainings`).
* ``demo_seconds`` (full) or ``demo_tiny_seconds`` (``--quick``) — the bundled demo study (``run demo.yaml``) in a
  subprocess with a fresh ``--out`` and ``--cache-dir`` (so data generation and base training are included);
  before it, the same study on the engine before the speed issue (``--demo-baseline``, default commit c8d2fc8,
  exported with ``git archive``: :mod:`demo_baseline`), with the ratio of the two and a run-by-run comparison of
  their results. ``run_speedup_vs_baseline_engine`` is the same comparison for one run, with its bound.
* evaluation batch size and channels-last, each against its alternative; scaling of time per run with N and
  image size; (full mode) compilation: cold and warm compile seconds, saving per run and break-even.

Usage: ``python benchmarks/run.py [--quick] [--threads 1] [--device auto] [--json out.json] [--skip-demo]
[--demo-baseline REV|none]``.
The machine may be shared: every ratio compares measurements taken back to back in this process, never against
stored numbers. BENCHMARKS.md records the figures and what they mean.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from biastransfer.config import StudyConfig, load_study
from biastransfer.models.architectures import build_model
from biastransfer.train.engine import FitConfig, Split, eval_batch_size, fit, make_split, predict_logits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from demo_baseline import BASELINE_REV  # noqa: E402

FIGURES: dict[str, Any] = {}
DETAILS: dict[str, Any] = {}
DEVICE = torch.device("cpu")  # set from --device in main()


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def emit(name: str, value: Any, fmt: str = "{:.3g}") -> None:
    """Print one ``name: value`` line (flushed, so a long run shows progress) and keep it for --json."""
    FIGURES[name] = value
    text = fmt.format(value) if isinstance(value, float) else str(value)
    print(f"{name}: {text}", flush=True)


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------- trainings
from biastransfer.runner.protocol import (  # noqa: E402
    original_protocol_settings,
    original_protocol_trainings,
    our_protocol_trainings,
)


def bundled_study(name: str) -> StudyConfig:
    from importlib import resources

    with resources.as_file(resources.files("biastransfer.studies") / name) as path:
        return load_study(path)


def bench_trainings() -> None:
    study = bundled_study("demo.yaml")
    ours = our_protocol_trainings(study)
    original = original_protocol_trainings(study)
    DETAILS["trainings"] = {"demo": ours, "original": original,
                            "original_settings": len(original_protocol_settings(study))}
    emit("trainings_demo", ours["total"])
    emit("trainings_original_protocol", original)
    emit("trainings_ratio", ours["total"] / original, "{:.4f}")


# ------------------------------------------------------------------------------------------------------- data
def synthetic_images(n_train: int, n_val: int, n_test: int, resolution: int = 32) -> dict[str, Any]:
    """The built-in benchmark's images (uint8 NHWC) and target t3, generated in memory."""
    from biastransfer.data.synthetic import SyntheticParams, generate

    table, images = generate(SyntheticParams(resolution=resolution, pretrain=2, train=n_train, val=n_val,
                                             test=n_test))
    rows = {split: np.flatnonzero(table["split"].to_numpy() == split) for split in ("train", "val", "test")}
    return {"images": images, "labels": table["t3"].to_numpy().astype(np.float32), "rows": rows}


def _store(images_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2)  # NCHW view, channels-last


# --------------------------------------------------------------------------------------------------- pipeline
def ours_finetune(arch: str, store: torch.Tensor, labels: np.ndarray, rows: dict[str, np.ndarray], *,
                  epochs: int, seed: int = 0, compile: bool = False, precision: str = "fp32",
                  lr: float = 0.01, eval_batch_size: int | None = None) -> dict[str, float]:
    """One run our way: fit with validation every epoch (patience > epochs, so every epoch runs), test once.
    ``eval_batch_size=1024`` is the engine before the speed issue (commit c8d2fc8; same numbers bit for bit)."""
    torch.manual_seed(seed)
    model = build_model(arch)
    t0 = time.perf_counter()
    train = make_split(store, rows["train"], labels[rows["train"]])
    val = make_split(store, rows["val"], labels[rows["val"]])
    config = FitConfig(lr=lr, weight_decay=5e-4, batch_size=64, max_epochs=epochs, patience=epochs + 1,
                       compile=compile, precision=precision, eval_batch_size=eval_batch_size)
    res = fit(model, train, val, config, seed=seed, device=DEVICE)
    scores = predict_logits(model, store[torch.as_tensor(rows["test"])], device=DEVICE, compile=compile,
                            precision=precision, batch_size=eval_batch_size)
    return {"seconds": time.perf_counter() - t0, "val_loss": res.best_val_loss, "n_test": len(scores)}


def reference_run(arch: str, files: dict[str, list[Path]], labels: np.ndarray, rows: dict[str, np.ndarray], *,
                  epochs: int, num_workers: int, seed: int = 0, lr: float = 0.01) -> dict[str, float]:
    from reference_pipeline import reference_finetune

    torch.manual_seed(seed)
    model = build_model(arch)
    sets = {k: (files[k], labels[rows[k]]) for k in ("train", "val", "test")}
    return reference_finetune(model, sets["train"], sets["val"], sets["test"], epochs=epochs, batch_size=64,
                              lr=lr, num_workers=num_workers, seed=seed, device=DEVICE)


def reference_loading_seconds(files: dict[str, list[Path]], labels: np.ndarray, rows: dict[str, np.ndarray],
                              epochs: int, workers: int) -> float:
    """The reference's data loading alone: iterate its train and test loaders ``epochs`` times, no model."""
    from reference_pipeline import PngDataset, test_transform, train_transform
    from torch.utils.data import DataLoader

    train = DataLoader(PngDataset(files["train"], labels[rows["train"]], train_transform()), batch_size=64,
                       shuffle=True, num_workers=workers)
    test = DataLoader(PngDataset(files["test"], labels[rows["test"]], test_transform()), batch_size=64,
                      num_workers=workers)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for loader in (train, test):
            for _batch in loader:
                pass
    return time.perf_counter() - t0


def ours_train_only_seconds(store: torch.Tensor, labels: np.ndarray, rows: dict[str, np.ndarray],
                            epochs: int) -> float:
    """Our training steps alone: ``fit`` without a validation split, no test evaluation."""
    torch.manual_seed(0)
    model = build_model("small_resnet")
    train = make_split(store, rows["train"], labels[rows["train"]])
    res = fit(model, train, None, FitConfig(lr=0.01, batch_size=64, max_epochs=epochs), seed=0, device=DEVICE)
    return res.seconds


def bench_pipeline(quick: bool, workers: list[int], extras: bool) -> None:
    from reference_pipeline import write_pngs

    n_train, n_val, n_test = 512, 512, 1600
    epochs, reps = (4, 2) if quick else (10, 3)
    data = synthetic_images(n_train, n_val, n_test)
    store = _store(data["images"])
    with tempfile.TemporaryDirectory(prefix="bt-bench-png-") as tmp:
        files = {k: write_pngs(data["images"][data["rows"][k]], Path(tmp) / k, k) for k in ("train", "val", "test")}
        # warm-up (oneDNN primitives, PIL, worker start): one short run of each, not timed
        small = {k: v[:128] for k, v in data["rows"].items()}
        ours_finetune("small_resnet", store, data["labels"], small, epochs=1)
        reference_run("small_resnet", {k: v[:128] for k, v in files.items()}, data["labels"], small, epochs=1,
                      num_workers=0)
        variants = [("ours", {}), ("ours_baseline_engine", {"eval_batch_size": 1024})] + [
            (f"reference_w{w}", {"num_workers": w}) for w in workers]
        if extras:  # opt-in engine options: compiled (compiled once here, excluded) and bf16 autocast
            ours_finetune("small_resnet", store, data["labels"], small, epochs=1, compile=True)
            ours_finetune("small_resnet", store, data["labels"], small, epochs=1, precision="bf16")
            variants[1:1] = [("ours_compiled", {"compile": True}), ("ours_bf16", {"precision": "bf16"})]
        times: dict[str, list[float]] = {name: [] for name, _ in variants}
        for rep in range(reps):
            order = variants if rep % 2 == 0 else variants[::-1]
            for name, kw in order:
                if name.startswith("ours"):
                    out = ours_finetune("small_resnet", store, data["labels"], data["rows"], epochs=epochs, **kw)
                else:
                    out = reference_run("small_resnet", files, data["labels"], data["rows"], epochs=epochs, **kw)
                times[name].append(out["seconds"])
                note(f"pipeline rep {rep} {name}: {out['seconds']:.2f} s")
        # where the time goes: the reference's data loading alone (decode + transforms, train and test loaders
        # for every epoch) and our training steps alone (fit without validation, no test): with evaluation and
        # data free, ours could not be faster than its training steps
        decode = reference_loading_seconds(files, data["labels"], data["rows"], epochs, workers=0)
        train_only = ours_train_only_seconds(store, data["labels"], data["rows"], epochs)
    refs = [name for name in times if name.startswith("reference")]
    ratios = [min(times[r][i] for r in refs) / times["ours"][i] for i in range(reps)]
    best_ref = statistics.median([min(times[r][i] for r in refs) for i in range(reps)])
    DETAILS["pipeline"] = {"n_train": n_train, "n_val": n_val, "n_test": n_test, "epochs": epochs,
                           "batch_size": 64, "threads": torch.get_num_threads(), "seconds": times,
                           "ratios": ratios}
    for r in refs:
        emit(f"pipeline_{r}_seconds", statistics.median(times[r]), "{:.2f}")
    emit("pipeline_ours_seconds", statistics.median(times["ours"]), "{:.2f}")
    emit("pipeline_reference_loading_share", decode / statistics.median(times.get("reference_w0", times[refs[0]])),
         "{:.2f}")
    emit("pipeline_ours_train_steps_share", train_only / statistics.median(times["ours"]), "{:.2f}")
    emit("pipeline_speedup_bound_train_steps_only", best_ref / train_only, "{:.2f}")
    emit("pipeline_speedup", statistics.median(ratios), "{:.2f}")
    DETAILS["pipeline"].update(reference_loading_seconds=decode, ours_train_steps_seconds=train_only)
    # the engine before the speed issue, on the same run; no fp32 engine can beat its training steps
    before = [times["ours_baseline_engine"][i] / times["ours"][i] for i in range(reps)]
    emit("pipeline_baseline_engine_seconds", statistics.median(times["ours_baseline_engine"]), "{:.2f}")
    emit("run_speedup_vs_baseline_engine", statistics.median(before), "{:.2f}")
    emit("run_speedup_vs_baseline_engine_bound", statistics.median(times["ours_baseline_engine"]) / train_only,
         "{:.2f}")
    for variant in ("ours_compiled", "ours_bf16"):
        if variant in times:
            vr = [min(times[r][i] for r in refs) / times[variant][i] for i in range(reps)]
            emit(f"pipeline_{variant}_seconds", statistics.median(times[variant]), "{:.2f}")
            emit(f"pipeline_speedup_{variant.removeprefix('ours_')}", statistics.median(vr), "{:.2f}")


# -------------------------------------------------------------------------------------------------------- mfu
def matmul_peak(n: int = 2048, reps: int = 5) -> dict[str, float]:
    """FLOP/s of a large fp32 matmul: MKL (torch.mm) and oneDNN (mkldnn_linear), best of ``reps`` each."""
    a, b = torch.randn(n, n, device=DEVICE), torch.randn(n, n, device=DEVICE)
    out: dict[str, float] = {}

    def best(fn) -> float:
        fn()
        sync()
        t = math.inf
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            sync()
            t = min(t, time.perf_counter() - t0)
        return 2 * n ** 3 / t

    out["mkl_mm"] = best(lambda: torch.mm(a, b))  # MKL on CPU, cuBLAS on CUDA
    if DEVICE.type != "cpu":
        return out
    with contextlib.suppress(Exception):  # oneDNN matmul; on Intel CPUs MKL is usually as fast
        am, bm = a.to_mkldnn(), b.to_mkldnn()
        out["onednn_linear"] = best(lambda: torch.ops.aten.mkldnn_linear(am, bm, None))
    return out


def train_step_flops(arch: str, resolution: int, batch: int = 64) -> int:
    """FLOPs of one training step (forward + backward) counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(arch).to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as counter:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), torch.ones(batch, 1))
        loss.backward()
    return int(counter.get_total_flops())


class StepTimer:
    """Steady-state seconds per training step of ``engine.fit`` (no validation) for one engine variant.

    The model and data persist across calls, so variants can be timed alternately (interleaved) and the best of
    several calls taken; the first call (oneDNN primitive creation, compilation) is timed apart as warm-up."""

    def __init__(self, arch: str, resolution: int, steps: int, *, compile: bool = False, precision: str = "fp32",
                 batch: int = 64) -> None:
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (batch * steps, resolution, resolution, 3), dtype=torch.uint8,
                               generator=gen)
        self.split = Split(images.permute(0, 3, 1, 2), (torch.rand(batch * steps, generator=gen) < 0.5).float())
        self.steps = steps
        torch.manual_seed(0)
        self.model = build_model(arch)
        self.config = FitConfig(max_epochs=1, batch_size=batch, compile=compile, precision=precision)
        warm = Split(self.split.images[:batch * 2], self.split.targets[:batch * 2])
        t0 = time.perf_counter()
        fit(self.model, warm, None, self.config, seed=0, device=DEVICE)
        self.warmup = time.perf_counter() - t0
        self.times: list[float] = []

    def __call__(self) -> float:
        res = fit(self.model, self.split, None, self.config, seed=1, device=DEVICE)
        self.times.append(res.seconds / self.steps)
        return self.times[-1]

    @property
    def best(self) -> float:
        return min(self.times)


def conv_share(arch: str, resolution: int, batch: int = 64, steps: int = 3) -> dict[str, float]:
    """Profile a few eager steps: fraction of time in convolutions and the convolutions' achieved FLOP/s."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(arch).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    y = torch.ones(batch, 1)

    def step() -> None:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up: oneDNN primitive creation
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    counts = counter.get_flop_counts()["Global"]
    conv_flops = sum(v for k, v in counts.items() if "convolution" in str(k))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if "convolution" in e.key)
    return {"conv_time_share": conv / total, "conv_flops_per_s": conv_flops * steps / (conv * 1e-6),
            "step_flops_per_s_profiled": sum(counts.values()) * steps / (total * 1e-6)}


def bench_mfu(quick: bool, extras: bool) -> None:
    """MFU of the default engine (fp32, eager); with ``extras`` also the compiled and bf16 variants, each timed
    alternately with eager on its own model so that load changes on a shared machine hit all variants alike.
    Step times and the matmul peak are both best-of-several (peak measured before, between and after)."""
    cases = [("small_resnet", 32, 8 if quick else 16, 2 if quick else 3), ("resnet18", 64, 2 if quick else 4, 2)]
    peaks = [matmul_peak()]
    results = {}
    for arch, res, steps, reps in cases:
        timers = {"eager": StepTimer(arch, res, steps)}
        if extras:
            timers["compiled"] = StepTimer(arch, res, steps, compile=True)
            timers["bf16"] = StepTimer(arch, res, steps, precision="bf16")
        for rep in range(reps):
            for name in (timers if rep % 2 == 0 else list(timers)[::-1]):
                timers[name]()
            peaks.append(matmul_peak(reps=3))
        r = {"flops_per_step": train_step_flops(arch, res), "step_seconds": timers["eager"].best,
             "warmup_seconds": timers["eager"].warmup,
             "step_seconds_all": {name: t.times for name, t in timers.items()}}
        if extras:
            r.update(compiled_step_seconds=timers["compiled"].best, compile_seconds=timers["compiled"].warmup,
                     bf16_step_seconds=timers["bf16"].best)
        if not quick and DEVICE.type == "cpu":
            r.update(conv_share(arch, res))
        results[(arch, res)] = r
    mkl = max(p["mkl_mm"] for p in peaks)
    onednn = max((p.get("onednn_linear", 0.0) for p in peaks), default=0.0)
    peak = max(mkl, onednn)
    emit("matmul_peak_gflops", peak / 1e9, "{:.1f}")
    emit("matmul_torch_mm_gflops", mkl / 1e9, "{:.1f}")
    for (arch, res), r in results.items():
        tag = f"{arch}_{res}"
        achieved = r["flops_per_step"] / r["step_seconds"]
        r.update(achieved_flops_per_s=achieved, mfu=achieved / peak, mfu_vs_torch_mm=achieved / mkl)
        emit(f"train_gflops_{tag}", achieved / 1e9, "{:.1f}")
        if (arch, res) == ("small_resnet", 32):
            emit("mfu", achieved / peak, "{:.3f}")
        emit(f"mfu_{tag}", achieved / peak, "{:.3f}")
        if "conv_flops_per_s" in r:
            emit(f"conv_gflops_{tag}", r["conv_flops_per_s"] / 1e9, "{:.1f}")
            emit(f"conv_time_share_{tag}", r["conv_time_share"], "{:.2f}")
        if extras:
            emit(f"mfu_compiled_{tag}", r["flops_per_step"] / r["compiled_step_seconds"] / peak, "{:.3f}")
            emit(f"compile_step_speedup_{tag}", r["step_seconds"] / r["compiled_step_seconds"], "{:.2f}")
            emit(f"bf16_step_speedup_{tag}", r["step_seconds"] / r["bf16_step_seconds"], "{:.2f}")
    DETAILS["mfu"] = {"peaks": peaks, "threads": torch.get_num_threads(),
                      "cases": {f"{a}_{r}": v for (a, r), v in results.items()}}


# ------------------------------------------------------------------------------------------------------ micro
def bench_micro(quick: bool) -> None:
    """Two engine choices, each against its alternative, interleaved: evaluation batch size (auto vs the former
    1024) and channels-last vs contiguous training steps, on the demo's model at 32x32."""
    if DEVICE.type != "cpu":
        return  # both choices are CPU-specific
    dev = DEVICE
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2048, 32, 32, 3), dtype=torch.uint8, generator=gen).permute(0, 3, 1, 2)
    torch.manual_seed(0)
    model = build_model("small_resnet").to(memory_format=torch.channels_last)
    auto = eval_batch_size(dev, tuple(images.shape))
    times: dict[str, list[float]] = {"auto": [], "1024": []}
    predict_logits(model, images[:1024], device=dev, batch_size=1024)
    for _ in range(2 if quick else 4):
        for name, bs in (("auto", auto), ("1024", 1024)):
            t0 = time.perf_counter()
            predict_logits(model, images, device=dev, batch_size=bs)
            times[name].append((time.perf_counter() - t0) / len(images))
    emit(f"eval_ms_per_image_batch{auto}", min(times["auto"]) * 1e3, "{:.3f}")
    emit("eval_ms_per_image_batch1024", min(times["1024"]) * 1e3, "{:.3f}")
    emit("eval_batch_speedup", min(times["1024"]) / min(times["auto"]), "{:.2f}")

    x = torch.rand(64, 3, 32, 32)
    y = torch.ones(64, 1)
    steps: dict[str, list[float]] = {"channels_last": [], "contiguous": []}
    models = {}
    for name in steps:
        torch.manual_seed(0)
        m = build_model("small_resnet")
        fmt = torch.channels_last if name == "channels_last" else torch.contiguous_format
        models[name] = (m.to(memory_format=fmt), torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9), fmt)

    def step(name: str) -> None:
        m, opt, fmt = models[name]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(x.contiguous(memory_format=fmt)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for name in steps:
        step(name)
    for _ in range(3 if quick else 6):
        for name in steps:
            t0 = time.perf_counter()
            for _ in range(4):
                step(name)
            steps[name].append((time.perf_counter() - t0) / 4)
    emit("channels_last_step_speedup", min(steps["contiguous"]) / min(steps["channels_last"]), "{:.2f}")
    DETAILS["micro"] = {"eval_seconds_per_image": times, "eval_auto_batch": auto, "step_seconds": steps}


# ---------------------------------------------------------------------------------------------------- scaling
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
    dev = DEVICE
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


# ----------------------------------------------------------------------------------------------------- compile
def _compile_probe() -> None:
    """Subprocess body: compile the demo's training and evaluation graphs; print JSON with the seconds."""
    global DEVICE
    torch.set_num_threads(int(os.environ.get("BT_BENCH_THREADS", "1")))
    DEVICE = torch.device(os.environ.get("BT_BENCH_DEVICE", "cpu"))
    data = synthetic_images(512, 512, 64)
    store = _store(data["images"])
    rows = {"train": data["rows"]["train"][:128], "val": data["rows"]["val"][:128], "test": data["rows"]["test"]}
    t0 = time.perf_counter()
    ours_finetune("small_resnet", store, data["labels"], rows, epochs=1, compile=True)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours_finetune("small_resnet", store, data["labels"], rows, epochs=1, compile=True)
    second = time.perf_counter() - t0
    from biastransfer.train.compile import compile_seconds

    print(json.dumps({"first_run": first, "second_run": second, "compile_seconds": compile_seconds()}))


def bench_compile(quick: bool, cache_dir: Path | None = None) -> None:
    """Cold (fresh inductor cache) and warm (same cache, new process) compile seconds, in subprocesses."""
    with tempfile.TemporaryDirectory(prefix="bt-inductor-") as tmp:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir or tmp),
               "BT_BENCH_THREADS": str(torch.get_num_threads()), "BT_BENCH_DEVICE": str(DEVICE)}
        out = {}
        for label in ("cold", "warm"):
            proc = subprocess.run([sys.executable, __file__, "--compile-probe"], env=env, capture_output=True,
                                  text=True, check=True)
            out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            # what a process pays once: first run minus an identical second run (imports, probe, compilation)
            out[label]["overhead"] = out[label]["first_run"] - out[label]["second_run"]
            emit(f"compile_{label}_seconds", out[label]["overhead"], "{:.1f}")
    pipe = DETAILS.get("pipeline", {}).get("seconds", {})
    if "ours_compiled" in pipe:
        saving = statistics.median(pipe["ours"]) - statistics.median(pipe["ours_compiled"])
        epochs = DETAILS["pipeline"]["epochs"]
        out["saving_per_run"] = saving
        emit(f"compile_saving_per_run_seconds_e{epochs}", saving, "{:.2f}")
        for label in ("cold", "warm"):
            runs = out[label]["overhead"] / saving if saving > 0 else math.inf
            emit(f"compile_break_even_runs_{label}", runs, "{:.0f}")
    DETAILS["compile"] = out


# -------------------------------------------------------------------------------------------------------- demo
def bench_demo(quick: bool, baseline: str | None) -> None:
    """The bundled demo (``demo_tiny`` with --quick) from an empty cache; with ``baseline``, first the same study
    on the code of that commit (``demo_baseline``), then ours, and both stores compared run by run."""
    from demo_baseline import compare_results, export_source, time_study

    from biastransfer.runner.store import ResultStore

    name = "demo_tiny" if quick else "demo"
    study_file = Path(__file__).resolve().parent.parent / "src/biastransfer/studies" / f"{name}.yaml"
    with tempfile.TemporaryDirectory(prefix="bt-bench-demo-") as tmp:
        work = Path(tmp)
        before = None
        if baseline:
            try:
                source = export_source(baseline, work / "baseline-src")
            except (subprocess.CalledProcessError, OSError) as exc:
                note(f"baseline {baseline} not available ({exc}); timing ours only")
            else:
                before = time_study("baseline", study_file, work, pythonpath=source)
                if before.returncode != 0:
                    note(f"baseline demo failed ({before.returncode}): {before.stderr}")
                    before = None
        ours = time_study("ours", study_file, work)
        if ours.returncode != 0:
            note(f"demo failed ({ours.returncode}): {ours.stderr}")
            emit(f"{name}_seconds", "failed")
            return
        emit(f"{name}_seconds", ours.seconds, "{:.1f}")
        details: dict[str, Any] = {"ours": vars(ours)}
        if before is not None:
            emit(f"{name}_seconds_baseline_{baseline}", before.seconds, "{:.1f}")
            emit(f"{name}_speedup_vs_baseline", before.seconds / ours.seconds, "{:.2f}")
            same = compare_results(before.out_dir, ours.out_dir)
            emit(f"{name}_baseline_runs_matched", f"{same['matched']}/{same['runs_b']}")
            emit(f"{name}_baseline_max_result_difference", same["max_abs_difference"], "{:.3g}")
            note(f"load average: baseline {before.load_before:.1f} -> {before.load_after:.1f}, "
                 f"ours {ours.load_before:.1f} -> {ours.load_after:.1f}")
            details.update(baseline=vars(before), comparison=same)
        store = ResultStore(ours.out_dir)
        last = store.get_meta("last_run") or {}
        store.close()
        study = bundled_study(f"{name}.yaml")
        planned = our_protocol_trainings(study)["total"]
        DETAILS[name] = {**details, "planned_trainings": planned}
        if "trainings" in last:
            emit(f"{name}_trainings_measured", last["trainings"])
            emit(f"{name}_trainings_planned", planned)
            emit(f"{name}_trainings_ratio", last["trainings"] / original_protocol_trainings(study), "{:.4f}")


# -------------------------------------------------------------------------------------------------------- main
def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "device": str(DEVICE), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "loadavg_at_start": load,
            "capability": torch.backends.cpu.get_cpu_capability()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller measurements (under 3 minutes on 2 cores)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: what each of the runner's CPU workers uses)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda[:N]")
    parser.add_argument("--workers", default="0,2", help="DataLoader workers of the reference, comma-separated")
    parser.add_argument("--only", default="", help="comma-separated subset: trainings,micro,pipeline,mfu,"
                                                    "scaling,compile,demo")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--demo-baseline", default=BASELINE_REV,
                        help=f"also time the demo on the code of this git revision, before ours (default {BASELINE_REV}"
                             ", the engine before the speed issue; 'none' to skip)")
    parser.add_argument("--json", type=Path, help="also write every figure and detail to this JSON file")
    parser.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_probe:
        _compile_probe()
        return
    global DEVICE
    from biastransfer.device import resolve_device

    DEVICE = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    info = machine()
    note(f"machine: {info}")
    emit("machine", f"{info['cpu']}, {info['cores']} cores, GPU: {info['gpu'] or 'none'}, device {DEVICE}, "
                    f"torch {info['torch']}, {args.threads} thread(s), load {info['loadavg_at_start'][0]:.1f}")
    only = set(filter(None, args.only.split(",")))
    want = (lambda name: name in only) if only else (lambda name: True)
    t_start = time.perf_counter()
    if want("trainings"):
        bench_trainings()
    if want("micro"):
        bench_micro(args.quick)
    if want("pipeline"):
        bench_pipeline(args.quick, [int(w) for w in args.workers.split(",")], extras=not args.quick)
    if want("mfu"):
        bench_mfu(args.quick, extras=not args.quick)
    if want("scaling"):
        bench_scaling(args.quick)
    if want("compile") and not args.quick:
        bench_compile(args.quick)
    if want("demo") and not args.skip_demo:
        bench_demo(args.quick, None if args.demo_baseline.lower() == "none" else args.demo_baseline)
    emit("benchmark_seconds", time.perf_counter() - t_start, "{:.0f}")
    info["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "figures": FIGURES, "details": DETAILS}, indent=2,
                                        default=str))


if __name__ == "__main__":
    main()

"""``pipeline_speedup``: one finetuning run of the demo's model the original's way (:mod:`reference_pipeline`)
against ours (``engine.fit`` + ``predict_logits``), alternating, with where each one's time goes."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_common import DETAILS, current_device, emit, note

from biastransfer.models.architectures import build_model
from biastransfer.train.engine import FitConfig, fit, make_split, predict_logits


def synthetic_images(n_train: int, n_val: int, n_test: int, resolution: int = 32) -> dict[str, Any]:
    """The built-in benchmark's images (uint8 NHWC) and target t3, generated in memory."""
    from biastransfer.data.synthetic import SyntheticParams, generate

    table, images = generate(SyntheticParams(resolution=resolution, pretrain=2, train=n_train, val=n_val,
                                             test=n_test))
    rows = {split: np.flatnonzero(table["split"].to_numpy() == split) for split in ("train", "val", "test")}
    return {"images": images, "labels": table["t3"].to_numpy().astype(np.float32), "rows": rows}


def image_store(images_nhwc: np.ndarray) -> torch.Tensor:
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
    res = fit(model, train, val, config, seed=seed, device=current_device())
    scores = predict_logits(model, store[torch.as_tensor(rows["test"])], device=current_device(),
                            compile=compile, precision=precision, batch_size=eval_batch_size)
    return {"seconds": time.perf_counter() - t0, "val_loss": res.best_val_loss, "n_test": len(scores)}


def reference_run(arch: str, files: dict[str, list[Path]], labels: np.ndarray, rows: dict[str, np.ndarray], *,
                  epochs: int, num_workers: int, seed: int = 0, lr: float = 0.01) -> dict[str, float]:
    from reference_pipeline import reference_finetune

    torch.manual_seed(seed)
    model = build_model(arch)
    sets = {k: (files[k], labels[rows[k]]) for k in ("train", "val", "test")}
    return reference_finetune(model, sets["train"], sets["val"], sets["test"], epochs=epochs, batch_size=64,
                              lr=lr, num_workers=num_workers, seed=seed, device=current_device())


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
    res = fit(model, train, None, FitConfig(lr=0.01, batch_size=64, max_epochs=epochs), seed=0,
              device=current_device())
    return res.seconds


def bench_pipeline(quick: bool, workers: list[int], extras: bool) -> None:
    from reference_pipeline import write_pngs

    n_train, n_val, n_test = 512, 512, 1600
    epochs, reps = (4, 2) if quick else (10, 3)
    data = synthetic_images(n_train, n_val, n_test)
    store = image_store(data["images"])
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


"""Compilation: cold and warm compile seconds (each in a fresh process), saving per run and break-even."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_common import DETAILS, current_device, emit, use_device
from bench_pipeline import image_store, ours_finetune, synthetic_images

RUN = Path(__file__).resolve().parent / "run.py"
"""The script whose ``--compile-probe`` runs :func:`compile_probe` in a subprocess."""


def compile_probe() -> None:
    """Subprocess body: compile the demo's training and evaluation graphs; print JSON with the seconds."""
    torch.set_num_threads(int(os.environ.get("BT_BENCH_THREADS", "1")))
    use_device(torch.device(os.environ.get("BT_BENCH_DEVICE", "cpu")))
    data = synthetic_images(512, 512, 64)
    store = image_store(data["images"])
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
               "BT_BENCH_THREADS": str(torch.get_num_threads()), "BT_BENCH_DEVICE": str(current_device())}
        out = {}
        for label in ("cold", "warm"):
            proc = subprocess.run([sys.executable, str(RUN), "--compile-probe"], env=env, capture_output=True,
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


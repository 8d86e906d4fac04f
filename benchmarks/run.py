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
  Printed after it: ``memory_format``, the layout the engine trained in and what chose it (the host's rule, or
  ``BIASTRANSFER_MEMORY_FORMAT``; :mod:`biastransfer.train.layout`).
* ``trainings_ratio`` — trainings the demo study runs over the trainings the original protocol would run for the
  same grid (:func:`protocol.original_protocol_trainings`).
* ``demo_seconds`` (full) or ``demo_tiny_seconds`` (``--quick``) — the bundled demo study (``run demo.yaml``) in a
  subprocess with a fresh ``--out`` and ``--cache-dir`` (so data generation and base training are included);
  before it, the same study on the engine before the speed issue (``--demo-baseline``, default commit c8d2fc8,
  exported with ``git archive``: :mod:`demo_baseline`), with the ratio of the two and a run-by-run comparison of
  their results. ``run_speedup_vs_baseline_engine`` is the same comparison for one run, with its bound.
* ``fixed_feature_speedup`` — one ``fixed_feature`` run of the demo's model (the pipeline run's sizes, flips on)
  the slow way (the frozen backbone on every batch and every validation) over the frozen-feature fast path with
  the base's features cached, as for every run of a study after the base's first; ``…_cold`` on an empty cache;
  the same for ResNet-18 at 64x64 (``…_resnet18_64``) (:mod:`bench_frozen`).
* ``train_images_per_s_<arch>_224_<precision>`` — ResNet-50 and ViT-S/16 training throughput at 224×224 (fp32;
  on CUDA also bf16), inference throughput, and on CUDA one paper-size ResNet-50 run (N = 1,024, 25 epochs) ours
  and the original pipeline's way with their ratio ``paper_run_speedup`` (:mod:`bench_large`; on CPU the run's time
  is estimated from the throughputs unless ``--paper-run``).
* evaluation batch size and channels-last, each against its alternative; scaling of time per run with N and
  image size; (full mode) compilation: cold and warm compile seconds, saving per run and break-even.

Usage: ``python benchmarks/run.py [--quick] [--threads 1] [--device auto] [--json out.json] [--skip-demo]
[--demo-baseline REV|none]``.
The machine may be shared: every ratio compares measurements taken back to back in this process, never against
stored numbers. BENCHMARKS.md records the figures and what they mean.

This file parses the arguments and runs the benchmarks in order; each lives in its own module next to it
(``bench_trainings``, ``bench_micro``, ``bench_pipeline``, ``bench_mfu``, ``bench_scaling``, ``bench_frozen``,
``bench_large``, ``bench_compile``, ``bench_demo``), all reporting through :mod:`bench_common`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_common import DETAILS, FIGURES, current_device, emit, note, use_device  # noqa: E402
from bench_compile import bench_compile, compile_probe  # noqa: E402
from bench_demo import bench_demo  # noqa: E402
from bench_frozen import bench_frozen  # noqa: E402
from bench_large import bench_large  # noqa: E402
from bench_mfu import bench_mfu  # noqa: E402
from bench_micro import bench_micro  # noqa: E402
from bench_pipeline import bench_pipeline  # noqa: E402
from bench_scaling import bench_scaling  # noqa: E402
from bench_trainings import bench_trainings  # noqa: E402
from demo_baseline import BASELINE_REV  # noqa: E402

from biastransfer.train.layout import memory_format_provenance  # noqa: E402


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "device": str(current_device()),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "loadavg_at_start": load,
            "capability": torch.backends.cpu.get_cpu_capability(),
            "memory_format": memory_format_provenance(current_device())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller measurements (under 3 minutes on 2 cores)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: what each of the runner's CPU workers uses)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu or cuda[:N]")
    parser.add_argument("--workers", default="0,2", help="DataLoader workers of the reference, comma-separated")
    parser.add_argument("--only", default="", help="comma-separated subset: trainings,micro,pipeline,mfu,"
                                                    "scaling,frozen,large,compile,demo")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--paper-run", action="store_true",
                        help="measure the paper-size ResNet-50 run also on CPU (about an hour; on CUDA always)")
    parser.add_argument("--demo-baseline", default=BASELINE_REV,
                        help=f"also time the demo on the code of this git revision, before ours (default {BASELINE_REV}"
                             ", the engine before the speed issue; 'none' to skip)")
    parser.add_argument("--json", type=Path, help="also write every figure and detail to this JSON file")
    parser.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_probe:
        compile_probe()
        return
    from biastransfer.device import resolve_device

    use_device(resolve_device(args.device))
    torch.set_num_threads(args.threads)
    info = machine()
    note(f"machine: {info}")
    emit("machine", f"{info['cpu']}, {info['cores']} cores, GPU: {info['gpu'] or 'none'}, "
                    f"device {current_device()}, torch {info['torch']}, {args.threads} thread(s), "
                    f"load {info['loadavg_at_start'][0]:.1f}")
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
    if want("frozen"):
        bench_frozen(args.quick)
    if want("large"):
        bench_large(args.quick, paper_run_on_cpu=args.paper_run)
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

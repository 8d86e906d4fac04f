"""``mfu``: achieved training FLOP/s of the engine's steady-state loop over the FLOP/s of a large fp32 matmul
measured in this process (and, in full mode, the compiled and bf16 variants and the convolutions' share)."""

from __future__ import annotations

import contextlib
import math
import time

import torch
from bench_common import DETAILS, current_device, emit, sync

from biastransfer.models.architectures import build_model
from biastransfer.train.engine import FitConfig, Split, fit
from biastransfer.train.layout import choose, memory_format


def matmul_peak(n: int = 2048, reps: int = 5) -> dict[str, float]:
    """FLOP/s of a large fp32 matmul: MKL (torch.mm) and oneDNN (mkldnn_linear), best of ``reps`` each."""
    a, b = torch.randn(n, n, device=current_device()), torch.randn(n, n, device=current_device())
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
    if current_device().type != "cpu":
        return out
    with contextlib.suppress(Exception):  # oneDNN matmul; on Intel CPUs MKL is usually as fast
        am, bm = a.to_mkldnn(), b.to_mkldnn()
        out["onednn_linear"] = best(lambda: torch.ops.aten.mkldnn_linear(am, bm, None))
    return out


def train_step_flops(arch: str, resolution: int, batch: int = 64) -> int:
    """FLOPs of one training step (forward + backward) counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(arch).to(memory_format=memory_format())
    x = torch.rand(batch, 3, resolution, resolution).contiguous(memory_format=memory_format())
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
        fit(self.model, warm, None, self.config, seed=0, device=current_device())
        self.warmup = time.perf_counter() - t0
        self.times: list[float] = []

    def __call__(self) -> float:
        res = fit(self.model, self.split, None, self.config, seed=1, device=current_device())
        self.times.append(res.seconds / self.steps)
        return self.times[-1]

    @property
    def best(self) -> float:
        return min(self.times)


def conv_share(arch: str, resolution: int, batch: int = 64, steps: int = 3) -> dict[str, float]:
    """Profile a few eager steps: fraction of time in convolutions and the convolutions' achieved FLOP/s."""
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(arch).to(memory_format=memory_format())  # on the CPU, as after fit
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, resolution, resolution).contiguous(memory_format=memory_format())
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
        if not quick and current_device().type == "cpu":
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
            name, why = choose(current_device())
            emit("memory_format", f"{name} ({why})")  # the layout the engine trained in (train.layout)
        emit(f"mfu_{tag}", achieved / peak, "{:.3f}")
        if "conv_flops_per_s" in r:
            emit(f"conv_gflops_{tag}", r["conv_flops_per_s"] / 1e9, "{:.1f}")
            emit(f"conv_time_share_{tag}", r["conv_time_share"], "{:.2f}")
        if extras:
            emit(f"mfu_compiled_{tag}", r["flops_per_step"] / r["compiled_step_seconds"] / peak, "{:.3f}")
            emit(f"compile_step_speedup_{tag}", r["step_seconds"] / r["compiled_step_seconds"], "{:.2f}")
            emit(f"bf16_step_speedup_{tag}", r["step_seconds"] / r["bf16_step_seconds"], "{:.2f}")
    DETAILS["mfu"] = {"peaks": peaks, "threads": torch.get_num_threads(), "memory_format": choose(current_device()),
                      "cases": {f"{a}_{r}": v for (a, r), v in results.items()}}


"""Two engine choices against their alternatives: evaluation batch size and channels-last training steps."""

from __future__ import annotations

import time

import torch
from bench_common import DETAILS, current_device, emit

from biastransfer.models.architectures import build_model
from biastransfer.train.engine import eval_batch_size, predict_logits
from biastransfer.train.layout import memory_format


def bench_micro(quick: bool) -> None:
    """Two engine choices, each against its alternative, interleaved: evaluation batch size (auto vs the former
    1024) and channels-last vs contiguous training steps, on the demo's model at 32x32
    (``channels_last_step_speedup`` = contiguous step time / channels-last step time, whichever layout the host's
    rule picks: :mod:`biastransfer.train.layout`)."""
    if current_device().type != "cpu":
        return  # both choices are CPU-specific
    dev = current_device()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (2048, 32, 32, 3), dtype=torch.uint8, generator=gen).permute(0, 3, 1, 2)
    torch.manual_seed(0)
    model = build_model("small_resnet").to(memory_format=memory_format(dev))  # as after fit
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


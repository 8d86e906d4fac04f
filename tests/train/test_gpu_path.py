"""The GPU path: device memory shares, the evaluation batch for the device, the image store on the device.

The policy functions run everywhere; what needs a GPU (the store copied once, training on CUDA in fp32 and bf16,
workers sharing a GPU) skips on a machine without one, with the reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from biastransfer.backends.processes import gpu_share
from biastransfer.data.table import ImageStore
from biastransfer.device import limit_gpu_memory, memory_budget
from biastransfer.models.architectures import build_model
from biastransfer.train.engine import FitConfig, fit, make_split, predict_logits
from biastransfer.train.ops import ACTIVATION_BYTES_PER_INPUT_VALUE, eval_batch_size
from biastransfer.train.placement import DEVICE_STORE_SHARE, fits_on_device, store_tensor

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device (this machine has none)")
GPU = torch.device("cuda")  # a device object can be named without CUDA; nothing below allocates on it on CPU


def _store(n: int = 64, size: int = 16, channels: int = 3) -> ImageStore:
    rng = np.random.default_rng(0)
    return ImageStore(rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8))


# ----------------------------------------------------------------------------------- policies (run everywhere)


@pytest.mark.parametrize(("shape", "expected"), [((3, 32, 32), 64), ((3, 64, 64), 64), ((3, 128, 128), 16),
                                                 ((3, 224, 224), 8), ((1, 512, 512), 8)])
def test_cpu_evaluation_batch_is_small(shape, expected):
    assert eval_batch_size(torch.device("cpu"), shape) == expected


@pytest.mark.parametrize(("shape", "expected"), [((3, 32, 32), 1024), ((3, 128, 128), 1024), ((3, 224, 224), 512),
                                                 ((3, 512, 512), 128), ((3, 2048, 2048), 32)])
def test_gpu_evaluation_batch_is_large_when_memory_allows(shape, expected):
    assert eval_batch_size(GPU, shape, budget=10 ** 12) == expected


def test_gpu_evaluation_batch_fits_a_quarter_of_the_memory_budget():
    per_image = 224 * 224 * 3 * ACTIVATION_BYTES_PER_INPUT_VALUE
    for budget in (2 * 10 ** 9, 8 * 10 ** 9, 20 * 10 ** 9):
        size = eval_batch_size(GPU, (3, 224, 224), budget=budget)
        assert size * per_image <= budget / 4 < 2 * size * per_image  # the largest power of two that fits
        assert size & (size - 1) == 0
    assert eval_batch_size(GPU, (3, 224, 224), budget=0) == 1  # never 0


def test_memory_shares():
    assert gpu_share(1) == 1.0 and gpu_share(4) == 0.25
    assert limit_gpu_memory(torch.device("cpu"), 0.5) is False  # nothing to limit on CPU
    assert memory_budget(torch.device("cpu")) is None
    with pytest.raises(ValueError, match="more than 0"):
        limit_gpu_memory(torch.device("cpu"), 0.0)


def test_store_goes_on_the_device_only_when_it_fits():
    assert not fits_on_device(10, None)  # CPU: no copy
    assert fits_on_device(int(DEVICE_STORE_SHARE * 1000), 1000)
    assert not fits_on_device(int(DEVICE_STORE_SHARE * 1000) + 1, 1000)


def test_cpu_store_is_the_host_tensor_itself():
    store = _store()
    assert store_tensor(store, torch.device("cpu")) is store.tensor()
    assert not store.copied_to(torch.device("cpu"))


def test_store_too_large_for_the_device_stays_on_the_host(monkeypatch):
    import biastransfer.train.placement as placement

    store = _store()
    monkeypatch.setattr(placement, "memory_budget", lambda device: 100)  # far less than the store's 48 KiB
    monkeypatch.setattr(ImageStore, "copy_to", lambda self, device: pytest.fail("copied a store that does not fit"))
    assert store_tensor(store, GPU) is store.tensor()


def test_store_that_fits_is_copied_to_the_device(monkeypatch):
    import biastransfer.train.placement as placement

    store, calls = _store(), []
    monkeypatch.setattr(placement, "memory_budget", lambda device: 10 ** 9)
    monkeypatch.setattr(ImageStore, "copy_to", lambda self, device: calls.append(device) or self.tensor())
    store_tensor(store, GPU)
    assert calls == [GPU]


def test_a_copy_is_made_once_and_kept():
    """Every later call gets the same tensor: the frozen-feature cache recognises a store by identity."""
    store = _store()
    first = store.copy_to(torch.device("cpu"))
    assert store.copied_to(torch.device("cpu")) and store.copy_to(torch.device("cpu")) is first
    assert first.is_contiguous(memory_format=torch.channels_last) and torch.equal(first, store.tensor())


# ----------------------------------------------------------------------------------------------- on a GPU


@needs_cuda
def test_store_on_the_gpu_is_copied_once_and_channels_last():
    store = _store()
    on_gpu = store_tensor(store, GPU)
    assert on_gpu.is_cuda and on_gpu.dtype == torch.uint8
    assert store_tensor(store, GPU) is on_gpu
    assert on_gpu.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(on_gpu.cpu(), store.tensor())


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_on_the_gpu_matches_the_cpu(precision):
    """Training from a store on the device: fp32 agrees with the CPU within float tolerance (GPU kernels sum in
    another order); bf16 trains (its numbers differ beyond rounding) and returns float32 logits."""
    store = _store(96)
    labels = (store.tensor().float().mean(dim=(1, 2, 3)) > 127.5).float().numpy()
    rows = np.arange(96)
    results = {}
    for device in (torch.device("cpu"), GPU):
        torch.manual_seed(0)
        model = build_model("small_resnet")
        images = store_tensor(store, device)
        config = FitConfig(lr=0.05, batch_size=32, max_epochs=2, patience=5, precision=precision if
                           device.type == "cuda" else "fp32")
        res = fit(model, make_split(images, rows[:64], labels[:64]), make_split(images, rows[64:], labels[64:]),
                  config, seed=0, device=device)
        results[device.type] = (res, predict_logits(model, images[torch.as_tensor(rows[64:])], device=device,
                                                    precision=config.precision))
    (cpu, cpu_logits), (gpu, gpu_logits) = results["cpu"], results["cuda"]
    assert gpu_logits.dtype == torch.float32 and torch.isfinite(gpu_logits).all()
    if precision == "fp32":
        assert gpu.history[0]["train_loss"] == pytest.approx(cpu.history[0]["train_loss"], rel=1e-3)
        assert torch.allclose(gpu_logits, cpu_logits, atol=1e-2)


@needs_cuda
def test_a_memory_share_caps_what_the_process_may_use():
    total = torch.cuda.mem_get_info(0)[1]
    limit_gpu_memory(GPU, 0.25)
    try:
        assert memory_budget(GPU) <= 0.25 * total
        assert eval_batch_size(GPU, (3, 224, 224)) <= eval_batch_size(GPU, (3, 224, 224), budget=total)
    finally:
        limit_gpu_memory(GPU, 0.999)


@needs_cuda
def test_two_workers_share_the_gpu_end_to_end(tmp_path):
    """A tiny study on CUDA with two worker processes (each with half the GPU's memory) finishes and stores
    every run."""
    from biastransfer.cli import app
    from biastransfer.store.sqlite import ResultStore
    from tiny_study import tiny_study_dict

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tiny_study_dict()))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-report",
                                      "--workers", "2", "--device", "cuda", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert ResultStore.open_existing(tmp_path / "out").count() == 22

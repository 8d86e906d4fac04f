"""Tensor operations the engine and the frozen-feature fast path share: uint8 → float, random flips, the
forward pass's precision, the (weighted) losses and the evaluation batch size."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from biastransfer.train.layout import memory_format

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision: nothing for fp32, ``torch.autocast`` to bfloat16 for bf16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [0, 1], in the memory layout chosen for the images' device
    (:func:`~biastransfer.train.layout.memory_format`)."""
    return images.float().div_(255.0).contiguous(memory_format=memory_format(images.device))


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip a random half of the batch horizontally (one tensor op for the whole batch)."""
    mask = torch.rand(len(x), generator=generator) < 0.5
    mask = mask.to(x.device).view(-1, 1, 1, 1)
    return torch.where(mask, x.flip(3), x)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean_i w_i · BCE(σ(z_i), y_i); w = 1 when no weights are given."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if weights is not None:
        loss = loss * weights
    return loss.mean()


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean_i w_i · (−log softmax(z_i)[y_i]) for class indices y_i; w = 1 when no weights are given."""
    loss = F.cross_entropy(logits, targets, reduction="none")
    if weights is not None:
        loss = loss * weights.reshape(-1)
    return loss.mean()


def weighted_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The training loss for these targets: K-way cross-entropy for class indices (int64), else binary
    cross-entropy on each logit."""
    if targets.dtype == torch.int64:
        return weighted_cross_entropy(logits, targets, weights)
    return weighted_bce(logits, targets, weights)


ACTIVATION_BYTES_PER_INPUT_VALUE = 256
"""Device memory an evaluation budgets per input value (pixel × channel) of an image: 64 fp32 values of live
activations per input value. ResNet-50 at 224 keeps at most about 15 per input value alive in inference (its
widest outputs, 256 × 56 × 56, are 5.3 per input value, and a block holds two or three), a ViT-B/16 fewer; the
margin covers cuDNN workspaces."""


def eval_batch_size(device: torch.device, image_shape: tuple[int, ...], budget: int | None = None) -> int:
    """Evaluation batch size for ``image_shape`` (…, C, H, W) on ``device``.

    CPU: about 2^18 pixels per batch, between 8 and 64. Measured on 2 AMD EPYC cores (per-image inference time,
    BENCHMARKS.md): the 3-stage ResNet at 32x32 is fastest at 32-64 images per batch (about 3x faster than at
    1024), ResNet-18 at 64x64 at 64, at 224x224 at 8.

    CUDA: large batches keep the device busy: the largest power of two ≤ 2^25 pixels per batch, between 32 and
    1024 (1024 at 32x32 to 128x128, 512 at 224x224), and no more than a quarter of ``budget`` (bytes; default the
    process's :func:`~biastransfer.device.memory_budget`) holds at
    :data:`ACTIVATION_BYTES_PER_INPUT_VALUE` bytes per input value.

    Logits do not depend on the batch size (checked bit for bit on CPU), so this choice changes time only.
    """
    pixels = max(1, int(image_shape[-1]) * int(image_shape[-2]))
    if torch.device(device).type == "cpu":
        return int(min(64, max(8, _floor_pow2(2 ** 18 // pixels))))
    size = min(1024, max(32, _floor_pow2(2 ** 25 // pixels)))
    if budget is None:
        from biastransfer.device import memory_budget

        budget = memory_budget(torch.device(device))
    if budget is not None:
        channels = int(image_shape[-3]) if len(image_shape) >= 3 else 1
        per_image = pixels * channels * ACTIVATION_BYTES_PER_INPUT_VALUE
        size = min(size, max(1, _floor_pow2(budget // 4 // per_image)))
    return int(size)


def _floor_pow2(value: int) -> int:
    """The largest power of two ≤ ``value`` (1 for values below 2)."""
    return 1 << max(0, int(value).bit_length() - 1)

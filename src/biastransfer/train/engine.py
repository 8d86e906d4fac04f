"""The training engine: SGD with momentum on a weighted loss, batches sliced from an in-memory uint8 store.

The loss follows the targets (:func:`weighted_loss`): binary cross-entropy on each logit for float targets of shape
``(n,)`` or ``(n, k)`` (binary tasks, multi-label heads), K-way cross-entropy for integer class indices (a
multi-class head of K logits, :func:`make_split` with ``classes=True``).

No per-sample Python runs in the loop: a batch is one index into a uint8 NCHW (channels-last) tensor, converted
to float and flipped as a whole tensor. Early stopping watches the validation loss; the best weights are
restored. Every random choice (initialisation, batch order, flips) derives from the run seed, so the same seed
gives the same numbers on CPU.

Evaluation runs under ``torch.inference_mode()`` in batches sized for the device (:func:`eval_batch_size`): on
CPU small batches keep the activations in cache and are about 3x faster per image than batches of 1024 (see
BENCHMARKS.md); logits do not depend on the batch size. Two opt-in options trade exactness for speed:
``FitConfig.compile`` sends full batches through one process-wide ``torch.compile``d forward
(:mod:`biastransfer.train.compile`; numbers differ from eager by float rounding) and ``FitConfig.precision="bf16"``
autocasts the forward pass to bfloat16 (numbers differ beyond rounding). Both are off by default; BENCHMARKS.md
has the measurements behind that choice.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from biastransfer.seeding import derive_seed


class _Counter:
    """How many trainings (calls of :func:`fit`) this process ran: the runner reports it per study."""

    def __init__(self) -> None:
        self.count = 0


TRAININGS = _Counter()


PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision: nothing for fp32, ``torch.autocast`` to bfloat16 for bf16."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


SCHEDULES = ("constant", "cosine")
"""Learning-rate schedules of :class:`FitConfig`: ``constant`` (the paper's), or ``cosine`` annealing to 0 over each
phase's planned steps (``max_epochs`` × steps per epoch; early stopping, if it comes first, cuts it short)."""


@dataclass(frozen=True)
class FitConfig:
    """Optimisation settings of one training (all recorded with the run)."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    momentum: float = 0.9
    batch_size: int = 64
    max_epochs: int = 30
    patience: int = 5
    min_epochs: int = 1
    flip: bool = True
    eval_batch_size: int | None = None  # None: chosen for the device and image size (eval_batch_size())
    compile: bool = False  # torch.compile the forward pass (numbers differ from eager by float rounding)
    precision: str = "fp32"  # "bf16": autocast the forward pass to bfloat16 (faster where the CPU has AVX512-BF16;
    #                          numbers differ from fp32 beyond rounding). The loss is always computed in fp32.
    schedule: str = "constant"  # "cosine": lr_t = lr·(1 + cos(π·t/T))/2 per step over each phase's T steps

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")


@dataclass
class FitResult:
    best_val_loss: float
    best_epoch: int
    epochs: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Split:
    """Images (uint8 NCHW), targets and optional per-example weights.

    Targets are either binary (float, shape (n,) or (n, k); stored as (n, k)) or class indices (int64, shape (n,);
    stored as given), which makes the loss K-way cross-entropy."""

    images: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8:
            raise TypeError("Split.images must be a uint8 tensor")
        if len(self.images) != len(self.targets):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} targets")
        if self.targets.dtype == torch.int64:
            if self.targets.ndim != 1:
                raise ValueError(f"class-index targets must have shape (n,), got {tuple(self.targets.shape)}")
            if (self.targets < 0).any():
                raise ValueError("class-index targets must be >= 0 (drop examples with an unknown class)")
        else:
            if self.targets.ndim == 1:
                self.targets = self.targets[:, None]
            self.targets = self.targets.float()
        if self.weights is not None:
            self.weights = self.weights.float().reshape(-1, 1)

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> Split:
        w = None if self.weights is None else self.weights.to(device)
        return Split(self.images.to(device), self.targets.to(device), w)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] → float [0, 1], keeping channels-last memory format."""
    return images.float().div_(255.0).contiguous(memory_format=torch.channels_last)


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


def eval_batch_size(device: torch.device, image_shape: tuple[int, ...]) -> int:
    """Evaluation batch size: 1024 on accelerators; on CPU about 2^18 pixels per batch, between 8 and 64.

    Measured on 2 AMD EPYC cores (per-image inference time, BENCHMARKS.md): the 3-stage ResNet at 32x32 is
    fastest at 32-64 images per batch (about 3x faster than at 1024), ResNet-18 at 64x64 at 64, at 224x224 at 8.
    Logits do not depend on the batch size (checked bit for bit), so this choice changes time only.
    """
    if torch.device(device).type != "cpu":
        return 1024
    pixels = max(1, int(image_shape[-1]) * int(image_shape[-2]))
    size = 1 << max(0, (2 ** 18 // pixels).bit_length() - 1)  # largest power of two <= 2^18 / pixels
    return int(min(64, max(8, size)))


def _forward(compiled: bool):
    if not compiled:
        return lambda model, x: model(x)
    from biastransfer.train.compile import compiled_call

    return compiled_call()


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, *, device: torch.device,
                   batch_size: int | None = None, compile: bool = False, precision: str = "fp32") -> torch.Tensor:
    """Logits for all images under inference mode, in batches of ``batch_size`` (None: :func:`eval_batch_size`);
    the model is left in eval mode. With ``compile`` the last batch is zero-padded to the full size so that one
    compiled graph serves every call (eval-mode outputs are per-image, so padding changes nothing)."""
    model.eval()
    if batch_size is None:
        batch_size = eval_batch_size(device, tuple(images.shape))
    forward = _forward(compile)
    outs = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device, non_blocking=True))
        n = len(x)
        if compile and n < batch_size:
            x = torch.cat([x, x.new_zeros((batch_size - n, *x.shape[1:]))]).contiguous(
                memory_format=torch.channels_last)
        with autocast(device, precision):
            out = forward(model, x)
        outs.append(out[:n].float().cpu())
    if not outs:
        return torch.empty(0, 1)
    return torch.cat(outs)


@torch.inference_mode()
def evaluate_loss(model: nn.Module, split: Split, *, device: torch.device, batch_size: int | None = None,
                  compile: bool = False, precision: str = "fp32") -> float:
    logits = predict_logits(model, split.images, device=device, batch_size=batch_size, compile=compile,
                            precision=precision)
    w = None if split.weights is None else split.weights.cpu()
    return float(weighted_loss(logits, split.targets.cpu(), w))


def fit(model: nn.Module, train: Split, val: Split | None, config: FitConfig, *, seed: int,
        device: torch.device, phases: list | None = None,
        on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> FitResult:
    """Train ``model`` in place; return the best validation loss and the epoch it was reached.

    ``phases`` are transfer-mode phases (see :mod:`biastransfer.models.transfer`); None trains every layer.
    Early stopping: stop after ``patience`` epochs without a lower validation loss, restore the best weights.
    ``config.schedule`` ``cosine`` anneals the learning rate per step to 0 over each phase's planned steps.
    Without a validation split the model trains ``max_epochs`` and the final weights are kept.
    With ``config.compile`` full batches run through the compiled forward and the remainder batch eager.
    """
    t0 = time.perf_counter()
    TRAININGS.count += 1
    model.to(device).to(memory_format=torch.channels_last)
    train_d = train.to(device)
    n = len(train_d)
    if n < 2:
        raise ValueError(f"a training set needs at least 2 examples, got {n}")
    forward = _forward(config.compile)
    gen = torch.Generator().manual_seed(derive_seed(seed, "batches"))
    flip_gen = torch.Generator().manual_seed(derive_seed(seed, "flips"))

    if phases is None:
        plan = [(None, config.max_epochs)]
    else:
        budgets = [max(1, round(p.epoch_share * config.max_epochs)) for p in phases]
        plan = list(zip(phases, budgets, strict=True))

    best_loss, best_epoch, best_state = math.inf, 0, None
    history: list[dict[str, float]] = []
    epoch = 0
    for phase, budget in plan:
        if phase is None:
            params = [p for p in model.parameters()]
            for p in params:
                p.requires_grad_(True)
        else:
            params = phase.trainable_parameters(model)
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        sched = None
        if config.schedule == "cosine":
            steps = budget * sum(1 for start in range(0, n, config.batch_size) if n - start >= 2)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
        since_best = 0
        best_in_phase = math.inf
        for _ in range(budget):
            epoch += 1
            if phase is None:
                model.train()
            else:
                phase.set_train_mode(model)
            order = torch.randperm(n, generator=gen).to(device)
            # the epoch's loss sum stays on the device (float64, the same sums as Python floats): no per-step sync
            total, seen = torch.zeros((), dtype=torch.float64, device=device), 0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two examples
                    continue
                x = to_float(train_d.images[idx])
                if config.flip:
                    x = random_flip(x, flip_gen)
                w = None if train_d.weights is None else train_d.weights[idx]
                with autocast(device, config.precision):
                    logits = forward(model, x) if len(idx) == config.batch_size else model(x)
                loss = weighted_loss(logits.float(), train_d.targets[idx], w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += loss.detach().double() * len(idx)
                seen += len(idx)
            record = {"epoch": epoch, "train_loss": float(total) / max(seen, 1)}
            if val is not None:
                vloss = evaluate_loss(model, val, device=device, batch_size=config.eval_batch_size,
                                      compile=config.compile, precision=config.precision)
                record["val_loss"] = vloss
                if not math.isfinite(vloss):
                    break
                if vloss < best_in_phase - 1e-6:
                    best_in_phase, since_best = vloss, 0
                    if vloss < best_loss:
                        best_loss, best_epoch = vloss, epoch
                        best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += 1
            history.append(record)
            if on_epoch is not None:
                on_epoch(epoch, record)
            if val is not None and since_best >= config.patience and epoch >= config.min_epochs:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
        best_loss = history[-1].get("val_loss", math.nan) if history else math.nan
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return FitResult(best_val_loss=float(best_loss), best_epoch=best_epoch, epochs=epoch,
                     seconds=time.perf_counter() - t0, history=history)


def make_split(store_tensor: torch.Tensor, indices: np.ndarray, targets: np.ndarray,
               weights: np.ndarray | None = None, *, classes: bool = False) -> Split:
    """A Split of the given store rows (one gather, no per-sample Python); ``classes``: the targets are class
    indices (K-way cross-entropy) instead of binary labels."""
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32))
    dtype = np.int64 if classes else np.float32
    return Split(store_tensor[idx], torch.as_tensor(np.asarray(targets, dtype=dtype)), w)

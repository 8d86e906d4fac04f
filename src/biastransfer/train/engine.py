"""The training engine: SGD with momentum on a weighted loss, batches sliced from an in-memory uint8 store.

The loss follows the targets (:func:`weighted_loss`): binary cross-entropy on each logit for float targets of shape
``(n,)`` or ``(n, k)`` (binary tasks, multi-label heads), K-way cross-entropy for integer class indices (a
multi-class head of K logits, :func:`make_split` with ``classes=True``).

No per-sample Python runs in the loop: a batch is one index into a uint8 NCHW tensor (a :class:`Split`,
:mod:`biastransfer.train.split`), converted to float and flipped as a whole tensor. Model and batches are in the
memory layout chosen for the host (channels-last or contiguous, :mod:`biastransfer.train.layout`). Early stopping
watches the validation loss; the best weights are restored. Every random choice (initialisation, batch order,
flips) derives from the run seed, so the same seed gives the same numbers on the same host.

The loss is a training objective's (:mod:`biastransfer.train.objectives`: ERM, GroupDRO, DFR, Kamiran–Calders),
seen only through :class:`LossHook`; without one it is ERM's :func:`weighted_loss` (:class:`WeightedLoss`).

A phase that trains only the head on a frozen backbone takes the frozen-feature fast path
(:mod:`biastransfer.train.features`): the head trains on the backbone's features, computed once, with the same
batches, flips and early stopping (the same numbers within float rounding).

Evaluation runs under ``torch.inference_mode()`` in batches sized for the device (:func:`eval_batch_size`): on
CPU small batches keep the activations in cache and are about 3x faster per image than batches of 1024 (see
BENCHMARKS.md); logits do not depend on the batch size. Two opt-in options trade exactness for speed:
``FitConfig.compile`` sends full batches through one process-wide ``torch.compile``d forward
(:mod:`biastransfer.train.compile`; numbers differ from eager by float rounding) and ``FitConfig.precision="bf16"``
autocasts the forward pass to bfloat16 (numbers differ beyond rounding). Both are off by default; BENCHMARKS.md
has the measurements behind that choice.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from biastransfer.seeding import derive_seed
from biastransfer.train.features import FeatureSource, SplitFeatures, head_logits, head_only
from biastransfer.train.layout import memory_format
from biastransfer.train.ops import (  # noqa: F401  (re-exported: the engine's public helpers)
    PRECISIONS,
    autocast,
    eval_batch_size,
    random_flip,
    to_float,
    weighted_bce,
    weighted_cross_entropy,
    weighted_loss,
)
from biastransfer.train.split import Split, make_split  # noqa: F401  (re-exported: the engine's data)


class _Counter:
    """How many trainings (calls of :func:`fit`) this process ran: the runner reports it per study."""

    def __init__(self) -> None:
        self.count = 0


TRAININGS = _Counter()


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
    objective: dict[str, Any] = field(default_factory=dict)  # what the objective's after_fit reported


class LossHook(Protocol):
    """One training's objective as :func:`fit` sees it (fresh per training, from :meth:`Objective.start`):
    ``loss`` of a batch (fp32 logits, targets, weights (b, 1) or None, group ids (b,) or None); ``val_loss``, what
    early stopping watches (the validation split's logits, CPU); ``after_fit``, once the best weights are restored
    (DFR retrains the last layer there), its dict recorded in :attr:`FitResult.objective`."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             groups: torch.Tensor | None) -> torch.Tensor: ...

    def val_loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
                 groups: torch.Tensor | None) -> torch.Tensor: ...

    def after_fit(self, model: nn.Module, *, train: Split, val: Split | None, config: FitConfig, seed: int,
                  device: torch.device) -> dict[str, Any]: ...


class Objective(Protocol):
    def start(self, train: Split, val: Split | None) -> LossHook: ...  # the hook of one training


class WeightedLoss:
    """ERM, the default: :func:`weighted_loss` for training and validation; nothing after training."""

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             groups: torch.Tensor | None) -> torch.Tensor:
        return weighted_loss(logits, targets, weights)

    val_loss = loss

    def after_fit(self, model: nn.Module, **_: Any) -> dict[str, Any]:
        return {}


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
                memory_format=memory_format(x.device))
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
        on_epoch: Callable[[int, dict[str, float]], None] | None = None,
        features: FeatureSource | None = None, fast: bool = True,
        objective: Objective | None = None) -> FitResult:
    """Train ``model`` in place; return the best validation loss and the epoch it was reached.

    ``phases`` are transfer-mode phases (see :mod:`biastransfer.models.transfer`); None trains every layer.
    Early stopping: stop after ``patience`` epochs without a lower validation loss, restore the best weights.
    ``config.schedule`` ``cosine`` anneals the learning rate per step to 0 over each phase's planned steps.
    Without a validation split the model trains ``max_epochs`` and the final weights are kept.
    With ``config.compile`` full batches run through the compiled forward and the remainder batch eager.

    A phase that trains only the head on a frozen backbone (:func:`~biastransfer.train.features.head_only`) takes
    the frozen-feature fast path unless ``fast`` is False: the head trains on the backbone's features, computed
    once (from ``features``, e.g. a :class:`~biastransfer.train.features.RowFeatures` cache, or else from the
    splits), with the same batches, flips and early stopping; the numbers equal the slow path's within rounding.

    ``objective`` (None: ERM, :class:`WeightedLoss`) gives the training loss, the validation loss early stopping
    watches, and a hook after training (:class:`LossHook`).
    """
    t0 = time.perf_counter()
    TRAININGS.count += 1
    model.to(device).to(memory_format=memory_format(device))  # the host's layout (train.layout)
    train_d = train.to(device)
    n = len(train_d)
    if n < 2:
        raise ValueError(f"a training set needs at least 2 examples, got {n}")
    forward = _forward(config.compile)
    hook = WeightedLoss() if objective is None else objective.start(train_d, val)
    gen = torch.Generator().manual_seed(derive_seed(seed, "batches"))
    flip_gen = torch.Generator().manual_seed(derive_seed(seed, "flips"))

    if phases is None:
        plan = [(None, config.max_epochs)]
    else:
        budgets = [max(1, round(p.epoch_share * config.max_epochs)) for p in phases]
        plan = list(zip(phases, budgets, strict=True))

    best_loss, best_epoch, best_state, best_partial = math.inf, 0, None, False
    history: list[dict[str, float]] = []
    epoch = 0
    for phase, budget in plan:
        if phase is None:
            params = [p for p in model.parameters()]
            for p in params:
                p.requires_grad_(True)
        else:
            params = phase.trainable_parameters(model)
        head = None
        if fast and head_only(phase, model):
            src = features if features is not None else SplitFeatures(
                model, train_d.images, None if val is None else val.images, device=device,
                precision=config.precision)
            head = _HeadData(src, config.flip, val is not None, device)
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
            head_batch = None if head is None else head.batch(flip_gen)
            # the epoch's loss sum stays on the device (float64, the same sums as Python floats): no per-step sync
            total, seen = torch.zeros((), dtype=torch.float64, device=device), 0
            for start in range(0, n, config.batch_size):
                idx = order[start:start + config.batch_size]
                if len(idx) < 2:  # BatchNorm needs two examples
                    continue
                w = None if train_d.weights is None else train_d.weights[idx]
                if head_batch is not None:  # the fast path: the head on the batch's (possibly mirrored) features
                    with autocast(device, config.precision):
                        logits = model.head(head_batch(idx))
                else:
                    x = to_float(train_d.images[idx])
                    if config.flip:
                        x = random_flip(x, flip_gen)
                    with autocast(device, config.precision):
                        logits = forward(model, x) if len(idx) == config.batch_size else model(x)
                g = None if train_d.groups is None else train_d.groups[idx]
                loss = hook.loss(logits.float(), train_d.targets[idx], w, g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if sched is not None:
                    sched.step()
                total += loss.detach().double() * len(idx)
                seen += len(idx)
            record = {"epoch": epoch, "train_loss": float(total) / max(seen, 1)}
            if val is not None:
                if head is not None:
                    vloss = head.val_loss(model, val, config.precision, hook)
                else:
                    vloss = _val_loss(hook, predict_logits(
                        model, val.images, device=device, batch_size=config.eval_batch_size,
                        compile=config.compile, precision=config.precision), val)
                record["val_loss"] = vloss
                if not math.isfinite(vloss):
                    break
                if vloss < best_in_phase - 1e-6:
                    best_in_phase, since_best = vloss, 0
                    if vloss < best_loss:
                        best_loss, best_epoch = vloss, epoch
                        best_state = (copy.deepcopy(model.state_dict()) if head is None else
                                      {f"head.{k}": v.detach().clone() for k, v in model.head.state_dict().items()})
                        best_partial = head is not None
                else:
                    since_best += 1
            history.append(record)
            if on_epoch is not None:
                on_epoch(epoch, record)
            if val is not None and since_best >= config.patience and epoch >= config.min_epochs:
                break
        if best_partial:  # a best head of the fast path: the rest of the model is as it was in that phase
            best_state, best_partial = {**copy.deepcopy(model.state_dict()), **best_state}, False
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
        best_loss = history[-1].get("val_loss", math.nan) if history else math.nan
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    info = hook.after_fit(model, train=train, val=val, config=config, seed=seed, device=device)
    return FitResult(best_val_loss=float(best_loss), best_epoch=best_epoch, epochs=epoch,
                     seconds=time.perf_counter() - t0, history=history, objective=info)


def _val_loss(hook: LossHook, logits: torch.Tensor, val: Split) -> float:  # from the validation logits (CPU)
    w = None if val.weights is None else val.weights.cpu()
    g = None if val.groups is None else val.groups.cpu()
    return float(hook.val_loss(logits, val.targets.cpu(), w, g))


class _HeadData:
    """The fast path's data for one phase: the features of the training images, of their mirror images (with
    flips), and of the validation images, on the device."""

    def __init__(self, source: FeatureSource, flip: bool, with_val: bool, device: torch.device) -> None:
        self.plain = source.train(False).to(device)
        self.mirrored = source.train(True).to(device) if flip else None
        self.val = source.val().to(device) if with_val else None
        self.device = device

    def batch(self, flip_gen: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
        """The features of a batch of indices; with flips, drawn from ``flip_gen`` exactly as :func:`random_flip`
        draws them for the batch's images (one ``torch.rand`` per batch)."""
        def features(idx: torch.Tensor) -> torch.Tensor:
            if self.mirrored is None:
                return self.plain[idx]
            mask = (torch.rand(len(idx), generator=flip_gen) < 0.5).to(self.device).view(-1, 1)
            return torch.where(mask, self.mirrored[idx], self.plain[idx])
        return features

    def val_loss(self, model: nn.Module, val: Split, precision: str, hook: LossHook) -> float:
        """The slow path's validation loss, from the validation features."""
        assert self.val is not None
        return _val_loss(hook, head_logits(model, self.val, device=self.device, precision=precision), val)

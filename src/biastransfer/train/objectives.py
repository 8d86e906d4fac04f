"""Training objectives: the algorithmic baselines, a registry beside the interventions (DESIGN principle 3).

An intervention picks the data; an objective says how a model learns from it. Every objective is a frozen
pydantic model registered in :data:`OBJECTIVES` whose fields are its typed options; :meth:`TrainingObjective.start`
gives the engine the hook of one training (:class:`~biastransfer.train.engine.LossHook`: ``loss`` per batch,
``val_loss`` for early stopping, ``after_fit``), so :func:`~biastransfer.train.engine.fit` never learns which
objective made its loss. Notation: ℓ_i is example i's loss (binary cross-entropy averaged over the logits, or
K-way cross-entropy), w_i its weight from the intervention (1 without), g_i its group.

``erm``
    The default: mean_i w_i·ℓ_i (:func:`~biastransfer.train.ops.weighted_loss`); the loss every run had before
    objectives existed (same numbers, same run keys).
``group_dro``
    Sagawa et al. 2020 (online GroupDRO). Per batch, L_g = Σ_{i∈g} w_i·ℓ_i / Σ_{i∈g} w_i for the groups in the
    batch; q_g ← q_g·exp(η·L_g) (L_g = 0, factor 1, for a group absent from the batch), q ← q/Σq; the loss is
    Σ_g q_g·L_g. q starts uniform over the groups of the training split; ``eta`` is η. Early stopping watches
    the worst group's loss on the validation split, max_g L_g. ``adjustment`` C adds C/√n_g (n_g: the group's
    training count) to every L_g in the update of q (Sagawa et al.'s generalisation adjustment; 0 by default).
``dfr``
    Kirichenko et al. 2022 (Deep Feature Reweighting). ERM finetuning, then only the last layer is retrained on
    a group-balanced held-out set: the validation split with every group present subsampled (seeded, without
    replacement) to the smallest group's count, unweighted, on the frozen backbone's features (the engine's
    frozen-feature fast path); the backbone stays bit for bit as ERM left it. ``solver: l1_logistic`` fits the
    head as the paper does instead: ℓ1 logistic regression (scikit-learn) with C tuned on halves of the held-out
    split, averaged over balanced subsamples (:mod:`biastransfer.train.dfr`).
``kamiran_calders``
    Kamiran & Calders 2012 (reweighing): w'_i = w_i·P(a_i)·P(y_i)/P(a_i, y_i), the probabilities from the
    (w-weighted) counts of the finetuning split, so that a and y are independent under w'. The validation loss
    is weighted the same way with the validation split's own counts.

Groups are ids ≥ 0 per example (``Split.groups``); the runs of biastransfer use the (a, y) cell, ``2·a + y``
(:func:`cell_groups`), which Kamiran–Calders needs (it reads a and y back from it). docs/objectives.md has the
formulas, the comparison with the ``reweight`` intervention and the study-file syntax.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from biastransfer.models.transfer import FREEZE_BACKBONE, Phase
from biastransfer.registry import Registry, make_registered
from biastransfer.seeding import derive_seed, rng
from biastransfer.train.dfr import balanced_subsample, logistic_head
from biastransfer.train.engine import FitConfig, LossHook, Split, WeightedLoss, fit, weighted_loss
from biastransfer.train.features import compute_features

CELL_NAMES = {0: "(a=0, y=0)", 1: "(a=0, y=1)", 2: "(a=1, y=0)", 3: "(a=1, y=1)"}
"""The group ids of :func:`cell_groups` → the cells they stand for."""


def cell_groups(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The group id of each example's (a, y) cell: ``2·a + y`` (0: (a=0, y=0) … 3: (a=1, y=1)), int64."""
    a, y = np.asarray(a), np.asarray(y)
    for name, v in (("a", a), ("y", y)):
        if v.size and not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0/1) to form (a, y) groups; found {np.unique(v)[:5].tolist()}")
    return (2 * a.astype(np.int64) + y.astype(np.int64)).astype(np.int64)


def example_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ℓ_i per example, shape (n,): K-way cross-entropy for class indices, else binary cross-entropy averaged
    over the logits (so that mean_i ℓ_i is :func:`~biastransfer.train.ops.weighted_loss` without weights)."""
    if targets.dtype == torch.int64:
        return F.cross_entropy(logits, targets, reduction="none")
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)


def group_losses(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None, groups: torch.Tensor,
                 ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_g, present) for the groups ``ids``: L_g = Σ_{i∈g} w_i·ℓ_i / Σ_{i∈g} w_i (0 where the group has no
    weight in the batch), ``present`` whether it has any."""
    losses = example_losses(logits, targets)
    w = torch.ones_like(losses) if weights is None else weights.reshape(-1).to(losses.dtype)
    member = groups.reshape(1, -1) == ids.to(groups.device).reshape(-1, 1)  # (G, b)
    mass = (member * w).sum(dim=1)
    present = mass > 0
    total = (member * (w * losses)).sum(dim=1)
    return torch.where(present, total / mass.clamp_min(torch.finfo(mass.dtype).tiny), torch.zeros_like(total)), present


def _need_groups(split: Split, objective: str, what: str = "training") -> torch.Tensor:
    if split.groups is None:
        raise ValueError(f"objective {objective!r} needs group ids on the {what} split (Split.groups)")
    return split.groups


class TrainingObjective(BaseModel):
    """Base of the registered objectives: a frozen pydantic model whose fields are the typed options."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_groups: ClassVar[bool] = True
    """Whether the runs must give the engine group ids (the (a, y) cells)."""
    baseline: ClassVar[bool] = False
    """The objective without a fix (what a user trains by default): the reports compare every other objective with
    it, and its runs keep the key of a run without an objective. Exactly one registered objective sets it
    (:func:`baseline_objective`)."""

    def start(self, train: Split, val: Split | None) -> LossHook:
        """The hook of one training on ``train`` (validated against ``val``)."""
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> list[str]:
        return list(cls.model_fields)

    def label(self) -> str:
        """``name`` or ``name(option=value, …)``: how runs and reports name it."""
        opts = self.model_dump(exclude_defaults=True)
        inner = ", ".join(f"{k}={v}" for k, v in opts.items())
        return f"{self.registry_name}({inner})" if opts else self.registry_name


OBJECTIVES: Registry[type[TrainingObjective]] = Registry("objective")


def baseline_objective() -> str:
    """The name of the registered objective marked :attr:`TrainingObjective.baseline` (``erm``)."""
    found = [name for name, cls in OBJECTIVES.items() if cls.baseline]
    if len(found) != 1:
        raise RuntimeError(f"exactly one registered objective must be the baseline; found {', '.join(found) or 'none'}")
    return found[0]


def get_objective(name: str, **options: Any) -> TrainingObjective:
    """The registered objective ``name`` with its options; unknown names or options are errors naming them and
    the allowed ones (``objective 'group_dro' has no option 'step'; allowed: eta, adjustment``)."""
    return make_registered(OBJECTIVES, name, options)


# -------------------------------------------------------------------------------------------------------- ERM
@OBJECTIVES.register("erm")
class Erm(TrainingObjective):
    """Empirical risk minimisation: loss = mean_i w_i·ℓ_i (the default; weights from the intervention)."""

    description: ClassVar[str] = "empirical risk: the (intervention-)weighted mean loss (default)"
    needs_groups: ClassVar[bool] = False
    baseline: ClassVar[bool] = True

    def start(self, train: Split, val: Split | None) -> LossHook:
        return WeightedLoss()


# --------------------------------------------------------------------------------------------------- GroupDRO
class GroupDROHook(WeightedLoss):
    """The state of one GroupDRO training: ``q`` (float64, one weight per group of ``ids``)."""

    def __init__(self, eta: float, ids: torch.Tensor, adjustment: torch.Tensor | None = None) -> None:
        self.eta, self.ids = eta, ids
        self.q = torch.full((len(ids),), 1.0 / len(ids), dtype=torch.float64)
        self.adjustment = torch.zeros(len(ids), dtype=torch.float64) if adjustment is None else \
            adjustment.to(torch.float64)
        """C/√n_g per group of ``ids`` (0 without the generalisation adjustment)."""

    def update(self, group_loss: torch.Tensor) -> torch.Tensor:
        """q_g ← q_g·exp(η·(L_g + C/√n_g)), then q ← q/Σq; a group absent from the batch has L_g = 0, so without
        the adjustment its unnormalised weight is kept (factor exp(0) = 1) and only the normalisation moves it.
        Returns q (on the losses' device, float64 where the device has it: no host sync per step)."""
        if self.q.device != group_loss.device:
            dtype = torch.float32 if group_loss.device.type == "mps" else torch.float64
            self.q = self.q.to(device=group_loss.device, dtype=dtype)
            self.adjustment = self.adjustment.to(device=group_loss.device, dtype=dtype)
        q = self.q * torch.exp(self.eta * (group_loss.detach().to(self.q.dtype) + self.adjustment))
        self.q = q / q.sum()
        return self.q

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             groups: torch.Tensor | None) -> torch.Tensor:
        assert groups is not None, "group_dro needs group ids"
        lg, _ = group_losses(logits, targets, weights, groups, self.ids)
        q = self.update(lg).to(lg.device, lg.dtype)
        return (q * lg).sum()

    def val_loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
                 groups: torch.Tensor | None) -> torch.Tensor:
        assert groups is not None, "group_dro needs group ids on the validation split"
        lg, present = group_losses(logits, targets, weights, groups, torch.unique(groups))
        return lg[present].max()

    def after_fit(self, model: nn.Module, **_: Any) -> dict[str, Any]:
        return {"group_weights": {str(int(g)): float(v) for g, v in zip(self.ids, self.q.cpu(), strict=True)}}


@OBJECTIVES.register("group_dro")
class GroupDRO(TrainingObjective):
    """Online GroupDRO (Sagawa et al. 2020, Algorithm 1). Per batch: L_g = weighted mean loss of group g;
    q_g ← q_g·exp(η·L_g) for every group (L_g = 0 for a group absent from the batch), q ← q / Σ_g q_g; loss =
    Σ_g q_g·L_g. q starts uniform over the groups of the training split. Early stopping watches the worst group's
    validation loss max_g L_g. With the generalisation adjustment C (``adjustment``, Sagawa et al. §3.3), the
    update uses L_g + C/√n_g, n_g the number of examples of group g in the training split, for every group at
    every step (as the original code does); C = 0 (the default) is Algorithm 1."""

    description: ClassVar[str] = "GroupDRO (Sagawa et al. 2020): online worst-group weights over the (a, y) cells"
    eta: float = Field(0.01, gt=0.0, description="step size η of the group weights")
    adjustment: float = Field(0.0, ge=0.0, description="generalisation adjustment C: the weights' update adds "
                                                       "C/√n_g to group g's loss (n_g: its training count)")

    def start(self, train: Split, val: Split | None) -> LossHook:
        groups = _need_groups(train, "group_dro")
        if val is not None:
            _need_groups(val, "group_dro", "validation")
        ids, counts = torch.unique(groups.cpu(), return_counts=True)
        adjustment = self.adjustment / counts.to(torch.float64).sqrt() if self.adjustment else None
        return GroupDROHook(self.eta, ids, adjustment)


# -------------------------------------------------------------------------------------------- Kamiran–Calders
def kamiran_calders_factors(a: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """P(a)·P(y)/P(a, y) per cell, indexed by the group id ``2·a + y`` (shape (4,); 0 for an empty cell), the
    probabilities from the w-weighted counts (float64)."""
    a, y = np.asarray(a), np.asarray(y)
    w = np.ones(a.size) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    total = w.sum()
    factors = np.zeros(4)
    if total <= 0:
        return factors
    for ca in (0, 1):
        for cy in (0, 1):
            joint = w[(a == ca) & (y == cy)].sum() / total
            if joint > 0:
                factors[2 * ca + cy] = (w[a == ca].sum() / total) * (w[y == cy].sum() / total) / joint
    return factors


def kamiran_calders_weights(a: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """w'_i = w_i·P(a_i)·P(y_i)/P(a_i, y_i), the probabilities from the w-weighted counts (float64)."""
    a, y = np.asarray(a), np.asarray(y)
    w = np.ones(a.size) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    return w * kamiran_calders_factors(a, y, weights)[cell_groups(a, y)]


class KamiranCaldersHook(WeightedLoss):
    """ERM with the reweighing factors P(a)P(y)/P(a, y) per (a, y) cell, one table per split."""

    def __init__(self, train: Split, val: Split | None) -> None:
        self.train_factors = self._factors(train, "training")
        self.val_factors = None if val is None else self._factors(val, "validation")

    @staticmethod
    def _factors(split: Split, what: str) -> torch.Tensor:
        g = _need_groups(split, "kamiran_calders", what).cpu().numpy()
        if g.size and g.max() > 3:
            raise ValueError("kamiran_calders reads a and y from the group ids 2·a + y (0 … 3); "
                             f"found group {int(g.max())}")
        w = None if split.weights is None else split.weights.cpu().numpy().reshape(-1)
        return torch.as_tensor(kamiran_calders_factors(g // 2, g % 2, w), dtype=torch.float32)

    @staticmethod
    def _weighted(factors: torch.Tensor, weights: torch.Tensor | None, groups: torch.Tensor) -> torch.Tensor:
        f = factors.to(groups.device)[groups].reshape(-1, 1)
        return f if weights is None else weights * f

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
             groups: torch.Tensor | None) -> torch.Tensor:
        assert groups is not None
        if self.train_factors.device != groups.device:  # once: no copy per step
            self.train_factors = self.train_factors.to(groups.device)
        return weighted_loss(logits, targets, self._weighted(self.train_factors, weights, groups))

    def val_loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
                 groups: torch.Tensor | None) -> torch.Tensor:
        assert groups is not None and self.val_factors is not None
        return weighted_loss(logits, targets, self._weighted(self.val_factors, weights, groups))

    def after_fit(self, model: nn.Module, **_: Any) -> dict[str, Any]:
        return {"cell_factors": {CELL_NAMES[c]: float(f) for c, f in enumerate(self.train_factors.cpu())}}


@OBJECTIVES.register("kamiran_calders")
class KamiranCalders(TrainingObjective):
    """Reweighing (Kamiran & Calders 2012): example weight w_i·P(a_i)·P(y_i)/P(a_i, y_i), the probabilities
    counted (w-weighted) on the finetuning split; under it a and y are independent and their marginals kept.
    On a balanced set (P(a=1) = P(y=1) = 1/2) it is the ``reweight`` intervention at level 0.5 = P(a=1)."""

    description: ClassVar[str] = "reweighing (Kamiran & Calders 2012): weights P(a)P(y)/P(a,y) on the finetuning set"

    def start(self, train: Split, val: Split | None) -> LossHook:
        return KamiranCaldersHook(train, val)


# -------------------------------------------------------------------------------------------------------- DFR
class DFRHook(WeightedLoss):
    """ERM, then the last layer retrained on the balanced held-out set (:meth:`after_fit`)."""

    def __init__(self, options: DFR) -> None:
        self.options = options

    def after_fit(self, model: nn.Module, *, train: Split, val: Split | None, config: FitConfig, seed: int,
                  device: torch.device, **_: Any) -> dict[str, Any]:
        if val is None:
            raise ValueError("objective 'dfr' retrains the last layer on the held-out (validation) split; "
                             "the training has none")
        groups = _need_groups(val, "dfr", "held-out (validation)").cpu().numpy()
        if self.options.solver == "l1_logistic":
            return self._logistic(model, val, groups, seed, device)
        keep = balanced_subsample(groups, rng(seed, "dfr-heldout"))
        idx = torch.as_tensor(keep)
        held = Split(val.images[idx.to(val.images.device)], val.targets[idx.to(val.targets.device)], None,
                     torch.as_tensor(groups[keep]))
        if self.options.reinit:  # a fresh last layer, seeded (on the CPU, whatever the device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(seed, "dfr-head"))
                fresh = nn.Linear(model.head.in_features, model.head.out_features)
            model.head.load_state_dict(fresh.state_dict())
        epochs = self.options.epochs or config.max_epochs
        res = fit(model, held, None, dataclasses.replace(config, max_epochs=epochs), seed=derive_seed(seed, "dfr"),
                  device=device, phases=[Phase("dfr_last_layer", 1.0, freeze=FREEZE_BACKBONE)])
        ids, counts = np.unique(groups[keep], return_counts=True)
        return {"dfr_heldout": int(keep.size), "dfr_epochs": res.epochs,
                "dfr_train_loss": res.history[-1]["train_loss"] if res.history else float("nan"),
                "dfr_groups": {str(int(g)): int(c) for g, c in zip(ids, counts, strict=True)}}

    def _logistic(self, model: nn.Module, val: Split, groups: np.ndarray, seed: int,
                  device: torch.device) -> dict[str, Any]:
        """The head replaced by :func:`~biastransfer.train.dfr.logistic_head` on the frozen features of the whole
        held-out split (its balanced subsamples are drawn inside)."""
        if val.targets.dtype == torch.int64:
            raise ValueError("objective 'dfr' with solver 'l1_logistic' fits binary targets; this task has "
                             f"{model.head.out_features} classes: use solver 'sgd'")
        feats = compute_features(model, val.images, flip=False, device=device).numpy()
        fitted = logistic_head(feats, val.targets.cpu().numpy(), groups, C=self.options.C, fits=self.options.fits,
                               generator=rng(seed, "dfr-heldout"))
        with torch.no_grad():
            model.head.weight.copy_(torch.as_tensor(fitted.weight, dtype=model.head.weight.dtype))
            model.head.bias.copy_(torch.as_tensor(fitted.bias, dtype=model.head.bias.dtype))
        ids, counts = np.unique(groups, return_counts=True)
        k = int(counts.min())
        return {"dfr_heldout": k * int(ids.size), "dfr_groups": {str(int(g)): k for g in ids},
                "dfr_solver": "l1_logistic", "dfr_C": fitted.C, "dfr_fits": self.options.fits,
                "dfr_C_scores": {f"{c:g}": v for c, v in fitted.scores.items()},
                "dfr_nonzero": fitted.nonzero}


@OBJECTIVES.register("dfr")
class DFR(TrainingObjective):
    """Deep Feature Reweighting (Kirichenko et al. 2022): ERM finetuning, then only the last layer (W, b) is
    retrained (re-initialised unless ``reinit`` is false): (W, b) = argmin mean_{i∈B} ℓ(W·φ(x_i) + b, y_i) by
    SGD, φ the frozen backbone's features (the engine's frozen-feature fast path), B the group-balanced held-out
    set: the validation split with every group g present subsampled to |B ∩ g| = min_g' n_g' (seeded, exact
    counts), unweighted; ``epochs`` epochs (default: the study's ``max_epochs``) without early stopping. With
    ``solver: l1_logistic`` the head is instead the paper's own fit: an ℓ1-regularised logistic regression on the
    standardised features, C tuned by worst-group accuracy on random halves of the held-out split, coefficients
    averaged over ``fits`` balanced subsamples (:mod:`biastransfer.train.dfr`). The backbone is untouched."""

    description: ClassVar[str] = ("DFR (Kirichenko et al. 2022): ERM, then the last layer retrained on a "
                                  "group-balanced held-out set")
    epochs: int | None = Field(None, ge=1, description="epochs of the last-layer retraining (None: max_epochs)")
    reinit: bool = Field(True, description="re-initialise the last layer before retraining it")
    solver: Literal["sgd", "l1_logistic"] = Field(
        "sgd", description="sgd: the run's SGD settings on the balanced set; l1_logistic: Kirichenko et al.'s "
                           "ℓ1 logistic regression (scikit-learn), C tuned on halves, averaged over fits")
    C: float | None = Field(None, gt=0.0, description="l1_logistic's inverse regularisation strength (None: tuned "
                                                       "over 1, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)")
    fits: int = Field(20, ge=1, description="l1_logistic's halvings to tune C, and balanced subsamples averaged")

    @model_validator(mode="after")
    def _options_of_the_solver(self) -> DFR:
        own = {"sgd": {"epochs", "reinit"}, "l1_logistic": {"C", "fits"}}
        other = "l1_logistic" if self.solver == "sgd" else "sgd"
        stray = sorted(own[other] & self.model_fields_set)
        if stray:
            raise ValueError(f"option {', '.join(stray)} belongs to solver {other!r}, and this dfr uses solver "
                             f"{self.solver!r}")
        return self

    def start(self, train: Split, val: Split | None) -> LossHook:
        if val is not None:
            _need_groups(val, "dfr", "held-out (validation)")
        return DFRHook(self)

"""Transfer modes: which parts of a base are trained during finetuning, and for how long.

A :class:`TransferMode` is a list of :class:`Phase` objects. The training engine runs the phases in order,
giving each ``epoch_share`` of the epoch budget; at the start of a phase it calls
:meth:`Phase.trainable_parameters` (sets ``requires_grad`` and returns the parameters to optimise: build a
fresh optimizer per phase) and, whenever it switches the model to training, :meth:`Phase.set_train_mode`
instead of ``model.train()`` (frozen BatchNorm layers stay in eval mode, so their running statistics do not
change).

Modes:

``full`` (default)
    Every layer trains and BatchNorm statistics update: the paper's finetuning (it never freezes).
``fixed_feature``
    Only the head trains (Salman et al.'s fixed-feature transfer). BatchNorm in the backbone is frozen by
    default; ``update_bn=True`` lets its running statistics update in train mode, as Salman et al.'s code
    did (their affine parameters stay frozen).
``freeze_stages``
    Option ``k``: freeze the stem and the first ``k`` stages; ``0 <= k <= number of stages``. ResNets: the stem is
    everything of the backbone outside the stages ``layer1`` … ``layerN`` (4 for torchvision ResNets, 3 for
    ``small_resnet``). ViTs freeze in blocks: the stem is the patch embedding, class token and position
    embedding, the stages are the transformer blocks ``blocks.0`` … (12 for ViT-S/16 and ViT-B/16); ConvNeXts:
    ``stem`` and ``stages.0`` … ``stages.3``. The final norm of a ViT or ConvNeXt (after the last stage) is
    neither stem nor stage, so it trains for every ``k``. ``update_bn`` as above.
``linear_probe_then_finetune``
    Option ``probe_share`` (default 0.5): a first phase training only the head with BatchNorm frozen, then
    full finetuning for the rest of the budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from biastransfer.models.architectures import Classifier
from biastransfer.registry import Registry

__all__ = [
    "TRANSFER_MODES",
    "FixedFeature",
    "FreezeStages",
    "Full",
    "LinearProbeThenFinetune",
    "Phase",
    "TransferMode",
    "frozen_backbone_children",
    "get_transfer_mode",
    "stage_names",
]

_STAGE_RE = re.compile(r"layer(\d+)$")

FREEZE_NOTHING = "nothing"
FREEZE_BACKBONE = "backbone"
FREEZE_STAGES = "stages"


def stage_names(model: Classifier) -> list[str]:
    """The backbone's stages in order: its ``transfer_stages`` if it names them (``blocks.0`` … for a ViT,
    ``stages.0`` … for a ConvNeXt), else its direct children ``layer1`` … ``layerN`` (ResNets)."""
    declared = getattr(model.backbone, "transfer_stages", None)
    if declared is not None:
        return list(declared)
    names = [n for n, _ in model.backbone.named_children() if _STAGE_RE.fullmatch(n)]
    return sorted(names, key=lambda n: int(_STAGE_RE.fullmatch(n).group(1)))  # type: ignore[union-attr]


def _top_level(model: Classifier) -> list[str]:
    """The backbone's direct children and direct parameters (a ViT's ``cls_token``, ``pos_embed``)."""
    backbone = model.backbone
    return [n for n, _ in backbone.named_children()] + [n for n, _ in backbone.named_parameters(recurse=False)]


def frozen_backbone_children(model: Classifier, freeze: str, k: int = 0) -> list[str]:
    """Names (dotted, relative to the backbone) of the modules and parameters frozen by ``freeze``.

    ``nothing``: none. ``backbone``: every direct child and direct parameter. ``stages``: the stem plus the first
    ``k`` stages. The stem is the backbone's ``transfer_stem`` if it names one (a ViT's patch embedding, class
    token and position embedding; a ConvNeXt's ``stem``: what follows the last stage, a final norm, trains),
    else every direct child that is not a stage. ``k`` outside ``0 … number of stages`` raises
    :class:`ValueError` naming the allowed range for the model's arch.
    """
    if freeze == FREEZE_NOTHING:
        return []
    if freeze == FREEZE_BACKBONE:
        return _top_level(model)
    if freeze == FREEZE_STAGES:
        stages = stage_names(model)
        if not 0 <= k <= len(stages):
            arch = getattr(model, "arch", "") or type(model.backbone).__name__
            unit = "blocks" if stages and stages[0].startswith("blocks.") else "stages"
            shown = ", ".join(stages) if len(stages) <= 6 else f"{stages[0]} … {stages[-1]}"
            raise ValueError(
                f"freeze_stages: k={k} is out of range for {arch}, which has {len(stages)} {unit} "
                f"({shown}); allowed: 0 … {len(stages)} (0 freezes only the stem)"
            )
        stem = getattr(model.backbone, "transfer_stem", None)
        if stem is None:
            stem = [n for n in _top_level(model) if n not in stages]
        return list(stem) + stages[:k]
    raise ValueError(f"unknown freeze setting {freeze!r}; allowed: nothing, backbone, stages")


def _resolve(backbone: nn.Module, name: str) -> nn.Module | nn.Parameter:
    try:
        return backbone.get_submodule(name)
    except AttributeError:
        return backbone.get_parameter(name)


@dataclass(frozen=True)
class Phase:
    """One phase of a transfer mode.

    ``epoch_share``: share of the epoch budget for this phase (a mode's shares sum to 1). ``freeze``:
    ``nothing``, ``backbone`` or ``stages`` (the stem and the first ``k`` stages). ``update_bn``: whether
    BatchNorm layers inside the frozen part keep updating their running statistics in train mode (their
    affine parameters are frozen either way).
    """

    name: str
    epoch_share: float
    freeze: str = FREEZE_NOTHING
    k: int = 0
    update_bn: bool = False

    def frozen_children(self, model: Classifier) -> list[str]:
        """Names of the backbone's direct children frozen in this phase."""
        return frozen_backbone_children(model, self.freeze, self.k)

    def _frozen_parts(self, model: Classifier) -> list[nn.Module | nn.Parameter]:
        return [_resolve(model.backbone, n) for n in self.frozen_children(model)]

    def _frozen_modules(self, model: Classifier) -> list[nn.Module]:
        return [m for m in self._frozen_parts(model) if isinstance(m, nn.Module)]

    def trainable_parameters(self, model: Classifier) -> list[nn.Parameter]:
        """Set ``requires_grad`` for this phase and return the trainable parameters (model order)."""
        frozen = {id(p) for part in self._frozen_parts(model)
                  for p in (part.parameters() if isinstance(part, nn.Module) else [part])}
        trainable: list[nn.Parameter] = []
        for p in model.parameters():
            p.requires_grad_(id(p) not in frozen)
            if p.requires_grad:
                trainable.append(p)
        return trainable

    def set_train_mode(self, model: Classifier) -> None:
        """``model.train()``, but frozen BatchNorm layers in eval mode (unless ``update_bn``)."""
        model.train()
        if self.update_bn:
            return
        for module in self._frozen_modules(model):
            for sub in module.modules():
                if isinstance(sub, _BatchNorm):
                    sub.eval()


class TransferMode:
    """Base class of registered transfer modes; options are validated by each subclass's constructor."""

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    option_defaults: ClassVar[dict[str, Any]] = {}
    """Its options and their defaults (None: required); a table names the options that differ from these."""
    frozen_rank: ClassVar[int] = 99
    """How much of the base stays frozen, to order modes in tables and figures: lower freezes more."""
    unphased: ClassVar[bool] = False
    """Without options it is the engine's own training (every layer, one phase): its runs pass no phases."""

    def __init__(self, **options: Any) -> None:
        if options:
            raise ValueError(
                f"transfer mode {self.registry_name!r} takes no options; got {', '.join(sorted(options))}"
            )
        self.options: dict[str, Any] = {}

    def phases(self) -> list[Phase]:
        """The phases, in order; their ``epoch_share`` sum to 1."""
        raise NotImplementedError

    def validate(self, model: Classifier) -> None:
        """Check the mode fits ``model`` (e.g. ``k`` against its number of stages); raises ValueError."""
        for phase in self.phases():
            phase.frozen_children(model)

    def key(self) -> dict[str, Any]:
        """What identifies this mode (used in run keys)."""
        return {"mode": self.registry_name, **self.options}


TRANSFER_MODES: Registry[type[TransferMode]] = Registry("transfer mode")


def _take_options(mode: str, options: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"transfer mode {mode!r}: unknown option(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(allowed)) or '(none)'}"
        )
    return {**allowed, **options}


def _as_bool(mode: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"transfer mode {mode!r}: {name} must be true or false, not {value!r}")
    return value


@TRANSFER_MODES.register("full")
class Full(TransferMode):
    """Full finetuning: every layer trains and BatchNorm statistics update (the paper's setting)."""

    description = "full finetuning: every layer trains, BatchNorm updates (default)"
    frozen_rank = 3
    unphased = True

    def phases(self) -> list[Phase]:
        return [Phase("full", 1.0)]


@TRANSFER_MODES.register("fixed_feature")
class FixedFeature(TransferMode):
    """Only the head trains; ``update_bn`` (default False) lets backbone BatchNorm statistics update."""

    description = "fixed-feature: only the head trains; BatchNorm frozen unless update_bn: true"
    option_defaults: ClassVar[dict[str, Any]] = {"update_bn": False}
    frozen_rank = 0

    def __init__(self, **options: Any) -> None:
        opts = _take_options("fixed_feature", options, self.option_defaults)
        self.update_bn = _as_bool("fixed_feature", "update_bn", opts["update_bn"])
        self.options = {"update_bn": self.update_bn}

    def phases(self) -> list[Phase]:
        return [Phase("fixed_feature", 1.0, freeze=FREEZE_BACKBONE, update_bn=self.update_bn)]


@TRANSFER_MODES.register("freeze_stages")
class FreezeStages(TransferMode):
    """Freeze the stem and the first ``k`` stages; the rest and the head train."""

    description = "freeze the stem and the first k stages (option k); BatchNorm there frozen unless update_bn"
    option_defaults: ClassVar[dict[str, Any]] = {"k": None, "update_bn": False}
    frozen_rank = 1

    def __init__(self, **options: Any) -> None:
        opts = _take_options("freeze_stages", options, self.option_defaults)
        k = opts["k"]
        if k is None:
            raise ValueError("transfer mode 'freeze_stages' needs option k (how many stages to freeze)")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"transfer mode 'freeze_stages': k must be an integer >= 0, not {k!r}")
        self.k = k
        self.update_bn = _as_bool("freeze_stages", "update_bn", opts["update_bn"])
        self.options = {"k": k, "update_bn": self.update_bn}

    def phases(self) -> list[Phase]:
        return [Phase("freeze_stages", 1.0, freeze=FREEZE_STAGES, k=self.k, update_bn=self.update_bn)]


@TRANSFER_MODES.register("linear_probe_then_finetune")
class LinearProbeThenFinetune(TransferMode):
    """Train the head alone (BatchNorm frozen) for ``probe_share`` of the budget, then finetune everything."""

    description = "linear probe (head only, BatchNorm frozen) for probe_share of the epochs, then full"
    option_defaults: ClassVar[dict[str, Any]] = {"probe_share": 0.5}
    frozen_rank = 2

    def __init__(self, **options: Any) -> None:
        opts = _take_options("linear_probe_then_finetune", options, self.option_defaults)
        share = opts["probe_share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 < float(share) < 1.0:
            raise ValueError(
                f"transfer mode 'linear_probe_then_finetune': probe_share must be a number strictly between "
                f"0 and 1, not {share!r}"
            )
        self.probe_share = float(share)
        self.options = {"probe_share": self.probe_share}

    def phases(self) -> list[Phase]:
        return [
            Phase("linear_probe", self.probe_share, freeze=FREEZE_BACKBONE, update_bn=False),
            Phase("finetune", 1.0 - self.probe_share),
        ]


def get_transfer_mode(name: str = "full", **options: Any) -> TransferMode:
    """The transfer mode ``name`` built with ``options``; unknown names or options raise errors."""
    return TRANSFER_MODES.get(name)(**options)

"""Bases: the starting weights of finetuning.

A base is a registered class built from its spec (``kind`` plus options) that returns a :class:`Classifier`
whose backbone holds the starting weights. Kinds: ``scratch`` (random), ``trained`` (a base we train on one
attribute of a dataset: *biased* when the attribute is the sensitive one, *control* otherwise, see
:mod:`biastransfer.roles`; cached by a content key) and ``checkpoint`` (an off-the-shelf checkpoint read from a
local file, see :mod:`biastransfer.models.checkpoints`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from biastransfer.models.architectures import Classifier
from biastransfer.registry import Registry


@dataclass
class BaseContext:
    """What a base may need to build itself.

    ``dataset`` is the LoadedDataset of the study (for bases trained by us), ``cache_dir`` where trained bases
    are cached, ``train_base`` a callable ``(attribute: str) -> Classifier`` provided by the worker that trains (or
    reads from cache) a base on an attribute, ``device`` the torch device, ``in_channels`` of the images.
    """

    arch: str
    in_channels: int = 3
    cache_dir: Path | None = None
    dataset: Any = None
    train_base: Any = None
    device: Any = "cpu"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class Base:
    """Base class of registered bases. ``options`` are the spec's keys other than ``kind``/``name``."""

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    per_run: ClassVar[bool] = False
    """Built afresh for every run (random initialisation) instead of once per process and copied."""
    trains: ClassVar[bool] = False
    """Building it trains a model: the runner gives it a job of its own, done before the runs that need it."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def build(self, ctx: BaseContext) -> Classifier:
        raise NotImplementedError

    def check(self) -> None:
        """Cheap checks before anything trains (a checkpoint file exists …); raise with what to fix."""

    def key(self) -> dict[str, Any]:
        """What identifies this base's weights (used in run keys)."""
        return {"kind": self.registry_name, **self.options}


BASES: Registry[type[Base]] = Registry("base kind")


@BASES.register("scratch")
class ScratchBase(Base):
    """Random initialisation (seeded by the run seed)."""

    description = "random initialisation"
    per_run = True

    def build(self, ctx: BaseContext) -> Classifier:
        from biastransfer.models.architectures import build_model

        return build_model(ctx.arch, num_outputs=1, in_channels=ctx.in_channels)


@BASES.register("trained")
class TrainedBase(Base):
    """A base we train to predict one attribute of the study's dataset (``attribute``: e.g. ``a`` → biased,
    any other attribute → control), trained once and cached by a content key."""

    description = "trained by us on one attribute of the dataset (biased / control bases)"
    trains = True

    def check(self) -> None:
        if "attribute" not in self.options:
            raise ValueError("a base of kind 'trained' needs 'attribute' (the attribute it is trained to predict)")
        unknown = sorted(set(self.options) - {"attribute"})
        if unknown:  # anything else would not reach the trainer nor its cache key
            raise ValueError(f"a base of kind 'trained' takes only 'attribute'; unknown option(s): "
                             f"{', '.join(unknown)} (training settings go in the study's 'base_training')")

    def build(self, ctx: BaseContext) -> Classifier:
        self.check()
        if ctx.train_base is None:
            raise RuntimeError("no base trainer in this context")
        return ctx.train_base(self.options["attribute"])

"""Bases: the starting weights of finetuning.

A base is a registered class built from its spec (``kind`` plus options) that returns a :class:`Classifier`
whose backbone holds the starting weights. Kinds: ``scratch`` (random), ``trained`` (a base we train on one
attribute of a dataset: *biased* when the attribute is the sensitive one, *control* otherwise, see
:mod:`biastransfer.roles`; cached by a content key) and ``checkpoint`` (an off-the-shelf checkpoint read from a
local file, see :mod:`biastransfer.models.checkpoints`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from biastransfer.models.architectures import Classifier
from biastransfer.registry import Registry


@dataclass
class BaseContext:
    """What a base may need to build itself.

    ``dataset`` is the LoadedDataset of the study (for bases trained by us), ``cache_dir`` where trained bases
    are cached, ``train_base`` a callable ``(attribute: str, pool: str, plant: dict | None = None) -> Classifier``
    provided by the worker that trains (or reads from cache) a base on an attribute using the rows of the split
    ``pool`` (with ``plant``, the options of a ``planted`` base: a trigger planted on some classes), ``device`` the
    torch device, ``in_channels`` of the images.
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
    plants_trigger: ClassVar[bool] = False
    """Its source pool carries a planted trigger, named by its options (``trigger``, ``trigger_classes``,
    ``rate``, ``source_classes``): the trigger-transfer kind reads them."""

    shorthand: ClassVar[str | None] = None
    """What follows ``KIND:`` when a command line names a base of this kind (``recommend --base trained:a``):
    ``ATTRIBUTE``, or empty for the kind alone; None: it has no shorthand (:meth:`from_shorthand`)."""

    @classmethod
    def from_shorthand(cls, rest: str, arch: str) -> tuple[str, dict[str, Any]] | None:
        """``KIND:REST`` on a command line → (the base's name in the study, its options), for a study of the
        architecture ``arch``; None when the kind has no shorthand or ``rest`` is not its form."""
        return None

    @classmethod
    def trained_attribute(cls, spec: Mapping[str, Any]) -> str | None:
        """The attribute of the study's dataset that we train a base of this kind on (given its spec,
        ``{"kind": ..., **options}``), or None for a base we do not train on one: preflight checks the column,
        and the underrepresentation pairs tell their Pretrain-T1 / -T2 bases by it."""
        return None

    @classmethod
    def derive_role(cls, spec: Mapping[str, Any], sensitive: str) -> str:
        """Its role in the study's comparisons (:mod:`biastransfer.roles`) when the study declares none, given its
        spec and the dataset's sensitive attribute. Default: ``other`` (shown, not compared)."""
        return "other"

    def __init__(self, **options: Any) -> None:
        self.options = options

    def build(self, ctx: BaseContext) -> Classifier:
        raise NotImplementedError

    def check(self) -> None:
        """Cheap checks before anything trains (a checkpoint file exists …); raise with what to fix."""

    def check_data(self, dataset: Any, *, carve_hint: str = "") -> None:
        """Checks against the study's loaded dataset, run by preflight before anything trains (a trained base's
        pool exists and is none of the finetuning pools). ``carve_hint`` says how this dataset makes a pool of
        its own (from :attr:`biastransfer.data.registry.DatasetSource.carve_pretrain`)."""

    def key(self) -> dict[str, Any]:
        """What identifies this base's weights (used in run keys)."""
        return {"kind": self.registry_name, **self.options}


BASES: Registry[type[Base]] = Registry("base kind")


def base_kind(kind: object) -> type[Base]:
    """The registered class of a base kind (a spec's ``kind``, or a runs table's ``base_kind``), whose class
    attributes say what it is; :class:`Base` (no capability) for a kind that is not registered, such as a stored
    run of a kind since removed."""
    return BASES.get(kind) if isinstance(kind, str) and kind in BASES else Base


def trained_attribute(spec: Mapping[str, Any]) -> str | None:
    """The attribute a base (``{"kind": ..., **options}``) is trained on by us, or None
    (:meth:`Base.trained_attribute`)."""
    return base_kind(spec.get("kind")).trained_attribute(spec)


def parse_shorthand(text: str, arch: str) -> tuple[str, dict[str, Any]] | None:
    """A base named on a command line, ``KIND`` or ``KIND:REST`` (:attr:`Base.shorthand`) → (its name in the study,
    its section ``{"kind": KIND, **options}``); None when no kind reads it."""
    kind, _, rest = text.partition(":")
    found = base_kind(kind).from_shorthand(rest, arch)
    return None if found is None else (found[0], {"kind": kind, **found[1]})


def shorthand_forms() -> list[str]:
    """The command-line forms of the kinds with a shorthand (``scratch``, ``trained:ATTRIBUTE`` …)."""
    return [f"{name}:{cls.shorthand}" if cls.shorthand else name for name, cls in BASES.items()
            if cls.shorthand is not None]


def derive_role(spec: Mapping[str, Any], sensitive: str) -> str:
    """The role of a base (``{"kind": ..., **options}``) that the study does not declare (:meth:`Base.derive_role`)."""
    return base_kind(spec.get("kind")).derive_role(spec, sensitive)


@BASES.register("scratch")
class ScratchBase(Base):
    """Random initialisation (seeded by the run seed)."""

    description = "random initialisation"
    per_run = True
    shorthand = ""

    @classmethod
    def from_shorthand(cls, rest: str, arch: str) -> tuple[str, dict[str, Any]] | None:
        return None if rest else (cls.registry_name, {})

    @classmethod
    def derive_role(cls, spec: Mapping[str, Any], sensitive: str) -> str:
        return "scratch"

    def build(self, ctx: BaseContext) -> Classifier:
        from biastransfer.models.architectures import build_model

        return build_model(ctx.arch, num_outputs=1, in_channels=ctx.in_channels)


FINETUNING_POOLS = ("train", "val", "test")
"""The splits finetuning, validation and test sets are drawn from: a trained base never trains on them."""

DEFAULT_POOL = "pretrain"
"""The split bases of kind ``trained`` train on unless their ``pool`` names another."""


@BASES.register("trained")
class TrainedBase(Base):
    """A base we train to predict one attribute of the study's dataset (``attribute``: e.g. ``a`` → biased,
    any other attribute → control), trained once and cached by a content key.

    It trains on the split ``pool`` (default ``pretrain``), which must exist and be none of the splits the
    finetuning, validation and test sets are drawn from (:data:`FINETUNING_POOLS`): a base that had seen those
    examples would inflate exactly the transfer the study measures."""

    description = "trained by us on one attribute of the dataset (biased / control bases)"
    trains = True
    extra_options: ClassVar[tuple[str, ...]] = ()
    default_attribute: ClassVar[str | None] = None
    """The attribute when the spec names none (None: the spec must name one)."""
    shorthand = "ATTRIBUTE"

    @classmethod
    def from_shorthand(cls, rest: str, arch: str) -> tuple[str, dict[str, Any]] | None:
        return (f"{cls.registry_name}-{rest}", {"attribute": rest}) if rest else None

    @classmethod
    def trained_attribute(cls, spec: Mapping[str, Any]) -> str | None:
        attribute = spec.get("attribute", cls.default_attribute)
        return None if attribute is None else str(attribute)

    @classmethod
    def derive_role(cls, spec: Mapping[str, Any], sensitive: str) -> str:
        """``biased`` when trained on the sensitive attribute, else ``control``."""
        return "biased" if cls.trained_attribute(spec) == sensitive else "control"

    @property
    def pool(self) -> str:
        return str(self.options.get("pool") or DEFAULT_POOL)

    def check(self) -> None:
        if "attribute" not in self.options:
            raise ValueError("a base of kind 'trained' needs 'attribute' (the attribute it is trained to predict)")
        unknown = sorted(set(self.options) - {"attribute", "pool", *self.extra_options})
        if unknown:  # anything else would not reach the trainer nor its cache key
            raise ValueError(f"a base of kind 'trained' takes only 'attribute' and 'pool'; unknown option(s): "
                             f"{', '.join(unknown)} (training settings go in the study's 'base_training')")
        pool = self.options.get("pool", DEFAULT_POOL)
        if not isinstance(pool, str) or not pool:
            raise ValueError(f"'pool' must name a split of the dataset (default {DEFAULT_POOL!r}); got {pool!r}")
        if pool in FINETUNING_POOLS:
            raise ValueError(f"'pool: {pool}' is refused: finetuning, validation and test sets are drawn from the "
                             f"splits {', '.join(FINETUNING_POOLS)}, and a base trained on their examples would "
                             f"inflate the bias transfer the study measures; name a split of its own (default "
                             f"{DEFAULT_POOL!r})")

    def check_data(self, dataset: Any, *, carve_hint: str = "") -> None:
        self.check()
        table = dataset.table
        table.column(self.options["attribute"])  # an unknown attribute names the allowed ones
        if table.has_split(self.pool):
            return
        present = ", ".join(sorted(set(table.frame["split"])))
        how = carve_hint or "this dataset has no parameter that carves one: add a 'pretrain' split to its files"
        missing = (f"dataset {dataset.name!r} has no {self.pool!r} split (splits: {present}), and a base of kind "
                   f"'trained' trains only on examples kept apart from the finetuning, validation and test pools")
        if self.pool == DEFAULT_POOL:
            raise ValueError(f"{missing}. Carve a 'pretrain' split: {how}; or point the base's 'pool:' at another "
                             f"split of its own")
        raise ValueError(f"{missing}. Name a split the dataset has with the base's 'pool:', or drop 'pool:' and "
                         f"carve a 'pretrain' split: {how}")

    def build(self, ctx: BaseContext) -> Classifier:
        self.check()
        if ctx.train_base is None:
            raise RuntimeError("no base trainer in this context")
        return ctx.train_base(self.options["attribute"], self.pool)


PLANT_OPTIONS = ("trigger", "trigger_classes", "rate", "source_classes")


@BASES.register("planted")
class PlantedBase(TrainedBase):
    """A ``trained`` base whose source pool carries a planted trigger (Salman et al.; docs/protocols.md §7): the
    trigger (``trigger``: a trigger spec ``{kind: patch, size: 8, colour: yellow}``, see ``biastransfer list``)
    is pasted on a share ``rate`` (default 1; 0 gives a control base, the same source task without the trigger) of
    the images of the ``trigger_classes``; ``source_classes``
    (default: all) restricts the source task to some classes of the multi-class label. ``attribute`` defaults to
    the multi-class ``label``. Trained once and cached by a key that includes the plant."""

    description = "trained by us with a trigger planted on some classes of the source pool (Salman et al.)"
    extra_options = PLANT_OPTIONS
    default_attribute = "label"
    plants_trigger = True
    shorthand = None

    @classmethod
    def from_shorthand(cls, rest: str, arch: str) -> tuple[str, dict[str, Any]] | None:
        return None  # a trigger does not fit on a command line

    def __init__(self, **options: Any) -> None:
        super().__init__(**{"attribute": self.default_attribute, **options})

    @classmethod
    def derive_role(cls, spec: Mapping[str, Any], sensitive: str) -> str:
        """A trigger planted on purpose is the bias under study (``biased``); ``rate: 0`` is its ``control``."""
        return "control" if spec.get("rate", 1.0) == 0 else "biased"

    def check(self) -> None:
        from biastransfer.triggers import get_trigger

        unknown = sorted(set(self.options) - {"attribute", "pool", *PLANT_OPTIONS})
        if unknown:
            raise ValueError(f"a base of kind 'planted' takes only attribute, pool, {', '.join(PLANT_OPTIONS)}; "
                             f"unknown option(s): {', '.join(unknown)}")
        for name in ("trigger", "trigger_classes"):
            if name not in self.options:
                raise ValueError(f"a base of kind 'planted' needs {name!r}")
        trigger = self.options["trigger"]
        if not isinstance(trigger, dict) or "kind" not in trigger:
            raise ValueError(f"'trigger' must be a mapping with a 'kind' (e.g. {{kind: patch, size: 8}}); got "
                             f"{trigger!r}")
        get_trigger(trigger)
        for name in ("trigger_classes", "source_classes"):
            value = self.options.get(name)
            if value is not None and (not isinstance(value, list) or not value):
                raise ValueError(f"{name!r} must be a non-empty list of classes (names or indices); got {value!r}")
        rate = self.options.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise ValueError(f"'rate' must be a number in [0, 1] (the share of the trigger classes' images that "
                             f"carry the trigger; 0: a control trained on the same source task without it); got "
                             f"{rate!r}")
        super().check()

    def check_data(self, dataset: Any, *, carve_hint: str = "") -> None:
        from biastransfer.triggers.plant import Plant

        super().check_data(dataset, carve_hint=carve_hint)
        Plant.of(dataset, self.options["attribute"], self.options)

    def build(self, ctx: BaseContext) -> Classifier:
        self.check()
        if ctx.train_base is None:
            raise RuntimeError("no base trainer in this context")
        return ctx.train_base(self.options["attribute"], self.pool,
                              plant={k: self.options[k] for k in PLANT_OPTIONS if k in self.options})

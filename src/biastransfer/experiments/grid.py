"""Block fields shared by several experiment kinds (pydantic mixins); each plugin composes its block schema from
the ones it uses, so a field a kind does not use is an error in a study, not silently ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from biastransfer.experiments.base import BlockSchema
from biastransfer.interventions import INTERVENTIONS
from biastransfer.interventions.base import make_registered, reference_intervention
from biastransfer.registry import UnknownNameError
from biastransfer.train.objectives import OBJECTIVES, baseline_objective

Level = float | Literal["natural"]
Size = Annotated[int, Field(ge=4)] | Literal["full"]


def _check_level(level: Level, what: str) -> Level:
    if level != "natural" and not 0.0 <= float(level) <= 1.0:
        raise ValueError(f"{what} must be in [0, 1] or 'natural', got {level}")
    return level


class NoOptions(BaseModel):
    """A kind without options: ``options`` must be empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Seeds(BlockSchema):
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], description="one run per seed")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one seed")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v


class TasksAndBases(BlockSchema):
    tasks: list[str] = Field(description="target attributes (columns of the dataset)")
    bases: list[str] = Field(default_factory=list, description="bases named in the study's 'bases' (default: "
                                                                 "scratch)")

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one task")
        return v

    def base_names(self) -> list[str]:
        return list(self.bases) or ["scratch"]


class Sizes(BlockSchema):
    n_train: list[Size] = Field(default_factory=lambda: [512], description="finetuning set sizes")
    n_val: Size | None = Field(None, description="validation set size (default: as n_train)")

    @field_validator("n_train", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        sizes = [v] if isinstance(v, int | float | str) else v
        for size in sizes if isinstance(sizes, list) else []:
            _check_size(size, "n_train")
        return sizes

    @field_validator("n_val", mode="before")
    @classmethod
    def _one(cls, v: Any) -> Any:
        return v if v is None else _check_size(v, "n_val")


def _check_size(size: Any, field: str) -> Any:
    """A set size as written: a whole number ≥ 4 or 'full' (64.0 is 64); a clear error otherwise (pydantic's
    would say "Input should be a valid list" for 64.5)."""
    whole = isinstance(size, int | float) and not isinstance(size, bool) and float(size).is_integer()
    if size != "full" and not (whole and size >= 4):
        raise ValueError(f"{field} must be a whole number of examples ≥ 4 or 'full' (or a list of them), got "
                         f"{size!r}")
    return int(size) if whole else size


class FixedSizes(Sizes):
    """Sizes without ``full`` (kinds whose sets are balanced draws of exactly N examples)."""

    @field_validator("n_train", "n_val")
    @classmethod
    def _no_full(cls, size: Any) -> Any:
        if size == "full" or (isinstance(size, list) and "full" in size):
            raise ValueError("'full' (the whole pool) is not a size this experiment kind can draw; give numbers")
        return size


class Levels(BlockSchema):
    levels: list[Level] = Field(default_factory=lambda: ["natural"], description="finetuning levels")
    test: Level = Field("natural", description="test level, or 'natural' (the whole test pool)")

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[Level]) -> list[Level]:
        if not v:
            raise ValueError("needs at least one level")
        for lv in v:
            _check_level(lv, "a level")
        return v

    @field_validator("test")
    @classmethod
    def _test(cls, v: Level) -> Level:
        return _check_level(v, "the test level")


def keep_ends(block: dict[str, Any], field: str) -> dict[str, Any]:
    """``block`` (a raw block mapping, for ``--tiny``) with the list ``field`` cut to its first and last entries."""
    values = block.get(field)
    if isinstance(values, list) and len(values) > 2:
        block[field] = [values[0], values[-1]]
    return block


class NamedRef(BaseModel):
    """A registered entry named in a block with its options: a bare name (``collect``) or a mapping
    (``{name: subselect, start_level: 0.8}``); subclasses check the name and options against their registry."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class InterventionRef(NamedRef):
    """An intervention of a block: its registered name and typed options (``collect`` or
    ``{name: subselect, start_level: 0.8}`` in a study file)."""

    @model_validator(mode="after")
    def _registered(self) -> InterventionRef:
        try:
            make_registered(INTERVENTIONS, self.name, self.options())  # unknown name / option → error naming it
        except UnknownNameError as exc:
            raise ValueError(str(exc)) from None
        return self


class Interventions(BlockSchema):
    interventions: list[InterventionRef] = Field(
        default_factory=lambda: [InterventionRef(name=reference_intervention())],
        description="samplers of the finetuning set")

    @field_validator("interventions")
    @classmethod
    def _non_empty(cls, v: list[InterventionRef]) -> list[InterventionRef]:
        if not v:
            raise ValueError("needs at least one intervention")
        return v


class ObjectiveRef(NamedRef):
    """A training objective of a block: its registered name and typed options (``group_dro`` or
    ``{name: group_dro, eta: 0.1}`` in a study file; docs/objectives.md)."""

    @model_validator(mode="after")
    def _registered(self) -> ObjectiveRef:
        try:
            make_registered(OBJECTIVES, self.name, self.options())  # unknown name / option → error naming it
        except UnknownNameError as exc:
            raise ValueError(str(exc)) from None
        return self


class Objectives(BlockSchema):
    objectives: list[ObjectiveRef] = Field(default_factory=lambda: [ObjectiveRef(name=baseline_objective())],
                                           description="training objectives, crossed with the interventions "
                                                       "(default: erm)")

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, v: list[ObjectiveRef]) -> list[ObjectiveRef]:
        if not v:
            raise ValueError("needs at least one objective")
        labels = [(ref.name, tuple(sorted(ref.options().items()))) for ref in v]
        if len(set(labels)) != len(labels):
            raise ValueError(f"objectives repeat: {[ref.name for ref in v]}")
        return v

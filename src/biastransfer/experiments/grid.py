"""Block fields shared by several experiment kinds (pydantic mixins); each plugin composes its block schema from
the ones it uses, so a field a kind does not use is an error in a study, not silently ignored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from biastransfer.experiments.base import BlockSchema
from biastransfer.interventions import INTERVENTIONS
from biastransfer.interventions.base import make_registered
from biastransfer.registry import UnknownNameError
from biastransfer.train.objectives import OBJECTIVES

Level = float | Literal["natural"]
Size = Annotated[int, Field(ge=4)] | Literal["full"]


def _check_level(value: Level, what: str) -> Level:
    if value != "natural" and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{what} must be in [0, 1] or 'natural', got {value}")
    return value


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
        return [v] if isinstance(v, int | str) else v


class FixedSizes(Sizes):
    """Sizes without ``full`` (kinds whose sets are balanced draws of exactly N examples)."""

    @field_validator("n_train", "n_val")
    @classmethod
    def _no_full(cls, v: Any) -> Any:
        if v == "full" or (isinstance(v, list) and "full" in v):
            raise ValueError("'full' (the whole pool) is not a size this experiment kind can draw; give numbers")
        return v


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
    interventions: list[InterventionRef] = Field(default_factory=lambda: [InterventionRef(name="collect")],
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
    objectives: list[ObjectiveRef] = Field(default_factory=lambda: [ObjectiveRef(name="erm")],
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

"""Study files: pydantic models of the YAML a user writes. Every error names the field and what is allowed.

A study names one dataset, one architecture, the training settings, the bases it uses and a list of
experiment blocks; the runner expands the blocks into runs (see :mod:`biastransfer.runner.spec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """An invalid study file; the message names each bad field and what is allowed there."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    name: str = "synthetic"
    root: Path | None = None
    resolution: Annotated[int, Field(ge=8, le=1024)] = 32
    params: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(_Strict):
    arch: str = "small_resnet"
    transfer: str = "full"
    transfer_options: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    """Finetuning settings; ``lr`` × ``weight_decay`` is the hyperparameter grid searched per (base, task, N)."""

    lr: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [0.05, 0.01])
    weight_decay: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [5e-4])
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    batch_size: Annotated[int, Field(ge=2)] = 64
    max_epochs: Annotated[int, Field(ge=1)] = 20
    patience: Annotated[int, Field(ge=1)] = 3
    hp_seeds: Annotated[int, Field(ge=1)] = 1
    flip: bool = True
    compile: bool = False  # torch.compile the forward pass (BENCHMARKS.md: ~1.06x per step here; off by default)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast: faster on CPUs with BF16, changes the numbers

    @field_validator("lr", "weight_decay")
    @classmethod
    def _non_empty(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one value")
        return v


class BaseTrainingConfig(_Strict):
    """How bases of kind ``trained`` are trained (on the ``pretrain`` pool, or ``train`` when absent)."""

    lr: Annotated[float, Field(gt=0)] = 0.05
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    epochs: Annotated[int, Field(ge=1)] = 6
    batch_size: Annotated[int, Field(ge=2)] = 128
    max_examples: Annotated[int, Field(ge=16)] | None = None
    seed: int = 0


class BaseConfig(_Strict):
    """One base: ``kind`` is a registered base kind; other keys are its options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EvaluationConfig(_Strict):
    threshold: str | float = "val"
    test_size: Annotated[int, Field(ge=8)] = 2000

    @field_validator("threshold")
    @classmethod
    def _policy(cls, v: str | float) -> str | float:
        if isinstance(v, str) and v not in ("val", "test"):
            try:
                return float(v)
            except ValueError:
                raise ValueError("allowed: 'val', 'test' or a number") from None
        return v


Level = float | Literal["natural"]


class ExperimentConfig(_Strict):
    """One block of experiments. ``kind`` is a registered experiment; the other fields are its grid."""

    name: str
    kind: str
    tasks: list[str] = Field(default_factory=list)
    bases: list[str] = Field(default_factory=list)
    interventions: list[str] = Field(default_factory=lambda: ["collect"])
    levels: list[Level] = Field(default_factory=lambda: ["natural"])
    n_train: list[Annotated[int, Field(ge=4)]] = Field(default_factory=lambda: [512])
    n_val: Annotated[int, Field(ge=4)] | None = None
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    test: Level = "natural"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("n_train", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) else v

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[Level]) -> list[Level]:
        for lv in v:
            if lv != "natural" and not 0.0 <= float(lv) <= 1.0:
                raise ValueError(f"a level must be in [0, 1] or 'natural', got {lv}")
        return v

    @field_validator("test")
    @classmethod
    def _test(cls, v: Level) -> Level:
        if v != "natural" and not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"the test level must be in [0, 1] or 'natural', got {v}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one seed")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v


class StudyConfig(_Strict):
    name: str
    description: str = ""
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    base_training: BaseTrainingConfig = Field(default_factory=BaseTrainingConfig)
    bases: dict[str, BaseConfig] = Field(default_factory=lambda: {"scratch": BaseConfig(kind="scratch")})
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    experiments: list[ExperimentConfig]

    @model_validator(mode="after")
    def _references(self) -> StudyConfig:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must be unique, got {names}")
        for i, exp in enumerate(self.experiments):
            for b in exp.bases:
                if b not in self.bases:
                    raise ValueError(f"experiments.{i}.bases: unknown base {b!r}; defined in 'bases': "
                                     f"{', '.join(self.bases)}")
        return self


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"invalid study file {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/studies.md for the allowed fields)"
        lines.append(f"  - {loc}: {msg}" if loc else f"  - {msg}")
    return "\n".join(lines)


def parse_study(data: dict[str, Any], source: str = "<study>") -> StudyConfig:
    """Validate a study from a dict; raise :class:`ConfigError` naming every bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid study file {source}: the top level must be a mapping of fields")
    try:
        study = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    _check_registered(study, source)
    return study


def _check_registered(study: StudyConfig, source: str) -> None:
    """Names that refer to registries (dataset, architecture, base kinds, experiments, interventions)."""
    from biastransfer import plugins  # noqa: F401  (registers everything)
    from biastransfer.data.registry import DATASETS
    from biastransfer.experiments.base import EXPERIMENTS
    from biastransfer.interventions import INTERVENTIONS
    from biastransfer.models.architectures import ARCHITECTURES
    from biastransfer.models.bases import BASES

    problems = []

    def check(field: str, name: str, registry: Any) -> None:
        if name not in registry:
            problems.append(f"  - {field}: unknown {registry.kind} {name!r}; allowed: {', '.join(registry.names())}")

    check("dataset.name", study.dataset.name, DATASETS)
    check("model.arch", study.model.arch, ARCHITECTURES)
    for bname, base in study.bases.items():
        check(f"bases.{bname}.kind", base.kind, BASES)
    for i, exp in enumerate(study.experiments):
        check(f"experiments.{i}.kind", exp.kind, EXPERIMENTS)
        for iv in exp.interventions:
            check(f"experiments.{i}.interventions", iv, INTERVENTIONS)
    if problems:
        raise ConfigError("\n".join([f"invalid study file {source}:", *problems]))


def load_study(path: Path) -> StudyConfig:
    """Read and validate a study YAML file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"study file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"study file {path} is not valid YAML: {exc}") from None
    return parse_study(data, str(path))

"""Study files: pydantic models of the YAML a user writes. Every error names the field and what is allowed.

A study names one dataset, one architecture, the training settings, the bases it uses and a list of experiment
blocks. This module holds the schema of everything but the blocks' kind-specific fields, and looks nothing up in
a registry: :func:`biastransfer.plan.parse_study` checks the names (dataset, architecture, base kinds, experiment
kinds) and validates each block against its experiment plugin's own schema.
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from biastransfer.roles import BaseRole


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
    # learning rate: constant (the paper's) or cosine-annealed per step to 0 over max_epochs (with patience ≥
    # max_epochs: a fixed budget, the best epoch by validation loss kept)
    schedule: Literal["constant", "cosine"] = "constant"

    @field_validator("lr", "weight_decay")
    @classmethod
    def _non_empty(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one value")
        return v


class BaseTrainingConfig(_Strict):
    """How bases of kind ``trained`` are trained (on their ``pool``, the ``pretrain`` split by default; never on
    the finetuning, validation or test splits)."""

    lr: Annotated[float, Field(gt=0)] = 0.05
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    epochs: Annotated[int, Field(ge=1)] = 6
    batch_size: Annotated[int, Field(ge=2)] = 128
    max_examples: Annotated[int, Field(ge=16)] | None = None
    seed: int = 0


class BaseConfig(_Strict):
    """One base: ``kind`` is a registered base kind, ``role`` its role in comparisons (default: derived from what
    it is, see :mod:`biastransfer.roles`); other keys are the kind's options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: str
    role: BaseRole | None = None
    pool: str | None = None
    """The split a base of kind ``trained`` trains on (default ``pretrain``; ``train``/``val``/``test`` are refused
    by the kind's check). At its default it stays out of the base's options, so run keys do not change."""

    def options(self) -> dict[str, Any]:
        extra = dict(self.model_extra or {})
        return extra if self.pool in (None, "pretrain") else {**extra, "pool": self.pool}

    def spec(self) -> dict[str, Any]:
        """What a run's spec holds of the base: ``{"kind": ..., **options}`` (the role is not part of it)."""
        return {"kind": self.kind, **self.options()}


class EvaluationConfig(_Strict):
    threshold: str | float = "val"    # val (reweighted to the test cells) | val-unweighted (0.1's val) | test | number
    test_size: Annotated[int, Field(ge=8)] = 2000

    @field_validator("threshold")
    @classmethod
    def _policy(cls, v: str | float) -> str | float:
        if isinstance(v, str) and v not in ("val", "val-unweighted", "test"):
            try:
                v = float(v)
            except ValueError:
                raise ValueError("allowed: 'val', 'val-unweighted', 'test' or a number") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"a fixed threshold must be a finite number, got {v}; allowed: 'val', "
                             f"'val-unweighted', 'test' or a number")
        return v


class ExecutionConfig(_Strict):
    """How a distributed backend (``--backend ray``) runs the study's jobs; the command line's ``--cpus-per-task``,
    ``--gpus-per-task`` and ``--max-retries`` override it. Part of no run key: it changes where runs compute,
    not what."""

    cpus_per_task: Annotated[float, Field(gt=0)] = 1.0
    """CPUs each job asks for (and the torch threads it uses)."""
    gpus_per_task: Annotated[float, Field(ge=0)] | None = None
    """The GPU share each job asks for; default a quarter of a GPU on CUDA, none on CPU."""
    max_retries: Annotated[int, Field(ge=0, le=100)] = 2
    """Tries after the first for a job that raises or whose worker dies."""


class ExperimentConfig(BaseModel):
    """One block of experiments: ``name`` and ``kind`` (a registered experiment); every other field belongs to
    the kind and is validated by its plugin (:attr:`biastransfer.experiments.base.Experiment.Block`)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    kind: str
    dataset: str | None = None
    """The name of one of the study's ``datasets`` this block runs on (default: the study's ``dataset``)."""

    def fields(self) -> dict[str, Any]:
        """The kind-specific fields as written."""
        return dict(self.model_extra or {})


class StudyConfig(_Strict):
    name: str
    description: str = ""
    estimated_minutes: Annotated[float, Field(gt=0)] | None = None
    """Wall time of the whole study measured on 2 CPU cores from an empty cache (``biastransfer studies`` shows
    it); informational, part of no run key."""
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    datasets: dict[str, DatasetConfig] = Field(default_factory=dict)
    """More datasets, by a name of the study's choosing; a block runs on one with ``dataset: NAME`` (a study
    that reproduces protocols needing different data, e.g. the bundled ``paper``)."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    base_training: BaseTrainingConfig = Field(default_factory=BaseTrainingConfig)
    bases: dict[str, BaseConfig] = Field(default_factory=lambda: {"scratch": BaseConfig(kind="scratch")})
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    experiments: list[ExperimentConfig]

    @field_validator("experiments")
    @classmethod
    def _some_experiments(cls, v: list[ExperimentConfig]) -> list[ExperimentConfig]:
        if not v:
            raise ValueError("a study needs at least one experiment block (an empty list runs nothing)")
        return v

    @model_validator(mode="after")
    def _unique_names(self) -> StudyConfig:
        names = [e.name for e in self.experiments]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment names must be unique, got {names}")
        for e in self.experiments:
            if e.dataset is not None and e.dataset not in self.datasets:
                known = ", ".join(self.datasets) or "none (add a 'datasets' section)"
                raise ValueError(f"experiment {e.name!r}: dataset {e.dataset!r} is not among the study's "
                                 f"'datasets': {known}")
        return self

    def dataset_of(self, experiment: ExperimentConfig) -> DatasetConfig:
        """The dataset a block runs on: its named one, else the study's ``dataset``."""
        return self.dataset if experiment.dataset is None else self.datasets[experiment.dataset]


def format_validation_error(exc: ValidationError, source: str, prefix: str = "",
                            allowed: dict[str, list[str]] | None = None) -> str:
    """``invalid study file SOURCE:`` and one line per error, ``  - field.path: message``.

    ``allowed`` maps a location prefix (``"experiments.0"``) to the fields allowed there, for unknown-field
    errors."""
    lines = [f"invalid study file {source}:"]
    for err in exc.errors():
        head = prefix.split(".") if prefix else []
        loc = ".".join(str(p) for p in (*head, *err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = loc.rsplit(".", 1)[0] if "." in loc else ""
            fields = (allowed or {}).get(parent)
            msg = ("unknown field (check the spelling; allowed: " + ", ".join(fields) + ")" if fields else
                   "unknown field (check the spelling; see docs/studies.md for the allowed fields)")
        lines.append(f"  - {loc}: {msg}" if loc else f"  - {msg}")
    return "\n".join(lines)


def parse_schema(data: Any, source: str = "<study>") -> StudyConfig:
    """Validate the study's schema (not the registered names nor the blocks' kind-specific fields)."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid study file {source}: the top level must be a mapping of fields")
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        allowed = {section: list(model.model_fields) for section, model in (
            ("", StudyConfig), ("dataset", DatasetConfig), ("model", ModelConfig), ("train", TrainConfig),
            ("base_training", BaseTrainingConfig), ("evaluation", EvaluationConfig))}
        raise ConfigError(format_validation_error(exc, source, allowed=allowed)) from None


def read_yaml(path: Path) -> tuple[Any, str]:
    """The parsed YAML of a study file and its text; ConfigError naming the file when missing or malformed."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"study file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a study file: name a YAML file (or a bundled study by name)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"study file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as "
                          f"UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader that refuses duplicate keys
    except yaml.YAMLError as exc:
        raise ConfigError(f"study file {path} is not valid YAML: {exc}") from None
    return expand_path_variables(data, str(path)), text


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _path_fields(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """The study's file paths as (field name, mapping, key): ``dataset.root``, ``datasets.NAME.root`` and
    ``bases.NAME.path``."""
    fields = []
    if isinstance(data.get("dataset"), dict):
        fields.append(("dataset.root", data["dataset"], "root"))
    for section, key in (("datasets", "root"), ("bases", "path")):
        entries = data.get(section)
        if isinstance(entries, dict):
            fields += [(f"{section}.{name}.{key}", entry, key) for name, entry in entries.items()
                       if isinstance(entry, dict)]
    return fields


def expand_path_variables(data: Any, source: str = "<study>", environ: dict[str, str] | None = None) -> Any:
    """The study mapping with ``${NAME}`` in its file paths replaced by the environment variable ``NAME``.

    Only the paths are expanded (``dataset.root``, ``datasets.NAME.root``, ``bases.NAME.path``), so that a bundled
    study can read a user's data and checkpoints (e.g. ``root: ${CELEBA_ROOT}``) without editing; the expanded
    paths are what is validated and stored with the results. A variable that is not set is a :class:`ConfigError`
    naming the field and the variable. ``data`` is not changed."""
    if not isinstance(data, dict):
        return data
    env = os.environ if environ is None else environ
    out = copy.deepcopy(data)
    missing = []
    for field, entry, key in _path_fields(out):
        value = entry.get(key)
        if not isinstance(value, str):
            continue
        unset = [name for name in _VARIABLE.findall(value) if not env.get(name)]
        if unset:
            missing.append(f"  - {field}: {value!r} needs the environment variable(s) {', '.join(unset)}, "
                           f"which {'is' if len(unset) == 1 else 'are'} not set (e.g. "
                           f"export {unset[0]}=/path/to/the/folder)")
            continue
        entry[key] = _VARIABLE.sub(lambda m: env[m.group(1)], value)
    if missing:
        raise ConfigError(f"invalid study file {source}:\n" + "\n".join(missing))
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that gives a key twice (plain YAML keeps the last one silently). Merge
    keys (``<<: *defaults``) work as in YAML 1.1: the mapping's own keys override the merged ones."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # merged by SafeLoader's flatten_mapping, not a key
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"the key {key!r} is given twice (first at line {seen[key].line + 1}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

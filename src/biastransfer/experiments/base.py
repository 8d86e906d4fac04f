"""The experiment plugin contract: each protocol of the papers is one registered :class:`Experiment`.

A plugin owns everything about its kind, in its own module (or small folder):

* its **block schema** (:attr:`Experiment.Block`, a pydantic model of the study block's fields, including its
  typed ``options``): a misspelled key is an error naming the key and the allowed ones when the study is loaded;
* its **grid expansion** (:meth:`Experiment.expand`) and its **run** (:meth:`Experiment.run`), which receives its
  inputs (dataset, base factory, chosen hyperparameters) as a :class:`RunInputs`;
* its **outcome schema** (:attr:`Experiment.columns`): every column it adds to the tidy runs table, declared
  once with its type and role; export, aggregation over seeds and the report derive from it;
* its **analysis** and **report section** (:meth:`Experiment.reading`, :meth:`Experiment.sections`).

That is the required core (:class:`Experiment`). What only some kinds do is an optional capability, a mixin
among the kind's bases: :class:`Adaptive` (chooses its runs as it goes), :class:`HyperparameterSearch`,
:class:`SharedResults` (runs shared with other kinds), :class:`ExampleData` (its example needs other bases or
data) and :class:`Verdicts` (answers at the top of the report). A new kind implements only what it uses.

The report and the export iterate :data:`EXPERIMENTS`; no module outside a plugin names a kind.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict

from biastransfer.analysis.aggregate import aggregate
from biastransfer.registry import Registry
from biastransfer.spec import RunSpec, StudyDefaults

if TYPE_CHECKING:
    from biastransfer.data.table import LoadedDataset
    from biastransfer.models.architectures import Classifier
    from biastransfer.render.markup import Page, Section

Role = Literal["id", "setting", "metric", "outcome"]
DType = Literal["str", "int", "float", "bool"]


@dataclass(frozen=True)
class Column:
    """One column of the tidy runs table.

    ``role``: ``id`` (identifies the run), ``setting`` (describes what was run; runs that share every setting and
    differ in their seed form one group), ``metric`` (aggregated over the seeds of a group: mean and Student-t
    95% interval) or ``outcome`` (a per-run value kept in the export, not aggregated). ``get`` reads the value
    from a stored run (a mapping with ``key``, ``spec``, ``result``, ``seconds``, ``study`` and ``roles``, the
    base roles of the study); by default ``result[name]`` (NaN, "" or False when absent).
    """

    name: str
    dtype: DType
    role: Role
    doc: str = ""
    get: Callable[[dict[str, Any]], Any] | None = None

    def value(self, run: dict[str, Any]) -> Any:
        if self.get is not None:
            return self.get(run)
        missing: Any = float("nan") if self.dtype in ("float", "int") else ("" if self.dtype == "str" else False)
        return run["result"].get(self.name, missing)


def spec_field(name: str, dtype: DType, role: Role, doc: str = "", key: str | None = None) -> Column:
    """A column whose value is the spec field ``key`` (default: ``name``)."""
    return Column(name, dtype, role, doc, get=lambda run: run["spec"].get(key or name))


COMMON_COLUMNS: tuple[Column, ...] = (
    Column("run_key", "str", "id", "the run's key in the store", get=lambda run: run["key"]),
    Column("study", "str", "setting", "the study's name", get=lambda run: run["study"]),
    spec_field("experiment", "str", "setting", "the block's name in the study"),
    Column("experiment_kind", "str", "setting", "the experiment kind", get=lambda run: run["spec"]["kind"]),
    Column("dataset", "str", "setting", "the dataset", get=lambda run: run["spec"]["dataset"]["name"]),
    spec_field("task", "str", "setting", "the target attribute"),
    Column("base", "str", "setting", "the base's name in the study", get=lambda run: run["spec"]["base_name"]),
    Column("base_kind", "str", "setting", "scratch, trained, checkpoint …",
           get=lambda run: run["spec"]["base"]["kind"]),
    Column("base_attribute", "str", "setting", "the attribute a trained base was trained on",
           get=lambda run: run["spec"]["base"].get("attribute", "")),
    Column("base_role", "str", "setting", "biased, control, scratch or other (declared or derived)",
           get=lambda run: run["roles"].get(run["spec"]["base_name"], "other")),
    Column("n_train", "int", "setting", "finetuning examples used",
           get=lambda run: run["result"].get("n_train_used", run["spec"]["n_train"])),
    spec_field("seed", "int", "id", "the run's seed"),
)
"""Columns every run has, whatever its kind (first in the tidy table)."""

TIMING_COLUMNS: tuple[Column, ...] = (
    Column("seconds", "float", "outcome", "wall time of the run", get=lambda run: run["seconds"]),
)
"""Columns every run has, last in the tidy table."""


def level_label(value: Any) -> str:
    """How a level or size is written in the tidy table: ``natural``, ``full`` or ``0.8``/``512``."""
    if isinstance(value, str):
        return value
    return f"{float(value):g}"


@dataclass(frozen=True)
class RunOutput:
    """What a run returns: flat JSON-able results (the schema's columns and more) and array artifacts."""

    result: dict[str, Any]
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RunInputs:
    """What a run (or a hyperparameter search) receives besides its spec.

    ``new_model(spec)`` returns a fresh copy of the run's base with a new head (initialisation seeded from the
    spec's seed and base name); ``hparams`` are the chosen hyperparameters (None for a search or for kinds that
    search none); ``base_info`` describes a base trained by us (cache key, validation accuracy …); ``cache_dir`` is
    the cache root (``None``: the default, :mod:`biastransfer.paths`) where derived data (triggered images) goes.
    """

    dataset: LoadedDataset
    device: torch.device
    new_model: Callable[..., Classifier]
    hparams: dict[str, Any] | None = None
    base_info: dict[str, Any] | None = None
    cache_dir: Path | None = None


class BlockSchema(BaseModel):
    """Base of the block schemas: every field but ``name`` and ``kind``; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Results:
    """The finished runs a plugin reads: its own rows (typed by its schema) and, by kind, the others' rows."""

    runs: pd.DataFrame
    others: dict[str, pd.DataFrame] = field(default_factory=dict)

    def of(self, kind: str) -> pd.DataFrame:
        return self.others.get(kind, pd.DataFrame())


@dataclass(frozen=True)
class Verdict:
    """One plain sentence at the top of the report that answers a user's question (is the bias inherited?
    which finetuning overwrites it, at what AUC cost?), and the id of the report section holding its evidence."""

    text: str
    evidence: str


class Experiment(ABC):
    """The required core of an experiment plugin (the module docstring says what a plugin owns).

    A kind must declare :attr:`Block`, :attr:`columns` and :attr:`example` and implement :meth:`expand`,
    :meth:`run` and :meth:`sections`; the other members have defaults or are derived from :attr:`columns`. What
    only some kinds do is an optional capability, a mixin the kind adds to its bases: :class:`Adaptive`,
    :class:`HyperparameterSearch`, :class:`SharedResults`, :class:`ExampleData`, :class:`Verdicts`. The code that
    uses a capability asks ``isinstance(plugin, Adaptive)``; a class that defines a capability's member without
    the capability is refused when it is defined."""

    registry_name: ClassVar[str]
    Block: ClassVar[type[BlockSchema]]
    """The block's fields (a :class:`BlockSchema`), typed options included."""
    columns: ClassVar[tuple[Column, ...]]
    """The outcome schema: every column the kind adds to the tidy runs table."""
    example: ClassVar[dict[str, Any]]
    """A tiny block of this kind for the test suite's tiny study (and the docs); the registry-wide tests run it."""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    report_order: ClassVar[int] = 50
    pool_columns: ClassVar[tuple[str, ...]] = ("y", "a")
    """The pool columns the plugin gives its interventions (an intervention must need no others)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for capability in CAPABILITIES:
            stray = [m for m in capability.members if hasattr(cls, m) and not issubclass(cls, capability)]
            if stray:
                raise TypeError(f"{cls.__name__} defines {', '.join(stray)} without the capability "
                                f"{capability.__name__}: add it to the class's bases")
        if not inspect.isabstract(cls):
            missing = [m for m in ("Block", "columns", "example") if not hasattr(cls, m)]
            if missing:
                raise TypeError(f"experiment {cls.__name__} must declare {', '.join(missing)}")

    @classmethod
    def all_columns(cls) -> tuple[Column, ...]:
        """The columns of this kind's rows in the tidy table: common, own, timing."""
        return (*COMMON_COLUMNS, *cls.columns, *TIMING_COLUMNS)

    @classmethod
    def settings(cls) -> list[str]:
        """The setting columns: runs that share them and differ in their seed form one group."""
        return [c.name for c in cls.all_columns() if c.role == "setting"]

    @classmethod
    def metrics(cls) -> list[str]:
        """The metric columns, aggregated over seeds."""
        return [c.name for c in cls.all_columns() if c.role == "metric"]

    def aggregate(self, runs: pd.DataFrame) -> pd.DataFrame:
        """This kind's runs aggregated over seeds (mean and Student-t 95% interval of every metric)."""
        return aggregate(runs, self.metrics(), self.settings())

    # --------------------------------------------------------------------------------------- planning
    @classmethod
    def tiny_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        """This kind's block shrunk for ``--tiny`` (:mod:`biastransfer.tiny`; a copy, before validation).

        The default keeps every task, base and intervention, and shrinks what multiplies runs or their cost:
        the first 2 seeds; the first 2 finetuning sizes, capped at 32 and 64 (``full`` stays: the tiny pool is
        small); ``n_val`` at most 64; at most 2 levels (the first and the test level, or the first and the last).
        A kind whose block has other constraints overrides this (calling it first)."""
        out = dict(block)
        if isinstance(out.get("seeds"), list):
            out["seeds"] = out["seeds"][:2]
        sizes = out.get("n_train")
        if isinstance(sizes, list):
            out["n_train"] = [n if n == "full" else min(int(n), 32 * (i + 1)) for i, n in enumerate(sizes[:2])]
        elif isinstance(sizes, int) and not isinstance(sizes, bool):
            out["n_train"] = min(sizes, 32)
        if isinstance(out.get("n_val"), int) and not isinstance(out.get("n_val"), bool):
            out["n_val"] = min(out["n_val"], 64)
        levels = out.get("levels")
        if isinstance(levels, list) and len(levels) > 2:
            test = out.get("test")
            out["levels"] = [levels[0], test if test in levels[1:] else levels[-1]]
        return out

    @abstractmethod
    def expand(self, name: str, block: Any, study: StudyDefaults) -> list[RunSpec]:
        """The block's runs (``block`` is a validated :attr:`Block`)."""

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        """Fail before any training if the spec cannot run (unknown attribute, infeasible set …)."""
        return None

    # -------------------------------------------------------------------------------------- execution
    @abstractmethod
    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        """One run: its flat results (the schema's columns and more) and its array artifacts."""

    # --------------------------------------------------------------------------------- analysis/report
    def reading(self, results: Results) -> list[str]:
        """Plain-English findings with numbers and intervals (one string per bullet)."""
        return []

    @abstractmethod
    def sections(self, results: Results, page: Page) -> list[Section]:
        """The report sections of this kind (plots, tables)."""


# ------------------------------------------------------------------------------- optional capabilities
class Capability:
    """An optional part of the contract; :attr:`members` are the names it brings."""

    members: ClassVar[tuple[str, ...]] = ()


class Adaptive(Capability, ABC):
    """An **adaptive** kind chooses its runs as it goes (``recommend``, docs/recommend.md)."""

    members = ("next_runs", "run_budget")

    @abstractmethod
    def next_runs(self, block: Any, specs: list[RunSpec], done: dict[str, dict[str, Any]]) -> list[RunSpec]:
        """Given the block's runs (``specs``, those of :meth:`Experiment.expand`) and the results of those finished
        (``done``: run key → result), the runs it wants next in priority order (``[]``: it is done). The driver
        runs them, at most :meth:`run_budget` new runs in all, and asks again."""

    def run_budget(self, block: Any) -> int | None:
        """The most new runs an adaptive block may train in one study run (None: no limit)."""
        return None


class HyperparameterSearch(Capability, ABC):
    """A kind whose runs use hyperparameters chosen by a search (one ``hparams`` job per distinct payload)."""

    members = ("hparam_payload", "search_trainings", "search")

    @abstractmethod
    def hparam_payload(self, spec: RunSpec) -> dict[str, Any] | None:
        """What the run's hyperparameter choice depends on (runs with equal payloads share one search), or None
        when this run needs none."""

    def search_trainings(self, spec: RunSpec) -> int:
        """Trainings one search runs: ``|lr| × |weight decay| × hp_seeds``, none for a 1 × 1 grid."""
        grid = len(spec.train["lr"]) * len(spec.train["weight_decay"])
        return 0 if grid == 1 else grid * spec.train["hp_seeds"]

    @abstractmethod
    def search(self, spec: RunSpec, inputs: RunInputs) -> dict[str, Any]:
        """The search of :meth:`hparam_payload` (``lr``, ``weight_decay``, ``val_loss``, ``trials``)."""


class SharedResults(Capability, ABC):
    """A kind whose runs equal runs of other blocks or kinds on the same settings."""

    members = ("result_key",)

    @abstractmethod
    def result_key(self, spec: RunSpec) -> str | None:
        """A key that runs of other blocks or kinds share when their results are the same (the same run function
        on the same settings, whatever the block's name), or None: only the run key identifies the result. An
        adaptive block adopts a stored run of equal result key instead of training it again."""


class ExampleData(Capability):
    """A kind whose :attr:`Experiment.example` needs more than the tiny study's bases or synthetic data."""

    members = ("example_bases", "example_dataset")
    example_bases: ClassVar[dict[str, dict[str, Any]]] = {}
    """Bases the example needs beyond the tiny study's own (``gendered`` on a, ``control-t0``, ``scratch``)."""
    example_dataset: ClassVar[dict[str, Any]] = {}
    """The dataset section the example runs on, when not the tiny study's ``synthetic`` benchmark."""


class Verdicts(Capability, ABC):
    """A kind that answers a user's question at the top of the report."""

    members = ("verdict",)

    @abstractmethod
    def verdict(self, results: Results) -> list[Verdict]:
        """At most a few plain sentences, each pointing at one of :meth:`Experiment.sections` (by its id)."""


CAPABILITIES: tuple[type[Capability], ...] = (Adaptive, HyperparameterSearch, SharedResults, ExampleData, Verdicts)

EXPERIMENTS: Registry[type[Experiment]] = Registry("experiment")


def get_experiment(kind: str) -> Experiment:
    return EXPERIMENTS.get(kind)()

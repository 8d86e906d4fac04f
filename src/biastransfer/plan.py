"""From a study file to jobs: validation against the registries, expansion into RunSpecs, preflight, base roles
and the job graph.

* :func:`parse_study` / :func:`load_study` validate a study completely before anything runs: the schema
  (:mod:`biastransfer.config`), every registered name (dataset, architecture, base kinds, experiment kinds,
  interventions) and each block against its experiment plugin's own schema; errors name the field and the
  allowed values.
* :meth:`Study.expand` lists every run; :func:`preflight` checks each distinct setting against the data before
  any training; :func:`resolve_roles` gives each base its role (declared, or derived from data).
* :func:`plan_jobs` turns the missing runs into jobs with dependencies: one ``base`` job per distinct base that
  must be trained, one ``hparams`` job per hyperparameter search the store lacks, one ``run`` job per run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from biastransfer import plugins  # noqa: F401  (registers everything)
from biastransfer.backends.base import Job
from biastransfer.config import ConfigError, StudyConfig, format_validation_error, parse_schema, read_yaml
from biastransfer.data.registry import DATASETS
from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.base import EXPERIMENTS, Adaptive, Experiment, HyperparameterSearch, SharedResults
from biastransfer.interventions import INTERVENTIONS
from biastransfer.models.architectures import ARCHITECTURES
from biastransfer.models.bases import BASES
from biastransfer.models.transfer import get_transfer_mode
from biastransfer.registry import Registry
from biastransfer.roles import derive_role
from biastransfer.spec import RunSpec, StudyDefaults, content_key


@dataclass(frozen=True)
class Block:
    """One validated experiment block: its name, its plugin, its typed fields and (when it names one of the
    study's ``datasets``) the dataset section it runs on."""

    name: str
    plugin: Experiment
    fields: Any
    dataset: dict[str, Any] | None = None

    @property
    def adaptive(self) -> bool:
        """Whether the block's plugin chooses its runs as it goes (:meth:`Adaptive.next_runs`)."""
        return adaptive_kind(self.plugin.registry_name)


def adaptive_kind(kind: str) -> bool:
    """Whether the experiment kind chooses its runs as it goes (:meth:`Adaptive.next_runs`)."""
    return kind in EXPERIMENTS and issubclass(EXPERIMENTS.get(kind), Adaptive)


@dataclass(frozen=True)
class Study:
    """A validated study: the schema, the typed blocks and what every run shares."""

    config: StudyConfig
    blocks: tuple[Block, ...]
    defaults: StudyDefaults
    text: str | None = None

    @property
    def name(self) -> str:
        return self.config.name

    def expand(self) -> list[RunSpec]:
        """Every run of the study, in order, without duplicates."""
        specs: dict[str, RunSpec] = {}
        for block in self.blocks:
            defaults = self.defaults if block.dataset is None else replace(self.defaults, dataset=block.dataset)
            for spec in block.plugin.expand(block.name, block.fields, defaults):
                specs.setdefault(spec.key, spec)
        return list(specs.values())


def _unknown(field: str, name: str, registry: Registry[Any]) -> str:
    return f"  - {field}: unknown {registry.kind} {name!r}; allowed: {', '.join(registry.names())}"


def _check_block(i: int, block: Any, plugin: Experiment, bases: dict[str, Any], source: str) -> Any:
    """The block's fields validated by the plugin's schema; ConfigError naming each bad field."""
    try:
        fields = plugin.Block.model_validate(block.fields())
    except ValidationError as exc:
        allowed = {f"experiments.{i}": ["name", "kind", "dataset", *plugin.Block.model_fields]}
        options = plugin.Block.model_fields.get("options")
        if options is not None and hasattr(options.annotation, "model_fields"):
            allowed[f"experiments.{i}.options"] = list(options.annotation.model_fields) or ["(none)"]
        raise ConfigError(format_validation_error(exc, source, prefix=f"experiments.{i}", allowed=allowed)) from None
    problems = []
    for name in getattr(fields, "bases", []):
        if name not in bases:
            problems.append(f"  - experiments.{i}.bases: unknown base {name!r}; defined in 'bases': "
                            f"{', '.join(bases)}")
    for ref in getattr(fields, "interventions", []):
        needed = INTERVENTIONS.get(ref.name).columns
        if not set(needed) <= set(plugin.pool_columns):
            problems.append(f"  - experiments.{i}.interventions: intervention {ref.name!r} needs pool columns "
                            f"{', '.join(needed)}; experiment kind {plugin.registry_name!r} provides "
                            f"{', '.join(plugin.pool_columns)}")
    if problems:
        raise ConfigError("\n".join([f"invalid study file {source}:", *problems]))
    return fields


def validate(config: StudyConfig, source: str = "<study>", text: str | None = None, *,
             check_files: bool = True) -> Study:
    """Check every registered name and every block of a schema-valid study; return the :class:`Study`.
    ``check_files=False`` skips the bases' own checks (:meth:`Base.check`: a checkpoint file exists …), for a
    study that was checked when it ran and is now only read (:mod:`biastransfer.store.current`)."""
    problems = []
    if config.dataset.name not in DATASETS:
        problems.append(_unknown("dataset.name", config.dataset.name, DATASETS))
    for dname, extra in config.datasets.items():
        if extra.name not in DATASETS:
            problems.append(_unknown(f"datasets.{dname}.name", extra.name, DATASETS))
    if config.model.arch not in ARCHITECTURES:
        problems.append(_unknown("model.arch", config.model.arch, ARCHITECTURES))
    try:
        get_transfer_mode(config.model.transfer, **config.model.transfer_options)
    except (KeyError, ValueError) as exc:
        problems.append(f"  - model.transfer: {exc}")
    for bname, base in config.bases.items():
        if base.kind not in BASES:
            problems.append(_unknown(f"bases.{bname}.kind", base.kind, BASES))
            continue
        if base.pool is not None and not BASES.get(base.kind).trains:
            problems.append(f"  - bases.{bname}.pool: only a base that is trained (kind 'trained') has a pool; "
                            f"a base of kind {base.kind!r} takes none")
            continue
        try:  # options and what can be checked without data (a checkpoint file exists …)
            made = BASES.get(base.kind)(**base.options())
            if check_files:
                made.check()
        except (ValueError, FileNotFoundError) as exc:
            problems.append(f"  - bases.{bname}: {exc}")
    for i, exp in enumerate(config.experiments):
        if exp.kind not in EXPERIMENTS:
            problems.append(_unknown(f"experiments.{i}.kind", exp.kind, EXPERIMENTS))
    if problems:
        raise ConfigError("\n".join([f"invalid study file {source}:", *problems]))
    blocks = tuple(Block(exp.name, plugin := EXPERIMENTS.get(exp.kind)(),
                         _check_block(i, exp, plugin, config.bases, source),
                         None if exp.dataset is None else config.dataset_of(exp).model_dump(mode="json"))
                   for i, exp in enumerate(config.experiments))
    train = config.train.model_dump(mode="json")
    defaults = StudyDefaults(
        dataset=config.dataset.model_dump(mode="json"), arch=config.model.arch, train=train,
        base_training=config.base_training.model_dump(mode="json"),
        bases={name: base.spec() for name, base in config.bases.items()},
        test_size=config.evaluation.test_size, threshold=config.evaluation.threshold,
        transfer=config.model.transfer, transfer_options=dict(config.model.transfer_options),
        trained_kinds=tuple(name for name, kind in BASES.items() if kind.trains))
    return Study(config=config, blocks=blocks, defaults=defaults, text=text)


def parse_study(data: Any, source: str = "<study>", text: str | None = None, *, check_files: bool = True) -> Study:
    """Validate a study from a dict; raise :class:`ConfigError` naming every bad field (``check_files``:
    :func:`validate`)."""
    return validate(parse_schema(data, source), source, text, check_files=check_files)


def load_study(path: Path) -> Study:
    """Read and validate a study YAML file."""
    data, text = read_yaml(Path(path))
    return parse_study(data, str(path), text)


def check_bases(specs: list[RunSpec], dataset: Callable[[RunSpec], LoadedDataset]) -> None:
    """Check every distinct base against the data (:meth:`Base.check_data`: a trained base's pool exists and is
    none of the finetuning, validation and test splits); raise naming the base and how to fix it."""
    seen: set[str] = set()
    for spec in specs:
        key = base_job_key(spec)
        if key in seen:
            continue
        seen.add(key)
        options = {k: v for k, v in spec.base.items() if k != "kind"}
        hint = DATASETS.get(spec.dataset["name"]).carve_pretrain
        try:
            BASES.get(spec.base["kind"])(**options).check_data(dataset(spec), carve_hint=hint)
        except ValueError as exc:
            raise type(exc)(f"bases.{spec.base_name}: {exc}") from None


def preflight(specs: list[RunSpec], dataset: Callable[[RunSpec], LoadedDataset]) -> None:
    """Check every distinct base (:func:`check_bases`) and every distinct setting (ignoring seeds) before
    training anything; raise with what to fix."""
    check_bases(specs, dataset)
    seen: set[str] = set()
    for spec in specs:
        probe = spec.replace(seed=0, base_name="", experiment="")
        if probe.key in seen:
            continue
        seen.add(probe.key)
        try:
            EXPERIMENTS.get(spec.kind)().check(spec, dataset(spec))
        except ValueError as exc:
            raise type(exc)(f"{spec.describe()}: {exc}") from None


def resolve_roles(config: StudyConfig, sensitive: str | dict[str, str]) -> dict[str, str]:
    """Each base's role: as declared in the study, else derived from what it is (:func:`derive_role`), against the
    sensitive attribute of the dataset it is used with. ``sensitive`` is that attribute, or a mapping from base
    name to the sensitive attribute of its blocks' dataset (a study with several ``datasets``); a base absent
    from the mapping takes the study dataset's (key ``""``)."""
    def of(name: str) -> str:
        return sensitive if isinstance(sensitive, str) else sensitive.get(name, sensitive.get("", ""))

    return {name: base.role or derive_role(base.spec(), of(name)) for name, base in config.bases.items()}


def hparam_key(spec: RunSpec) -> str | None:
    """The store key of a run's hyperparameter choice (None: its kind searches none)."""
    plugin = EXPERIMENTS.get(spec.kind)()
    payload = plugin.hparam_payload(spec) if isinstance(plugin, HyperparameterSearch) else None
    return None if payload is None else content_key(payload)


def result_key(spec: RunSpec) -> str | None:
    """A key that equal runs of other blocks or kinds share (:meth:`SharedResults.result_key`; None: none)."""
    plugin = EXPERIMENTS.get(spec.kind)() if spec.kind in EXPERIMENTS else None
    return plugin.result_key(spec) if isinstance(plugin, SharedResults) else None


def base_job_key(spec: RunSpec) -> str:
    """The job that trains the run's base (one per distinct trained base of a study)."""
    return "base:" + content_key(spec.base_key())


def plan_jobs(todo: list[RunSpec], stored_hparams: Callable[[str], dict[str, Any] | None]) -> list[Job]:
    """The jobs that ``todo`` needs, in priority order (bases, searches, runs, each in study order), each with
    its dependencies (which point backwards, so this is also a valid serial order).

    A search job is for the first run (in study order) that needs it, and computes with that run's spec.
    ``stored_hparams(key)`` returns the hyperparameters the store already has for a search key (one lookup per
    key), which the runs then receive as given inputs instead of a search job.
    """
    bases: dict[str, Job] = {}
    searches: dict[str, Job] = {}
    stored: dict[str, dict[str, Any] | None] = {}
    runs: list[Job] = []
    for spec in todo:
        needs: set[str] = set()
        given: dict[str, Any] = {}
        if BASES.get(spec.base["kind"]).trains:
            key = base_job_key(spec)
            bases.setdefault(key, Job("base", spec, key))
            needs.add(key)
        store_key = hparam_key(spec)
        if store_key is not None:
            if store_key not in stored:
                stored[store_key] = stored_hparams(store_key)
            if stored[store_key] is None:
                key = "hparams:" + store_key
                searches.setdefault(key, Job("hparams", spec, key, frozenset(needs)))
                needs.add(key)
            else:
                given["hparams"] = stored[store_key]
        runs.append(Job("run", spec, "run:" + spec.key, frozenset(needs), given))
    return [*bases.values(), *searches.values(), *runs]


def search_record(spec: RunSpec) -> dict[str, Any]:
    """What the store keeps next to a search's result: its payload and the name of the base it was run for."""
    payload = EXPERIMENTS.get(spec.kind)().hparam_payload(spec) or {}
    return {**payload, "base_name": spec.base_name}


def planned_trainings(study: Study) -> dict[str, int]:
    """Trainings a run of ``study`` needs from an empty store and cache: every run once, every distinct trained
    base once, and each distinct search's trials (:meth:`HyperparameterSearch.search_trainings`)."""
    specs = study.expand()
    bases = {base_job_key(s) for s in specs if BASES.get(s.base["kind"]).trains}
    searches: dict[str, RunSpec] = {}
    for s in specs:
        key = hparam_key(s)
        if key is not None:
            searches.setdefault(key, s)
    search_trainings = sum(EXPERIMENTS.get(s.kind)().search_trainings(s) for s in searches.values())
    return {"runs": len(specs), "bases": len(bases), "searches": len(searches),
            "search_trainings": search_trainings, "total": len(specs) + len(bases) + search_trainings}

"""The experiments registry: each named protocol of the papers is one registered class.

An experiment expands a block of the study file into RunSpecs (:meth:`Experiment.expand`) and runs one spec
(:meth:`Experiment.run`), returning flat JSON-able results plus array artifacts (chosen indices, predictions).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from biastransfer.registry import Registry
from biastransfer.runner.spec import RunSpec

if TYPE_CHECKING:
    from biastransfer.config import ExperimentConfig, StudyConfig
    from biastransfer.runner.context import RunContext


@dataclass
class RunOutput:
    result: dict[str, Any]
    artifacts: dict[str, np.ndarray] = field(default_factory=dict)


class Experiment:
    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    report_kind: ClassVar[str] = ""
    needs_hparams: ClassVar[bool] = True

    def expand(self, study: StudyConfig, block: ExperimentConfig) -> list[RunSpec]:
        """The default grid: bases × tasks × interventions × levels × N × seeds."""
        specs = []
        for base, task, iv, level, n, seed in itertools.product(
                block.bases or ["scratch"], block.tasks, block.interventions, block.levels, block.n_train,
                block.seeds):
            specs.append(self.make_spec(study, block, base=base, task=task, intervention=iv, level=level,
                                        n_train=n, seed=seed))
        return specs

    def make_spec(self, study: StudyConfig, block: ExperimentConfig, *, base: str, task: str,
                  intervention: str, level: float | str, n_train: int, seed: int,
                  options: dict[str, Any] | None = None) -> RunSpec:
        base_cfg = study.bases.get(base)
        base_dict = {"kind": "scratch"} if base_cfg is None else {"kind": base_cfg.kind, **base_cfg.options()}
        trained = base_dict["kind"] == "trained"
        train = study.train.model_dump(mode="json")
        for name, default in (("compile", False), ("precision", "fp32")):  # keep run keys of default studies
            if train.get(name) == default:
                train.pop(name)
        return RunSpec(
            experiment=block.name, kind=self.registry_name, dataset=study.dataset.model_dump(mode="json"),
            arch=study.model.arch, base_name=base, base=base_dict, task=task, seed=seed,
            intervention=intervention, level=level if level == "natural" else float(level), n_train=n_train,
            n_val=block.n_val, test=block.test if block.test == "natural" else float(block.test),
            test_size=study.evaluation.test_size, threshold=study.evaluation.threshold,
            train=train,
            base_training=study.base_training.model_dump(mode="json") if trained else {},
            transfer=study.model.transfer, transfer_options=dict(study.model.transfer_options),
            options={**block.options, **(options or {})},
        )

    def check(self, spec: RunSpec, ctx: RunContext) -> None:
        """Fail before any training if the spec cannot run (unknown attribute, infeasible set ...).

        The default checks the task and a trained base's attribute against the dataset and draws the run's sets
        (cheap: indices only).
        """
        from biastransfer.experiments.finetune import prepare_data

        dataset = ctx.dataset(spec)
        dataset.table.column(spec.task)
        if spec.base.get("kind") == "trained":
            dataset.table.column(spec.base.get("attribute", ""))
        prepare_data(spec, dataset, level=spec.level, seed=spec.seed)

    def hparam_store_key(self, spec: RunSpec) -> str:
        """The key of this run's hyperparameter choice in the store (runs that share it share the search)."""
        from biastransfer.runner.spec import content_key

        return content_key(spec.hparam_key())

    def ensure_hparams(self, spec: RunSpec, ctx: RunContext) -> dict[str, Any]:
        """The run's hyperparameters: searched on first use, then read from the store."""
        from biastransfer.experiments.finetune import ensure_hparams

        return ensure_hparams(spec, ctx)

    def run(self, spec: RunSpec, ctx: RunContext) -> RunOutput:
        raise NotImplementedError


EXPERIMENTS: Registry[type[Experiment]] = Registry("experiment")

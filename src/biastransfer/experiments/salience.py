"""Salience of an attribute X relative to the sensitive attribute a (REFERENCE §6).

Train on a set where X = a exactly (cells (a=1, X=1) and (a=0, X=0), N/2 each: ``collect`` at level 1), test
on four equal quadrants of (X, a) (``collect`` at level 0.5; ``options.test_size``, default
min(evaluation.test_size, 1000), so that the quadrants fit in a test pool with a strong natural correlation).
With s the model's scores,

    AUC_a = max(AUC(a, s), 1 − AUC(a, s)),   AUC_X = max(AUC(X, s), 1 − AUC(X, s)),
    salience = AUC_a − AUC_X + 0.5.

The *inverse* set (X = not a: level 0) gives a second value; the report averages both (and the seeds).
Positive values: a is easier to learn than X (X is of low salience); negative: X is easier than a.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from biastransfer.config import ExperimentConfig, StudyConfig
from biastransfer.experiments.base import EXPERIMENTS, Experiment, RunOutput
from biastransfer.experiments.finetune import finetune, prepare_data, score
from biastransfer.metrics.ranking import auc
from biastransfer.runner.context import RunContext
from biastransfer.runner.spec import RunSpec


def oriented_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """max(AUC, 1 − AUC): how well the scores separate the labels in either direction."""
    value = auc(labels, scores)
    return float(max(value, 1.0 - value))


@EXPERIMENTS.register("salience")
class Salience(Experiment):
    """How much easier the sensitive attribute is to learn than each task attribute (set and inverse set)."""

    description = "salience of each attribute relative to a (X = a and X = not a training sets)"
    report_kind = "salience"
    needs_hparams = False

    def expand(self, study: StudyConfig, block: ExperimentConfig) -> list[RunSpec]:
        base = (block.bases or ["scratch"])[0]
        specs = []
        for task, n, seed, inverse in itertools.product(block.tasks, block.n_train, block.seeds, (False, True)):
            spec = self.make_spec(study, block, base=base, task=task, intervention="collect",
                                  level=0.0 if inverse else 1.0, n_train=n, seed=seed,
                                  options={"inverse": inverse})
            test_size = int(block.options.get("test_size", min(study.evaluation.test_size, 1000)))
            specs.append(RunSpec.from_dict({**spec.to_dict(), "test": 0.5, "test_size": test_size}))
        return specs

    def run(self, spec: RunSpec, ctx: RunContext) -> RunOutput:
        t0 = time.perf_counter()
        dataset = ctx.dataset(spec)
        data = prepare_data(spec, dataset, level=spec.level, seed=spec.seed)
        lr = float(spec.options.get("lr", spec.train["lr"][0]))
        wd = float(spec.options.get("weight_decay", spec.train["weight_decay"][0]))
        model, res = finetune(spec, ctx, data, lr=lr, weight_decay=wd, seed=spec.seed)
        table = dataset.table
        scores = score(spec, ctx, model, data.test_rows)
        auc_a = oriented_auc(table.column(table.sensitive)[data.test_rows], scores)
        auc_x = oriented_auc(table.column(spec.task)[data.test_rows], scores)
        result = {"auc_a": auc_a, "auc_x": auc_x, "salience": auc_a - auc_x + 0.5,
                  "inverse": bool(spec.options.get("inverse", False)), "lr": lr, "weight_decay": wd,
                  "val_loss": res.best_val_loss, "epochs": res.epochs, "n_train_used": len(data.train_rows),
                  "n_test": len(data.test_rows), "seconds": time.perf_counter() - t0}
        return RunOutput(result=result, artifacts={"train_rows": data.train_rows, "test_rows": data.test_rows,
                                                   "test_scores": scores.astype(np.float32)})

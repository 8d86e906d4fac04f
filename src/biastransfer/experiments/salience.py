"""Salience of an attribute X relative to the sensitive attribute a (docs/protocols.md §6).

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
import math
import time
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field

from biastransfer.analysis.aggregate import as_bool, interval
from biastransfer.analysis.text import fmt, fmt_ci
from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.base import EXPERIMENTS, Column, Experiment, Results, RunInputs, RunOutput
from biastransfer.experiments.finetuning import finetune, score
from biastransfer.experiments.grid import FixedSizes, Seeds, TasksAndBases
from biastransfer.experiments.spurious import check, prepare_data
from biastransfer.metrics.ranking import auc
from biastransfer.render.markup import Page, Section
from biastransfer.render.plots import err as bar_err
from biastransfer.render.plots import new_figure
from biastransfer.spec import RunSpec, StudyDefaults


def oriented_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """max(AUC, 1 − AUC): how well the scores separate the labels in either direction."""
    value = auc(labels, scores)
    return float(max(value, 1.0 - value))


class SalienceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test_size: int | None = Field(None, ge=8, description="size of the 4-quadrant test set (default "
                                                          "min(evaluation.test_size, 1000))")
    lr: float | None = Field(None, gt=0, description="learning rate (default: the first of train.lr)")
    weight_decay: float | None = Field(None, ge=0, description="weight decay (default: the first of "
                                                               "train.weight_decay)")


class SalienceBlock(TasksAndBases, FixedSizes, Seeds):
    """tasks × N × seeds × {set, inverse set}, on the first base listed (default scratch)."""

    options: SalienceOptions = SalienceOptions()


def salience_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Salience of each attribute X relative to ``a`` with a Student-t 95% interval over seeds.

    ``runs`` are salience runs (``task`` is X). Per run the salience is
    ``max(AUC_a, 1 − AUC_a) − max(AUC_X, 1 − AUC_X) + 0.5`` (recomputed from ``auc_a``/``auc_x`` when present,
    otherwise the ``salience`` column). Per seed the set and the inverse set (X = not a) are averaged; the
    interval is over those per-seed values. A seed with only one of the two sets contributes that set alone.

    Returns:
        One row per attribute (sorted by name): ``task``, ``salience_mean``, ``salience_low``,
        ``salience_high``, ``n_seeds``, ``salience_set`` and ``salience_inverse`` (means of each set alone;
        NaN if that set was not run), ``auc_a_mean``, ``auc_x_mean``. Empty (with these columns) if there are
        no salience runs.
    """
    cols = [
        "task",
        "salience_mean",
        "salience_low",
        "salience_high",
        "n_seeds",
        "salience_set",
        "salience_inverse",
        "auc_a_mean",
        "auc_x_mean",
    ]
    sal = runs
    if sal.empty or ("auc_a" not in sal.columns and "salience" not in sal.columns):
        return pd.DataFrame(columns=cols)
    sal = sal.copy()
    has_aucs = {"auc_a", "auc_x"} <= set(sal.columns)
    if has_aucs:
        auc_a = pd.to_numeric(sal["auc_a"], errors="coerce")
        auc_x = pd.to_numeric(sal["auc_x"], errors="coerce")
        auc_a = np.maximum(auc_a, 1.0 - auc_a)
        auc_x = np.maximum(auc_x, 1.0 - auc_x)
        recomputed = auc_a - auc_x + 0.5
        given = pd.to_numeric(sal.get("salience", pd.Series(np.nan, index=sal.index)), errors="coerce")
        sal["_sal"] = recomputed.where(recomputed.notna(), given)
        sal["_auc_a"], sal["_auc_x"] = auc_a, auc_x
    else:
        sal["_sal"] = pd.to_numeric(sal["salience"], errors="coerce")
        sal["_auc_a"] = sal["_auc_x"] = np.nan
    sal["_inv"] = as_bool(sal["inverse"]) if "inverse" in sal.columns else pd.Series(False, index=sal.index)
    sal["_seed"] = sal["seed"] if "seed" in sal.columns else range(len(sal))
    records = []
    for task, rows in sal.groupby("task", sort=True):
        per_seed = rows.groupby("_seed", sort=True)["_sal"].mean().to_numpy(dtype=float)
        mean, low, high = interval(per_seed)
        set_vals = rows.loc[~rows["_inv"], "_sal"]
        inv_vals = rows.loc[rows["_inv"], "_sal"]
        records.append(
            {
                "task": task,
                "salience_mean": mean,
                "salience_low": low,
                "salience_high": high,
                "n_seeds": int(np.sum(~np.isnan(per_seed))),
                "salience_set": float(set_vals.mean()) if len(set_vals) else math.nan,
                "salience_inverse": float(inv_vals.mean()) if len(inv_vals) else math.nan,
                "auc_a_mean": float(rows["_auc_a"].mean()),
                "auc_x_mean": float(rows["_auc_x"].mean()),
            }
        )
    return pd.DataFrame.from_records(records, columns=cols)


def salience_plot(sal: pd.DataFrame) -> Figure:
    """Horizontal bars of each attribute's salience relative to ``a`` with 95% intervals.

    ``sal`` is :func:`salience_table`. Salience = AUC_a − AUC_X + 0.5, so 0.5
    means both are learned equally well and larger values mean ``a`` is the easier signal; bars start at 0.5.
    """
    df = sal.sort_values("salience_mean", kind="mergesort")
    fig = new_figure(7.0, max(2.6, 0.42 * len(df) + 1.4))
    ax = fig.subplots()
    y = np.arange(len(df))
    m = df["salience_mean"].to_numpy(float)
    err = bar_err(m, df["salience_low"].to_numpy(float), df["salience_high"].to_numpy(float))
    ax.barh(y, m - 0.5, 0.6, left=0.5, color="#6baed6", edgecolor="0.3", linewidth=0.5, zorder=2)
    ax.errorbar(m, y, xerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)
    ax.axvline(0.5, ls=":", color="0.3", lw=1.2, zorder=1)
    ax.set_yticks(y, df["task"].astype(str).tolist())
    ax.set_xlabel("Salience = AUC(a) − AUC(X) + 0.5  (> 0.5: a easier to learn than X)")
    ax.set_ylabel("Attribute X")
    ax.set_title("Salience of each attribute relative to the sensitive attribute", fontsize=12)
    ax.grid(True, axis="x", lw=0.4, alpha=0.5, zorder=0)
    lo = np.nanmin(np.concatenate([m - err[0], [0.5]])) if len(m) else 0.0
    hi = np.nanmax(np.concatenate([m + err[1], [0.5]])) if len(m) else 1.0
    ax.set_xlim(lo - 0.05, hi + 0.05)
    return fig


@EXPERIMENTS.register("salience")
class Salience(Experiment):
    """How much easier the sensitive attribute is to learn than each task attribute (set and inverse set)."""

    title = "Salience relative to the sensitive attribute"
    description = "salience of each attribute relative to a (X = a and X = not a training sets)"
    report_order = 40
    Block = SalienceBlock
    columns = (
        Column("inverse", "bool", "setting", "trained on the inverse set X = not a"),
        Column("auc_a", "float", "metric", "max(AUC, 1 − AUC) of the scores for a"),
        Column("auc_x", "float", "metric", "max(AUC, 1 − AUC) of the scores for X"),
        Column("salience", "float", "metric", "AUC_a − AUC_X + 0.5"),
        Column("lr", "float", "outcome", "learning rate"),
        Column("weight_decay", "float", "outcome", "weight decay"),
        Column("epochs", "int", "outcome", "epochs trained"),
        Column("val_loss", "float", "outcome", "best validation loss"),
    )
    example: ClassVar[dict[str, Any]] = {"tasks": ["t0"], "n_train": 32, "seeds": [0]}

    def expand(self, name: str, block: SalienceBlock, study: StudyDefaults) -> list[RunSpec]:
        base = block.base_names()[0]
        given = block.options.model_dump(mode="json", exclude_unset=True)
        test_size = block.options.test_size or min(study.test_size, 1000)
        return [study.spec(experiment=name, kind=self.registry_name, base=base, task=task, seed=seed,
                           intervention="collect", level=0.0 if inverse else 1.0, n_train=n, test=0.5,
                           test_size=test_size, options={**given, "inverse": inverse}, thresholded=False)
                for task, n, seed, inverse in itertools.product(block.tasks, block.n_train, block.seeds,
                                                                (False, True))]

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        check(spec, dataset)  # the task, a trained base's attribute, the sets (no search)

    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        t0 = time.perf_counter()
        dataset = inputs.dataset
        data = prepare_data(spec, dataset, level=spec.level, seed=spec.seed)
        lr = float(spec.options.get("lr") or spec.train["lr"][0])
        wd = spec.options.get("weight_decay")
        wd = float(spec.train["weight_decay"][0] if wd is None else wd)
        model, res = finetune(spec, inputs, data, lr=lr, weight_decay=wd, seed=spec.seed)
        table = dataset.table
        scores = score(spec, inputs, model, data.test_rows)
        auc_a = oriented_auc(table.column(table.sensitive)[data.test_rows], scores)
        auc_x = oriented_auc(table.column(spec.task)[data.test_rows], scores)
        result = {"auc_a": auc_a, "auc_x": auc_x, "salience": auc_a - auc_x + 0.5,
                  "inverse": bool(spec.options.get("inverse", False)), "lr": lr, "weight_decay": wd,
                  "val_loss": res.best_val_loss, "epochs": res.epochs, "n_train_used": len(data.train_rows),
                  "n_test": len(data.test_rows), "seconds": time.perf_counter() - t0}
        return RunOutput(result=result, artifacts={"train_rows": data.train_rows, "test_rows": data.test_rows,
                                                   "test_scores": scores.astype(np.float32)})

    def sections(self, results: Results, page: Page) -> list[Section]:
        sal = salience_table(results.runs)
        if sal.empty:
            return []
        body = [page.note("Salience = AUC(a) − AUC(X) + 0.5 per trained model (each AUC in its better "
                          "orientation), averaged over the set X = a and its inverse X = not a, then over seeds. "
                          "Above 0.5: a is easier to learn than X.")]
        body += page.table(pd.DataFrame({
            "attribute": sal["task"].astype(str),
            "salience": [fmt_ci(a, b, c) for a, b, c in
                         zip(sal["salience_mean"], sal["salience_low"], sal["salience_high"], strict=True)],
            "set X = a": [fmt(x) for x in sal["salience_set"]],
            "inverse X = not a": [fmt(x) for x in sal["salience_inverse"]],
            "AUC(a)": [fmt(x) for x in sal["auc_a_mean"]],
            "AUC(X)": [fmt(x) for x in sal["auc_x_mean"]],
            "seeds": sal["n_seeds"].astype(int),
        }))
        body += page.figure(salience_plot(sal), "salience", "Salience plot", "Salience per attribute, 95% CI.")
        return [Section("salience", self.title, body)]

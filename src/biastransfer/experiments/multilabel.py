"""Multi-label tasks of one dataset: directional bias amplification and normalised AP per group (paper §4.2 and
its supplement, COCO; docs/experiments.md ``multilabel``).

One run finetunes one base with a head of ``K + 1`` logits, one per object ``t_1 … t_K`` of the block's
``tasks`` and one for the sensitive attribute ``a`` (binary cross-entropy on each), on a uniform sample of ``N``
examples of the ``train`` pool: the objects keep the correlations with ``a`` that the data has. Validation is a
uniform sample of the ``val`` pool; the test set is the whole ``test`` pool. Every example with an unknown
object or attribute label is left out of every pool. The first learning rate and weight decay of the study are
used (no search, as for ``salience``).

Per object ``k``, with ``s_k`` the test scores: ``auc_k``; the normalised AP of each group,
``nap_k(g) = NAP(y_k, s_k)`` on the test examples with ``a = g`` (:func:`~biastransfer.metrics.ranking.
normalized_average_precision`, ``N_ref`` = the group's number of negatives: the precision the group would have
with as many positives as negatives, ``R / (R + FPR)``, so groups of different base rates compare);
``nap_gap_k = nap_k(1) − nap_k(0)``; and a threshold ``θ_k`` by the study's policy (``val``: validation
reweighted to the test set's (a, y_k) cells), which gives the predictions ``T̂_k = [s_k ≥ θ_k]``. The attribute
head's threshold is rate-matched on validation (``Â = [s_a ≥ θ_a]``).

Per run (:func:`~biastransfer.metrics.bias_amp.bias_amplification`, signs ``y_at`` from the run's finetuning
labels): ``biasamp_at`` = BiasAmp→ A→T over the K objects (T̂ against T given A) and ``biasamp_ta`` = BiasAmp→
T→A (Â against A given T). Positive values: the model amplifies the finetuning set's correlations. Also
``auc_mean``, ``nap_gap_mean`` (means over the objects) and ``auc_a`` (the attribute head's AUC). The per-object
values are kept in the column ``objects`` (JSON) and shown in the report.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pydantic import field_validator

from biastransfer.analysis.aggregate import paired_interval
from biastransfer.analysis.text import fmt, fmt_ci
from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.base import EXPERIMENTS, Column, Experiment, Results, RunInputs, RunOutput
from biastransfer.experiments.finetuning import finetune, score
from biastransfer.experiments.grid import NoOptions, Seeds, Sizes, TasksAndBases
from biastransfer.interventions.base import InfeasibleSelectionError
from biastransfer.metrics.bias_amp import bias_amplification
from biastransfer.metrics.ranking import auc, normalized_average_precision
from biastransfer.metrics.threshold import cell_proportions, parse_threshold_policy, resolve_threshold
from biastransfer.models.bases import trained_attribute
from biastransfer.render.markup import Page, Section
from biastransfer.render.plots import PALETTE, new_figure, wrap_text
from biastransfer.render.plots import err as bar_err
from biastransfer.seeding import rng
from biastransfer.spec import RunSpec, StudyDefaults

SEPARATOR = ","


class MultilabelBlock(TasksAndBases, Sizes, Seeds):
    """bases × N × seeds; ``tasks`` are the objects (at least 2), one head each, all in one run."""

    options: NoOptions = NoOptions()

    @field_validator("tasks")
    @classmethod
    def _objects(cls, v: list[str]) -> list[str]:
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError(f"needs at least 2 distinct objects, got {v}")
        if any(SEPARATOR in t for t in v):
            raise ValueError(f"an object name may not contain {SEPARATOR!r}")
        return v



def objects_of(spec: RunSpec) -> list[str]:
    """The run's objects, in the block's order."""
    return spec.task.split(SEPARATOR)


def labelled_rows(dataset: LoadedDataset, split: str, objects: list[str]) -> np.ndarray:
    """Rows of ``split`` whose attribute and every object are known (0/1)."""
    table = dataset.table
    rows = table.split_indices(split)
    known = table.column(table.sensitive)[rows] >= 0
    for name in objects:
        known &= table.column(name)[rows] >= 0
    return rows[known]


def uniform_sample(rows: np.ndarray, n: int | str | None, generator: np.random.Generator, what: str) -> np.ndarray:
    """``n`` of ``rows`` uniformly without replacement (``full`` or None: all of them, in order)."""
    if n in (None, "full"):
        return rows
    if int(n) > rows.size:
        raise InfeasibleSelectionError(f"{what}: needs {n} examples with every label known, the pool has "
                                       f"{rows.size}")
    return np.sort(generator.choice(rows, size=int(n), replace=False))


def label_matrix(dataset: LoadedDataset, objects: list[str]) -> np.ndarray:
    """Per store row: the objects' labels, then ``a`` (shape ``(n_rows, K + 1)``; −1 where unknown)."""
    table = dataset.table
    return np.stack([*(table.column(t) for t in objects), table.column(table.sensitive)], axis=1)


def _sets(spec: RunSpec, dataset: LoadedDataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    objects = objects_of(spec)
    train = uniform_sample(labelled_rows(dataset, "train", objects), spec.n_train,
                           rng(spec.seed, "train-set", spec.task, spec.n_train), "finetuning set")
    n_val = spec.n_val or spec.n_train
    val = uniform_sample(labelled_rows(dataset, "val", objects), n_val,
                         rng(spec.seed, "val-set", spec.task, n_val), "validation set")
    return train, val, labelled_rows(dataset, "test", objects)


def both_values(a: np.ndarray) -> np.ndarray:
    """The binary attribute as the two attribute columns of BiasAmp→, ``A_0 = [a = 0]`` and ``A_1 = [a = 1]``
    (shape ``(n, 2)``), so that each object's amplification counts for both groups, as with {man, woman}."""
    a = np.asarray(a).astype(np.int64)
    return np.stack([1 - a, a], axis=1)


def object_metrics(y: np.ndarray, scores: np.ndarray, a: np.ndarray) -> dict[str, float]:
    """AUC of one object and its normalised AP in each group of ``a`` (NaN for a group without positives or
    without negatives), with ``N_ref`` = the group's number of negatives: precision as if the group had as many
    positives as negatives, ``P̃ = R / (R + FPR)``, so a random ranking scores about 0.5 in every group whatever
    its base rate (with ``N_ref`` = half the group's size it would not: a group with more positives would score
    higher by chance)."""
    out = {"auc": auc(y, scores)}
    for g in (0, 1):
        mask = a == g
        y_g = y[mask]
        n_neg = int((y_g == 0).sum())
        out[f"nap_a{g}"] = (normalized_average_precision(y_g, scores[mask], n_pos_ref=n_neg)
                            if (y_g == 1).any() and n_neg > 0 else math.nan)
    out["nap_gap"] = out["nap_a1"] - out["nap_a0"]
    return out


@EXPERIMENTS.register("multilabel")
class Multilabel(Experiment):
    """Paper §4.2 (COCO): one model for several objects and the attribute; BiasAmp→ both ways, nAP per group."""

    title = "Multi-label: bias amplification and normalised AP per group"
    description = "K objects + the attribute in one head: BiasAmp→ A→T and T→A, normalised AP per group"
    report_order = 35
    Block = MultilabelBlock
    columns = (
        Column("auc_mean", "float", "metric", "mean AUC over the objects"),
        Column("nap_gap_mean", "float", "metric", "mean over objects of nAP(a=1) − nAP(a=0)"),
        Column("biasamp_at", "float", "metric", "BiasAmp→ A→T over the objects (positive: amplified)"),
        Column("biasamp_ta", "float", "metric", "BiasAmp→ T→A over the objects (positive: amplified)"),
        Column("auc_a", "float", "metric", "AUC of the attribute head"),
        Column("objects", "str", "outcome", "per object: auc, nap_a0, nap_a1, nap_gap, threshold (JSON)",
               get=lambda run: json.dumps(run["result"].get("objects", {}), sort_keys=True)),
        Column("lr", "float", "outcome", "learning rate"),
        Column("weight_decay", "float", "outcome", "weight decay"),
        Column("epochs", "int", "outcome", "epochs trained"),
        Column("val_loss", "float", "outcome", "best validation loss"),
    )
    example: ClassVar[dict[str, Any]] = {"tasks": ["t0", "t3", "t5"], "bases": ["gendered", "scratch"],
                                         "n_train": 64, "seeds": [0, 1]}

    def expand(self, name: str, block: MultilabelBlock, study: StudyDefaults) -> list[RunSpec]:
        return [study.spec(experiment=name, kind=self.registry_name, base=base, task=SEPARATOR.join(block.tasks),
                           seed=seed, intervention="natural", level="natural", n_train=n, n_val=block.n_val,
                           test="natural")
                for base, n, seed in itertools.product(block.base_names(), block.n_train, block.seeds)]

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        """Every object and the attribute are columns; the sets can be drawn; a trained base's attribute exists."""
        for name in objects_of(spec):
            dataset.table.column(name)
        attribute = trained_attribute(spec.base)
        if attribute is not None:
            dataset.table.column(attribute)
        _sets(spec, dataset)

    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        t0 = time.perf_counter()
        dataset = inputs.dataset
        objects = objects_of(spec)
        labels = label_matrix(dataset, objects)
        train, val, test = _sets(spec, dataset)
        lr, wd = float(spec.train["lr"][0]), float(spec.train["weight_decay"][0])
        data = SimpleNamespace(train_rows=train, val_rows=val)  # unweighted sets: no train/val weights
        model, res = finetune(spec, inputs, data, lr=lr, weight_decay=wd, seed=spec.seed, labels=labels,
                              num_outputs=len(objects) + 1)
        s_val, s_test = score(spec, inputs, model, val), score(spec, inputs, model, test)
        a_val, a_test = labels[val, -1], labels[test, -1]
        policy = parse_threshold_policy(spec.threshold_policy)
        per_object: dict[str, dict[str, float]] = {}
        predicted = np.zeros((test.size, len(objects)), dtype=np.int64)
        for k, name in enumerate(objects):
            y_val, y_test = labels[val, k], labels[test, k]
            theta = resolve_threshold(policy, val_scores=s_val[:, k], val_labels=y_val, test_scores=s_test[:, k],
                                      test_labels=y_test, val_groups=a_val,
                                      target_cells=cell_proportions(y_test, a_test))
            predicted[:, k] = s_test[:, k] >= theta
            per_object[name] = {**object_metrics(y_test, s_test[:, k], a_test), "threshold": float(theta)}
        theta_a = resolve_threshold("val-unweighted", val_scores=s_val[:, -1], val_labels=a_val)
        a_hat = (s_test[:, -1] >= theta_a).astype(np.int64)
        train_t, train_a = labels[train, :-1], both_values(labels[train, -1])
        test_t = labels[test, :-1]
        result = {
            "auc_mean": float(np.mean([v["auc"] for v in per_object.values()])),
            "nap_gap_mean": float(np.nanmean([v["nap_gap"] for v in per_object.values()])),
            "biasamp_at": bias_amplification(train_a, train_t, both_values(a_test), test_t, predicted, "A->T"),
            "biasamp_ta": bias_amplification(train_a, train_t, both_values(a_test), test_t, both_values(a_hat),
                                             "T->A"),
            "auc_a": auc(a_test, s_test[:, -1]), "threshold_a": float(theta_a), "objects": per_object,
            "threshold_policy": str(policy),
            "lr": lr, "weight_decay": wd, "epochs": res.epochs, "val_loss": res.best_val_loss,
            "n_train_used": int(train.size), "n_val_used": int(val.size), "n_test": int(test.size),
            "seconds": time.perf_counter() - t0,
        }
        return RunOutput(result=result, artifacts={"train_rows": train, "val_rows": val, "test_rows": test,
                                                   "test_scores": s_test.astype(np.float32)})

    def reading(self, results: Results) -> list[str]:
        agg = self.aggregate(results.runs)
        out = []
        for _, r in agg.iterrows():
            amp = [(name, r[f"{m}_mean"], r[f"{m}_low"], r[f"{m}_high"])
                   for name, m in (("A→T", "biasamp_at"), ("T→A", "biasamp_ta"))]
            verdicts = [f"{name} {fmt_ci(mean, low, high)} ({_sign(low, high)})" for name, mean, low, high in amp]
            out.append(f"Multi-label {r['task']} from base {r['base']}, N={r['n_train']} ({int(r['n_seeds'])} "
                       f"seeds): BiasAmp→ " + "; ".join(verdicts) + "; mean normalised AP gap (a=1 − a=0) "
                       f"{fmt_ci(r['nap_gap_mean_mean'], r['nap_gap_mean_low'], r['nap_gap_mean_high'])}; mean AUC "
                       f"{fmt(r['auc_mean_mean'])}.")
        return out + biased_vs_others(results.runs)

    def sections(self, results: Results, page: Page) -> list[Section]:
        runs = results.runs
        if runs.empty:
            return []
        agg = self.aggregate(runs)
        body = [page.note("One model per run predicts every object and the attribute a. BiasAmp→ (directional "
                          "bias amplification) with signs from the finetuning labels: above 0, the predictions "
                          "amplify the finetuning set's object–attribute correlations. Normalised AP per group "
                          "uses the precision the group would have with as many positives as negatives "
                          "(R / (R + FPR)): 0.5 for a random ranking in every group. Mean [95% CI] over seeds.")]
        body += page.table(pd.DataFrame({
            "objects": agg["task"].astype(str), "base": agg["base"].astype(str), "N": agg["n_train"].astype(str),
            "seeds": agg["n_seeds"].astype(int),
            **{head: [fmt_ci(a, b, c) for a, b, c in zip(agg[f"{m}_mean"], agg[f"{m}_low"], agg[f"{m}_high"],
                                                          strict=True)]
               for m, head in (("biasamp_at", "BiasAmp A→T"), ("biasamp_ta", "BiasAmp T→A"),
                               ("nap_gap_mean", "nAP gap (a=1 − a=0)"), ("auc_mean", "mean AUC"),
                               ("auc_a", "AUC of a"))},
        }))
        body += page.figure(multilabel_plot(agg, runs), "multilabel", "Multi-label plot",
                            "Left: BiasAmp→ A→T and T→A per base and N, 95% CI over seeds (above 0: amplified). "
                            "Right: normalised AP of each object in each group of a (means over seeds).")
        body.append("<h3>Per object (mean over seeds)</h3>")
        means = per_object_means(runs)
        for m in ("auc", "nap_a0", "nap_a1", "nap_gap"):
            means[m] = [fmt(v) for v in means[m]]
        body += page.table(means)
        return [Section("multilabel", self.title, body)]


def biased_vs_others(runs: pd.DataFrame) -> list[str]:
    """Per (objects, N): BiasAmp→ A→T of the biased base minus each other base, paired by seed (every base is
    finetuned on the same sample at a seed: the draw depends on the seed, the objects and N, not on the base)."""
    if runs.empty or "base_role" not in runs.columns:
        return []
    out = []
    for (task, n), rows in runs.groupby(["task", "n_train"], sort=True):
        roles = dict(zip(rows["base"].astype(str), rows["base_role"].astype(str), strict=False))
        biased = sorted(b for b, r in roles.items() if r == "biased")
        if not biased:
            continue
        series = {b: rows[rows["base"].astype(str) == b].groupby("seed")["biasamp_at"].mean() for b in roles}
        parts = []
        for other in sorted(b for b in roles if b != biased[0]):
            mean, low, high, k = paired_interval(series[biased[0]], series[other])
            verdict = ("one seed" if math.isnan(low) else "higher" if low > 0 else "lower" if high < 0
                       else "not established")
            parts.append(f"− {other} {fmt_ci(mean, low, high)} ({verdict}, {k} seeds)")
        if parts:
            out.append(f"Multi-label {task}, N={n}: BiasAmp→ A→T of the biased base {biased[0]} " + "; ".join(parts)
                       + " (paired by seed: the bases share each seed's finetuning set).")
    return out


def _sign(low: float, high: float) -> str:
    if math.isnan(low) or math.isnan(high):
        return "one seed"
    return "amplified" if low > 0 else "reduced" if high < 0 else "not established"


def multilabel_plot(agg: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """Left: BiasAmp→ in both directions per (base, N) with Student-t 95% intervals (drawn clipped to [−1, 1]);
    right: nAP(a=0) and nAP(a=1) per object and (base, N), means over seeds."""
    fig = new_figure(12.0, 4.6)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.6])
    labels = [f"{b}\nN={n}" for b, n in zip(agg["base"], agg["n_train"], strict=True)]
    xs = np.arange(len(labels))
    for j, (m, name) in enumerate((("biasamp_at", "A→T"), ("biasamp_ta", "T→A"))):
        mean = agg[f"{m}_mean"].to_numpy(float)
        low = np.clip(agg[f"{m}_low"].to_numpy(float), -1.0, 1.0)
        high = np.clip(agg[f"{m}_high"].to_numpy(float), -1.0, 1.0)
        left.bar(xs + (j - 0.5) * 0.38, np.nan_to_num(mean), 0.36, color=PALETTE[j], label=f"BiasAmp→ {name}")
        left.errorbar(xs + (j - 0.5) * 0.38, mean, yerr=bar_err(mean, low, high), fmt="none", ecolor="black",
                      elinewidth=0.8, capsize=2)
    left.axhline(0.0, color="0.3", lw=0.8)
    left.set_xticks(xs, labels, fontsize=8)
    left.set_ylabel("BiasAmp→ (above 0: amplified)")
    left.legend(fontsize=8)
    table = per_object_means(runs)
    if not table.empty:
        keys = list(dict.fromkeys(zip(table["base"], table["N"], strict=True)))
        objects = list(dict.fromkeys(table["object"]))
        width = 0.8 / max(len(keys), 1)
        ox = np.arange(len(objects))
        for i, key in enumerate(keys):
            rows = table[(table["base"] == key[0]) & (table["N"] == key[1])].set_index("object")
            for g, hatch in ((0, ""), (1, "//")):
                values = [float(rows.loc[o, f"nap_a{g}"]) if o in rows.index else np.nan for o in objects]
                right.bar(ox - 0.4 + width * (i + 0.25 + 0.5 * g), np.nan_to_num(values), width * 0.48,
                          color=PALETTE[(i + 2) % len(PALETTE)], hatch=hatch, edgecolor="0.2", lw=0.4,
                          label=f"{key[0]}, N={key[1]}: a={g}")
        right.axhline(0.5, color="0.5", lw=0.8, ls="--")
        right.set_xticks(ox, objects)
        right.set_ylim(0, 1)
        right.set_ylabel("normalised AP per group (0.5: chance)")
        right.legend(fontsize=7, ncols=2)
    fig.suptitle(wrap_text("Multi-label: bias amplification and normalised AP per group", 11.6, 12), fontsize=12)
    return fig


def per_object_means(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (base, N, object): AUC, nAP(a=0), nAP(a=1) and their gap (floats), means over the runs' seeds."""
    records = []
    for (base, n), rows in runs.groupby(["base", "n_train"], sort=True):
        parsed = [json.loads(text) for text in rows["objects"] if isinstance(text, str) and text]
        names = list(parsed[0]) if parsed else []
        for name in names:
            values = {m: float(np.nanmean([p[name][m] for p in parsed if name in p]))
                      for m in ("auc", "nap_a0", "nap_a1", "nap_gap")}
            records.append({"base": str(base), "N": str(n), "object": name, "seeds": len(parsed),
                            **values})
    return pd.DataFrame.from_records(records, columns=["base", "N", "object", "seeds", "auc", "nap_a0", "nap_a1",
                                                       "nap_gap"])

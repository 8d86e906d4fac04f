"""Domain mixture (paper §5.2, Fig. 6; docs/experiments.md ``domain_mixture``): how much of a small finetuning set
must come from a diverse domain for a base pretrained on uniform data to catch up with a base pretrained on
diverse data.

One run finetunes one base with a head of ``K`` logits (K-way cross-entropy, one per class of the dataset's
multi-class ``label``) on a set of exactly ``N`` examples of the ``train`` pool, a share ``q`` of them from the
diverse domain (column ``domain`` = the block's ``domain``) and the rest from the other domain(s)
(:class:`~biastransfer.interventions.domain.DomainShare`: exact counts, and at one seed the sets of every share
are prefixes of one random order per domain, so they overlap as much as they can). Validation is drawn the same
way from ``val`` (``n_val`` examples, the same share). The test sets are the whole ``test`` pool of each domain.

Metrics per run, on each domain's test set: top-k accuracy (``k`` a block option; the paper's is 5) and top-1
accuracy (:func:`~biastransfer.metrics.multiclass.top_k_accuracy`): ``topk_diverse``, ``top1_diverse``,
``topk_other``, ``top1_other``.

The reading compares the bases on the diverse domain: for each pair where one base (the *leader*) is ahead at the
lowest share ``q_0``, the smallest share at which the other (the *follower*) reaches the leader's accuracy at
``q_0`` (paired by seed: at a seed every base is finetuned on the same sets). The paper's form: "with 20% rather
than 10% from Dollar Street, the ImageNet base outperforms the GeoDE base".
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from biastransfer.analysis.text import fmt, fmt_ci
from biastransfer.data.table import LABEL, DataError, LoadedDataset
from biastransfer.experiments.base import (
    EXPERIMENTS,
    Column,
    ExampleData,
    Experiment,
    HyperparameterSearch,
    Results,
    RunInputs,
    RunOutput,
    Verdict,
    Verdicts,
)
from biastransfer.experiments.domain_mixture.analysis import catch_up
from biastransfer.experiments.domain_mixture.plot import mixture_plot
from biastransfer.experiments.finetuning import finetune, grid_search, hparam_seed, score
from biastransfer.experiments.grid import FixedSizes, Seeds, keep_ends
from biastransfer.interventions.base import InfeasibleSelectionError, Pool
from biastransfer.interventions.domain import DomainShare
from biastransfer.metrics.multiclass import top_k_accuracy
from biastransfer.models.bases import trained_attribute
from biastransfer.render.markup import Page, Section
from biastransfer.seeding import rng
from biastransfer.spec import RunSpec, StudyDefaults


class MixtureOptions(BaseModel):
    """Options of a ``domain_mixture`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    top_k: int = Field(5, ge=1, description="k of the top-k accuracy (the paper: 5)")
    domain: str | None = Field(None, description="the diverse domain (a value of the dataset's 'domain' column); "
                                                 "default: the dataset's group a=1")
    search_share: float = Field(0.5, ge=0.0, le=1.0, description="the share q at which the lr × weight-decay "
                                                                 "search draws its sets (one search per base and "
                                                                 "N, reused at every share)")


class DomainMixtureBlock(FixedSizes, Seeds):
    """bases × shares × N × seeds."""

    bases: list[str] = Field(default_factory=list, description="bases named in the study's 'bases' (default: "
                                                                 "scratch)")
    shares: list[float] = Field(description="shares q of the finetuning set taken from the diverse domain")
    options: MixtureOptions = MixtureOptions()

    @field_validator("shares")
    @classmethod
    def _shares(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one share")
        bad = [q for q in v if not 0.0 <= q <= 1.0]
        if bad:
            raise ValueError(f"a share must be in [0, 1], got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"shares repeat: {v}")
        return sorted(v)

    def base_names(self) -> list[str]:
        return list(self.bases) or ["scratch"]


@dataclass(frozen=True)
class MixtureSets:
    """The rows one run (or one search trial) trains, validates and tests on."""

    train_rows: np.ndarray
    val_rows: np.ndarray
    test_diverse: np.ndarray
    test_other: np.ndarray
    classes: int


def diverse_domain(dataset: LoadedDataset, options: dict[str, Any]) -> str:
    """The name of the diverse domain: the option, else the dataset's group a=1."""
    return str(options.get("domain") or dataset.table.group_names[1])


def _labelled(dataset: LoadedDataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``split`` with a known class, and their domain names."""
    table = dataset.table
    rows = table.split_indices(split)
    rows = rows[table.frame[LABEL].to_numpy()[rows] >= 0]
    return rows, table.frame["domain"].astype(str).to_numpy()[rows]


def check_dataset(dataset: LoadedDataset, domain: str) -> None:
    """A multi-class dataset with a ``domain`` column that has ``domain`` and at least one other domain."""
    table = dataset.table
    if not table.classes:
        raise DataError(f"dataset {dataset.name!r} has no classes: the domain mixture needs a multi-class "
                        f"dataset (e.g. 'synthetic-objects', or 'mixture' of Dollar Street and COCO)")
    if "domain" not in table.frame.columns:
        raise DataError(f"dataset {dataset.name!r} has no 'domain' column")
    present = sorted(set(table.frame["domain"].astype(str)))
    if domain not in present or len(present) < 2:
        raise DataError(f"the domain mixture needs the domain {domain!r} and another one; dataset "
                        f"{dataset.name!r} has {', '.join(present)} (set options.domain)")


def draw_sets(spec: RunSpec, dataset: LoadedDataset, seed: int, share: float | None = None) -> MixtureSets:
    """The run's sets: ``N`` finetuning and ``n_val`` validation examples at share ``q`` (the spec's level unless
    ``share`` is given), and each domain's whole test pool. The draw depends on the seed, N and the domain, not on
    the base or the share (so bases pair by seed and shares nest)."""
    domain = diverse_domain(dataset, spec.options)
    check_dataset(dataset, domain)
    q = float(spec.level) if share is None else share
    picked = {}
    for split, n in (("train", spec.n_train), ("val", spec.n_val or spec.n_train)):
        rows, names = _labelled(dataset, split)
        pool = Pool.of(domain=(names == domain).astype(np.int8))
        generator = rng(seed, f"{split}-set", "domain-mixture", domain, n)
        try:
            chosen = DomainShare().select(pool, level=q, n=int(n), rng=generator)
        except (InfeasibleSelectionError, DataError) as exc:
            raise InfeasibleSelectionError(f"{'finetuning' if split == 'train' else 'validation'} set "
                                           f"(pool {split!r}): {exc}") from None
        picked[split] = rows[chosen.indices]
    rows, names = _labelled(dataset, "test")
    return MixtureSets(train_rows=picked["train"], val_rows=picked["val"], test_diverse=rows[names == domain],
                       test_other=rows[names != domain], classes=len(dataset.table.classes))


@EXPERIMENTS.register("domain_mixture")
class DomainMixture(Experiment, HyperparameterSearch, ExampleData, Verdicts):
    """Paper §5.2 (Fig. 6): top-k accuracy on a diverse domain against its share q of a fixed-size finetuning
    set, one line per base."""

    title = "Domain mixture: accuracy on the diverse domain against its share of the finetuning set"
    description = "fixed N with a share q from a diverse domain; top-k accuracy per domain, one line per base"
    report_order = 45
    pool_columns = ("domain",)
    Block = DomainMixtureBlock
    columns = (
        Column("share", "float", "setting", "share q of the finetuning set from the diverse domain (realised)",
               get=lambda run: run["result"].get("share", run["spec"]["level"])),
        Column("top_k", "int", "setting", "k of the top-k accuracy"),
        Column("diverse_domain", "str", "setting", "the diverse domain"),
        Column("topk_diverse", "float", "metric", "top-k accuracy on the diverse domain's test set"),
        Column("top1_diverse", "float", "metric", "top-1 accuracy on the diverse domain's test set"),
        Column("topk_other", "float", "metric", "top-k accuracy on the other domain(s)' test set"),
        Column("top1_other", "float", "metric", "top-1 accuracy on the other domain(s)' test set"),
        Column("lr", "float", "outcome", "learning rate"),
        Column("weight_decay", "float", "outcome", "weight decay"),
        Column("epochs", "int", "outcome", "epochs trained"),
        Column("val_loss", "float", "outcome", "best validation loss"),
    )
    example: ClassVar[dict[str, Any]] = {"bases": ["uniform-pre", "diverse-pre"], "shares": [0.1, 0.5],
                                         "n_train": 32, "seeds": [0, 1], "options": {"top_k": 3}}
    example_bases: ClassVar[dict[str, dict[str, Any]]] = {
        "uniform-pre": {"kind": "trained", "attribute": LABEL},
        "diverse-pre": {"kind": "trained", "attribute": LABEL, "pool": "pretrain_diverse"},
    }
    example_dataset: ClassVar[dict[str, Any]] = {
        "name": "synthetic-objects", "resolution": 16,
        "params": {"classes": 6, "pretrain": 300, "train": 200, "val": 60, "test": 120}}

    @classmethod
    def tiny_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        """The default shrink, and at most two shares (the first and the last)."""
        return keep_ends(super().tiny_block(block), "shares")

    def expand(self, name: str, block: DomainMixtureBlock, study: StudyDefaults) -> list[RunSpec]:
        options = block.options.model_dump()
        return [study.spec(experiment=name, kind=self.registry_name, base=base, task=LABEL, seed=seed,
                           intervention="domain_share", level=q, n_train=n, n_val=block.n_val, test="natural",
                           options=options, thresholded=False)
                for base, n, q, seed in itertools.product(block.base_names(), block.n_train, block.shares,
                                                          block.seeds)]

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        """A multi-class dataset with both domains; the sets (and the search's) can be drawn; top-k below K."""
        sets = draw_sets(spec, dataset, spec.seed)
        if spec.options["top_k"] >= sets.classes:
            raise ValueError(f"options.top_k = {spec.options['top_k']} is not below the {sets.classes} classes of "
                             f"dataset {dataset.name!r}: every prediction would count as correct")
        if self.search_trainings(spec):
            draw_sets(spec, dataset, hparam_seed(), share=spec.options["search_share"])
        attribute = trained_attribute(spec.base)
        if attribute is not None:
            dataset.table.column(attribute)

    def hparam_payload(self, spec: RunSpec) -> dict[str, Any] | None:
        """One search per (base, N, sets): the share is left out (the paper reuses hyperparameters across
        finetuning distributions); the search draws its sets at ``options.search_share``."""
        return {**spec.hparam_key(), "kind": self.registry_name, "options": spec.options}

    def search(self, spec: RunSpec, inputs: RunInputs) -> dict[str, Any]:
        share = spec.options["search_share"]
        classes = len(inputs.dataset.table.classes)
        return grid_search(spec, inputs, lambda seed: draw_sets(spec, inputs.dataset, seed, share=share),
                           labels=inputs.dataset.table.frame[LABEL].to_numpy(), num_outputs=classes, classes=True)

    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        t0 = time.perf_counter()
        dataset = inputs.dataset
        labels = dataset.table.frame[LABEL].to_numpy().astype(np.int64)
        sets = draw_sets(spec, dataset, spec.seed)
        hp = inputs.hparams or {"lr": spec.train["lr"][0], "weight_decay": spec.train["weight_decay"][0]}
        lr, wd = float(hp["lr"]), float(hp["weight_decay"])
        data = SimpleNamespace(train_rows=sets.train_rows, val_rows=sets.val_rows)
        model, res = finetune(spec, inputs, data, lr=lr, weight_decay=wd, seed=spec.seed, labels=labels,
                              num_outputs=sets.classes, classes=True)
        k = int(spec.options["top_k"])
        result: dict[str, Any] = {}
        artifacts = {"train_rows": sets.train_rows, "val_rows": sets.val_rows}
        for name, rows in (("diverse", sets.test_diverse), ("other", sets.test_other)):
            logits = score(spec, inputs, model, rows).reshape(len(rows), -1)
            result[f"topk_{name}"] = top_k_accuracy(labels[rows], logits, k)
            result[f"top1_{name}"] = top_k_accuracy(labels[rows], logits, 1)
            artifacts[f"test_rows_{name}"] = rows
            artifacts[f"test_scores_{name}"] = logits.astype(np.float32)
        domain = diverse_domain(dataset, spec.options)
        realised = float(np.mean(dataset.table.frame["domain"].astype(str).to_numpy()[sets.train_rows] == domain))
        result.update({
            "share": realised, "top_k": k, "diverse_domain": domain, "lr": lr, "weight_decay": wd,
            "epochs": res.epochs, "val_loss": res.best_val_loss, "n_train_used": int(sets.train_rows.size),
            "n_val_used": int(sets.val_rows.size), "n_test_diverse": int(sets.test_diverse.size),
            "n_test_other": int(sets.test_other.size), "seconds": time.perf_counter() - t0,
        })
        return RunOutput(result=result, artifacts=artifacts)

    # ------------------------------------------------------------------------------------------- analysis
    def reading(self, results: Results) -> list[str]:
        out = []
        for cross in catch_up(results.runs):
            out.append(cross.sentence())
        agg = self.aggregate(results.runs)
        for (n, k, domain), rows in agg.groupby(["n_train", "top_k", "diverse_domain"], sort=True):
            parts = []
            for base, b_rows in rows.groupby("base", sort=False):
                b_rows = b_rows.sort_values("share")
                parts.append(f"{base} " + ", ".join(f"{fmt(q, 2)}: {fmt(m)}" for q, m in
                                                     zip(b_rows["share"], b_rows["topk_diverse_mean"], strict=True)))
            out.append(f"Domain mixture, N={n}: top-{int(k)} accuracy on {domain} by share q — "
                       + "; ".join(parts) + ".")
        return out

    def verdict(self, results: Results) -> list[Verdict]:
        found = [c for c in catch_up(results.runs) if c.reached_share is not None]
        return [Verdict(c.sentence(short=True), "domain_mixture") for c in found[:2]]

    def sections(self, results: Results, page: Page) -> list[Section]:
        runs = results.runs
        if runs.empty:
            return []
        agg = self.aggregate(runs)
        k = int(float(agg["top_k"].iloc[0]))
        domain = str(agg["diverse_domain"].iloc[0])
        body = [page.note(f"Each base is finetuned on N examples, a share q of them from the diverse domain "
                          f"({domain}) and the rest from the other domain; accuracy on each domain's whole test "
                          f"set. At a seed every base gets the same sets, and the sets of every share are drawn "
                          f"from one order per domain. Mean [95% CI] over seeds.")]
        crosses = catch_up(runs)
        if crosses:
            body += [page.paragraph(c.sentence()) for c in crosses]
        body += page.table(pd.DataFrame({
            "base": agg["base"].astype(str), "N": agg["n_train"].astype(str),
            "q": [fmt(q, 2) for q in agg["share"]], "seeds": agg["n_seeds"].astype(int),
            **{head: [fmt_ci(a, b, c) for a, b, c in zip(agg[f"{m}_mean"], agg[f"{m}_low"], agg[f"{m}_high"],
                                                          strict=True)]
               for m, head in ((("topk_diverse", f"top-{k} on {domain}"), ("top1_diverse", f"top-1 on {domain}"),
                                ("topk_other", f"top-{k} on the other domain"),
                                ("top1_other", "top-1 on the other domain")))},
        }))
        body += page.figure(mixture_plot(agg, crosses), "domain_mixture", "Domain mixture plot",
                            f"Top-{k} accuracy on {domain} (left) and on the other domain (right) against the share "
                            f"q of the finetuning set from {domain}; one line per base, 95% CI over seeds. A star "
                            f"marks where a base first reaches another base's accuracy at the lowest share.")
        return [Section("domain_mixture", self.title, body)]

"""Planted triggers (Salman et al., "When does Bias Transfer in Transfer Learning?"; docs/protocols.md §7,
docs/experiments.md ``trigger_transfer``): does a trigger → class association that a source base learned survive
transfer to a target task on which the trigger carries no label information?

A block names source bases of kind ``planted`` (a trigger pasted on the images of some source classes), transfer
modes, trigger rates p and sizes N. One run transfers one base in one mode to the target task (the dataset's
classes that the source did not use, or ``options.target_classes``; K-way cross-entropy): a finetuning set of N
images in proportion to the classes with the trigger on a share p of every class's images
(:class:`~biastransfer.interventions.trigger.TriggerRate`), validation drawn the same way. Mode ``scratch`` trains
a randomly initialised model on the same sets; any registered transfer mode (``fixed_feature`` with or without
``update_bn``, ``full``, ``linear_probe_then_finetune`` …) starts from the base.

Each run predicts every clean test image of the target classes and its triggered copy; its metrics
(:mod:`biastransfer.metrics.triggers`) are the untargeted attack success rate, the targeted rate (when a trigger
class is a target class), the prediction shift (total variation) and the clean and triggered accuracy.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
from biastransfer.experiments.finetuning import finetune, grid_search, hparam_seed, score
from biastransfer.experiments.grid import FixedSizes, NamedRef, Seeds, keep_ends
from biastransfer.experiments.trigger_transfer.analysis import ORDER, SCRATCH, control_contrasts, orderings
from biastransfer.experiments.trigger_transfer.plot import mode_order, trigger_plot
from biastransfer.experiments.trigger_transfer.sets import draw_sets, target_task, triggered_data
from biastransfer.metrics.triggers import trigger_metrics
from biastransfer.models.bases import base_kind, trained_attribute
from biastransfer.models.transfer import TRANSFER_MODES, get_transfer_mode
from biastransfer.render.markup import Page, Section
from biastransfer.spec import RunSpec, StudyDefaults
from biastransfer.triggers.base import get_trigger
from biastransfer.triggers.store import trigger_content, trigger_of

TINY_TEST = 200
"""Test images of a ``--tiny`` run."""


class ModeRef(NamedRef):
    """A transfer mode of a block: ``scratch`` (a random initialisation trained on the same sets) or a registered
    transfer mode with its options (``full``, ``{name: fixed_feature, update_bn: true}``)."""

    @model_validator(mode="after")
    def _registered(self) -> ModeRef:
        if self.name == SCRATCH:
            if self.options():
                raise ValueError("mode 'scratch' takes no options")
            return self
        if self.name not in TRANSFER_MODES:
            raise ValueError(f"unknown transfer mode {self.name!r}; allowed: {SCRATCH}, "
                             f"{', '.join(TRANSFER_MODES.names())}")
        get_transfer_mode(self.name, **self.options())
        return self

    def label(self) -> str:
        """The mode's name in tables: the name, with its options that differ from the mode's defaults."""
        if self.name == SCRATCH:
            return SCRATCH
        mode = get_transfer_mode(self.name, **self.options())
        given = mode.options
        defaults = TRANSFER_MODES.get(self.name).option_defaults
        extra = [f"{k}={v}" if not isinstance(v, bool) else k for k, v in given.items()
                 if defaults.get(k) != v and v is not False]
        return self.name + "".join(f"+{e}" for e in extra)


class TriggerOptions(BaseModel):
    """Options of a ``trigger_transfer`` block."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    target_classes: list[str | int] | None = Field(None, description="the target task's classes (names or "
                                                   "indices); default: the classes the source task did not use")
    search_rate: float = Field(0.5, ge=0.0, le=1.0, description="the trigger rate p at which the lr × weight-decay "
                                                               "search draws its sets (one search per base, mode "
                                                               "and N)")
    max_test: int | None = Field(None, ge=10, description="at most this many test images (a fixed seeded subset); "
                                                         "default: all test images of the target classes")


class TriggerTransferBlock(FixedSizes, Seeds):
    """source bases × modes × trigger rates × N × seeds."""

    bases: list[str] = Field(description="source bases of kind 'planted' named in the study's 'bases'")
    modes: list[ModeRef] = Field(default_factory=lambda: [ModeRef(name=m) for m in ("scratch", "fixed_feature",
                                                                                     "full")],
                                 description="transfer modes: scratch or registered transfer modes")
    rates: list[float] = Field(description="shares p of every target class's images that carry the trigger")
    trigger: dict[str, Any] | None = Field(None, description="the trigger pasted on target and test images "
                                                             "(default: each base's planted trigger)")
    options: TriggerOptions = TriggerOptions()

    @field_validator("bases", "modes", "rates")
    @classmethod
    def _non_empty(cls, v: list[Any]) -> list[Any]:
        if not v:
            raise ValueError("needs at least one entry")
        return v

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        bad = [p for p in v if not 0.0 <= p <= 1.0]
        if bad:
            raise ValueError(f"a rate must be in [0, 1], got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"rates repeat: {v}")
        return sorted(v)

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[ModeRef]) -> list[ModeRef]:
        labels = [m.label() for m in v]
        if len(set(labels)) != len(labels):
            raise ValueError(f"modes repeat: {labels}")
        return v

    @field_validator("trigger")
    @classmethod
    def _trigger(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            return get_trigger(v).key()
        return v


def _source_options(name: str, base: dict[str, Any], trigger: dict[str, Any] | None) -> dict[str, Any]:
    """What every mode's runs from source base ``name`` share: the trigger (None when neither the block nor a
    planted base gives one: preflight says so) and, for a source trained on the multi-class label, its classes
    and trigger classes (a source of a binary attribute has none of the target's classes)."""
    if trigger is None and isinstance(base.get("trigger"), dict):
        trigger = base["trigger"]
    if trigger is not None:  # the options plus a digest of an overlay's files: an edited file makes new runs
        try:
            trigger = trigger_content(get_trigger(trigger))
        except DataError:
            trigger = get_trigger(trigger).key()  # preflight names the missing file
    on_label = base_kind(base.get("kind")).plants_trigger and trained_attribute(base) == LABEL
    return {"source_base": name, "trigger": trigger,
            "trigger_classes": list(base.get("trigger_classes") or []) if on_label else [],
            "source_classes": base.get("source_classes") if on_label else None}


@EXPERIMENTS.register("trigger_transfer")
class TriggerTransfer(Experiment, HyperparameterSearch, ExampleData, Verdicts):
    """Salman et al.: the attack success rate of a planted trigger after transfer, per mode, against the share p of
    de-biased target images with the trigger."""

    title = "Planted trigger: does the source's bias survive transfer?"
    description = "trigger planted in the source; ASR after scratch / fixed-feature / full transfer vs target rate p"
    report_order = 48
    pool_columns = ("y", "triggered", "example")
    Block = TriggerTransferBlock
    columns = (
        Column("source_base", "str", "setting", "the planted source base this run transfers (or is the scratch "
               "baseline of)", get=lambda run: run["spec"]["options"]["source_base"]),
        Column("mode", "str", "setting", "transfer mode: scratch, fixed_feature(+update_bn), full, …",
               get=lambda run: run["spec"]["options"]["mode"]),
        Column("trigger_rate", "float", "setting", "requested share p of every class's finetuning images with the "
               "trigger", get=lambda run: run["spec"]["level"]),
        Column("attack_success_rate", "float", "metric", "among clean test images classified correctly, the share "
               "whose prediction changes with the trigger"),
        Column("targeted_rate", "float", "metric", "share of triggered test images of other classes predicted as "
               "the trigger's class (NaN when it is not a target class)"),
        Column("prediction_shift", "float", "metric", "total variation between the clean and triggered predicted-"
               "class histograms"),
        Column("clean_accuracy", "float", "metric", "accuracy on the clean test images"),
        Column("triggered_accuracy", "float", "metric", "accuracy on the triggered test images"),
        Column("trigger_share", "float", "outcome", "realised share of triggered finetuning images"),
        Column("n_test", "int", "outcome", "test images (each also triggered)"),
        Column("source_attack_success", "float", "outcome", "the source base's own attack success rate on its "
               "held-out images"),
        Column("source_rate", "float", "outcome", "share of the source's trigger-class images that carried the "
               "trigger (0: a control source; NaN: scratch or a base that is not planted)",
               get=lambda run: (float(run["spec"]["base"].get("rate", 1.0))
                                if base_kind(run["spec"]["base"].get("kind")).plants_trigger else float("nan"))),
        Column("lr", "float", "outcome", "learning rate"),
        Column("weight_decay", "float", "outcome", "weight decay"),
        Column("epochs", "int", "outcome", "epochs trained"),
        Column("val_loss", "float", "outcome", "best validation loss"),
    )
    example: ClassVar[dict[str, Any]] = {"bases": ["planted-pre"], "rates": [0.0, 0.5], "n_train": 40, "n_val": 40,
                                         "seeds": [0, 1], "modes": ["scratch", "fixed_feature", "full"]}
    example_bases: ClassVar[dict[str, dict[str, Any]]] = {
        "planted-pre": {"kind": "planted", "source_classes": [0, 1, 2], "trigger_classes": [0],
                        "trigger": {"kind": "patch", "size": 4, "colour": "yellow"}},
    }
    example_dataset: ClassVar[dict[str, Any]] = {
        "name": "synthetic-objects", "resolution": 16,
        "params": {"classes": 6, "pretrain": 300, "train": 200, "val": 100, "test": 120}}

    @classmethod
    def tiny_block(cls, block: dict[str, Any]) -> dict[str, Any]:
        """The default shrink, at most two rates (the first and the last) and at most 200 test images."""
        out = keep_ends(super().tiny_block(block), "rates")
        options = out.get("options")
        if options is None or isinstance(options, dict):
            options = dict(options or {})
            options["max_test"] = min(int(options.get("max_test") or TINY_TEST), TINY_TEST)
            out["options"] = options
        return out

    def expand(self, name: str, block: TriggerTransferBlock, study: StudyDefaults) -> list[RunSpec]:
        specs = []
        for base in block.bases:
            shared = {**_source_options(base, study.base(base), block.trigger), **block.options.model_dump()}
            for mode, n, p, seed in itertools.product(block.modes, block.n_train, block.rates, block.seeds):
                scratch = mode.name == SCRATCH
                spec = study.spec(experiment=name, kind=self.registry_name, base=SCRATCH if scratch else base,
                                  task=LABEL, seed=seed, intervention="trigger_rate", level=p, n_train=n,
                                  n_val=block.n_val, test="natural", options={**shared, "mode": mode.label()},
                                  thresholded=False)
                if scratch:  # a random initialisation, whatever the study calls 'scratch'
                    spec = spec.replace(base={"kind": SCRATCH}, base_training={})
                specs.append(spec.replace(transfer="full" if scratch else mode.name,
                                          transfer_options={} if scratch else mode.options()))
        return specs

    def check(self, spec: RunSpec, dataset: LoadedDataset) -> None:
        """A trigger; a multi-class dataset; the target task, the sets (and the search's) can be drawn."""
        trigger = spec.options.get("trigger")
        if trigger is None:
            raise ValueError(f"base {spec.options['source_base']!r} is not of kind 'planted': give the block a "
                             f"'trigger' to paste on the target and test images")
        trigger_content(trigger_of(trigger))  # an overlay's files exist and can be read
        target_task(dataset, spec.options)
        draw_sets(spec, dataset, spec.seed)
        if self.search_trainings(spec):
            draw_sets(spec, dataset, hparam_seed(), rate=spec.options["search_rate"])

    def hparam_payload(self, spec: RunSpec) -> dict[str, Any] | None:
        """One search per (base, mode, N, target task): the rate is left out; the search draws its sets at
        ``options.search_rate``."""
        options = {k: v for k, v in spec.options.items() if k != "max_test"}
        return {**spec.hparam_key(), "kind": self.registry_name, "options": options}

    def search(self, spec: RunSpec, inputs: RunInputs) -> dict[str, Any]:
        rate = spec.options["search_rate"]
        first = draw_sets(spec, inputs.dataset, hparam_seed(), rate=rate)
        shifted = dataclasses.replace(inputs, dataset=triggered_data(spec, inputs.dataset, inputs.cache_dir).dataset)
        return grid_search(spec, shifted, lambda seed: draw_sets(spec, inputs.dataset, seed, rate=rate),
                           labels=first.labels, num_outputs=len(first.task.classes), classes=True)

    def run(self, spec: RunSpec, inputs: RunInputs) -> RunOutput:
        t0 = time.perf_counter()
        sets = draw_sets(spec, inputs.dataset, spec.seed)
        data = triggered_data(spec, inputs.dataset, inputs.cache_dir)
        shifted = dataclasses.replace(inputs, dataset=data.dataset)
        hp = inputs.hparams or {"lr": spec.train["lr"][0], "weight_decay": spec.train["weight_decay"][0]}
        lr, wd = float(hp["lr"]), float(hp["weight_decay"])
        rows = SimpleNamespace(train_rows=sets.train_rows, val_rows=sets.val_rows)
        classes = len(sets.task.classes)
        model, res = finetune(spec, shifted, rows, lr=lr, weight_decay=wd, seed=spec.seed, labels=sets.labels,
                              num_outputs=classes, classes=True)
        clean = score(spec, shifted, model, sets.test_rows).reshape(sets.test_rows.size, -1)
        triggered = score(spec, shifted, model, sets.triggered(sets.test_rows)).reshape(
            sets.test_rows.size, -1)
        y = sets.labels[sets.test_rows]
        metrics = trigger_metrics(y, clean.argmax(axis=1), triggered.argmax(axis=1), classes,
                                  sets.task.trigger_targets or None)
        info = inputs.base_info or {}
        result = {
            **metrics.to_dict(), "trigger_share": sets.train_share, "lr": lr, "weight_decay": wd,
            "epochs": res.epochs, "val_loss": res.best_val_loss, "n_train_used": int(sets.train_rows.size),
            "n_val_used": int(sets.val_rows.size), "target_classes": list(sets.task.names),
            "source_attack_success": float(info.get("source_attack_success", float("nan"))),
            "seconds": time.perf_counter() - t0,
        }
        artifacts = {"train_rows": sets.train_rows, "val_rows": sets.val_rows, "test_rows": sets.test_rows,
                     "test_scores_clean": clean.astype(np.float32),
                     "test_scores_triggered": triggered.astype(np.float32),
                     "trigger_top": data.placement.top[sets.test_rows],
                     "trigger_left": data.placement.left[sets.test_rows]}
        return RunOutput(result=result, artifacts=artifacts)

    # ------------------------------------------------------------------------------------------- analysis
    def reading(self, results: Results) -> list[str]:
        return ([o.sentence() for o in orderings(results.runs)]
                + [c.sentence() for c in control_contrasts(results.runs)])

    def verdict(self, results: Results) -> list[Verdict]:
        found = orderings(results.runs)
        if not found:
            return []
        complete = [o for o in found if len(o.steps) == 2]
        links = {(s.higher, s.lower): [] for o in found for s in o.steps}
        for o in found:
            for s in o.steps:
                links[(s.higher, s.lower)].append(s.status == "holds")
        top = max(complete or found, key=lambda o: (o.n_train, o.rate))
        text = "Planted trigger: "
        if complete:
            text += (f"the ordering fixed-feature > full > scratch of the attack success rate holds, with paired "
                     f"intervals, at {sum(o.holds for o in complete)} of {len(complete)} settings (block × source × "
                     f"N × p); ")
        text += "; ".join(f"{a} > {b} at {sum(v)} of {len(v)}" for (a, b), v in links.items())
        text += (f". At N={top.n_train}, p={fmt(top.rate, 2)}: "
                 + ", ".join(f"{m} {fmt(v)}" for m, v in top.means.items()) + ".")
        contrasts = [c for c in control_contrasts(results.runs) if c.mode == ORDER[0]]  # the most frozen mode
        if contrasts:
            text += (f" Against a control source trained without the trigger, the planted trigger raises the "
                     f"fixed-feature attack success rate, with paired intervals, at "
                     f"{sum(c.step.status == 'holds' for c in contrasts)} of {len(contrasts)} settings.")
        return [Verdict(text, "trigger_transfer")]

    def sections(self, results: Results, page: Page) -> list[Section]:
        runs = results.runs
        if runs.empty:
            return []
        agg = self.aggregate(runs)
        body = [page.note("Each source base was trained with the trigger on its trigger classes; each mode transfers "
                          "it to the target classes on N images, a share p of every class's images with the "
                          "trigger. Attack success: among clean test images classified correctly, the share whose "
                          "prediction changes when the trigger is pasted on. At a seed every mode gets the same "
                          "images. Mean [95% CI] over seeds; the ordering's differences are paired by seed.")]
        body += [page.paragraph(o.sentence()) for o in orderings(runs)]
        body += [page.paragraph(c.sentence()) for c in control_contrasts(runs)]
        agg = agg.assign(_order=agg["mode"].astype(str).map(
            {m: i for i, m in enumerate(mode_order(sorted(agg["mode"].astype(str).unique())))}))
        agg = agg.sort_values(["experiment", "source_base", "n_train", "trigger_rate", "_order"])

        def ci(metric: str) -> list[str]:
            return [fmt_ci(a, b, c) for a, b, c in zip(agg[f"{metric}_mean"], agg[f"{metric}_low"],
                                                        agg[f"{metric}_high"], strict=True)]

        table = {"block": agg["experiment"].astype(str), "source": agg["source_base"].astype(str),
                 "N": agg["n_train"].astype(str),
                 "p": [fmt(p, 2) for p in agg["trigger_rate"]], "mode": agg["mode"].astype(str),
                 "seeds": agg["n_seeds"].astype(int), "attack success": ci("attack_success_rate"),
                 "clean accuracy": ci("clean_accuracy"), "prediction shift": ci("prediction_shift")}
        if agg["targeted_rate_mean"].notna().any():
            table["targeted rate"] = ci("targeted_rate")
        body += page.table(pd.DataFrame(table))
        body += page.figure(trigger_plot(agg), "trigger_transfer", "Trigger transfer plot",
                            "Attack success rate (left) and clean accuracy (right) against the share p of target "
                            "images with the trigger; one line per transfer mode, 95% CI over seeds.")
        return [Section("trigger_transfer", self.title, body)]

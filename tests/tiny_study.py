"""Tiny studies shared by tests (importable as ``tiny_study``)."""

from __future__ import annotations

import copy

TINY_PARAMS = {"pretrain": 600, "train": 1200, "val": 600, "test": 800}

#: The bases of the tiny studies; an experiment plugin's ``example`` block names some of them, and its
#: ``example_bases`` adds those it needs beyond these.
TINY_BASES = {
    "gendered": {"kind": "trained", "attribute": "a"},
    "control-t0": {"kind": "trained", "attribute": "t0"},
    "scratch": {"kind": "scratch"},
}


def _base_study(name: str, bases: dict) -> dict:
    return {
        "name": name,
        "dataset": {"name": "synthetic", "resolution": 16, "params": dict(TINY_PARAMS)},
        "model": {"arch": "small_resnet"},
        "train": {"lr": [0.05], "weight_decay": [0.0005], "max_epochs": 2, "patience": 1},
        "base_training": {"epochs": 1},
        "bases": copy.deepcopy(bases),
        "evaluation": {"threshold": "val", "test_size": 200},
    }


def tiny_study_dict(**overrides) -> dict:
    """A study small enough to run in a few seconds (16×16 images, 2-epoch trainings): inheritance, a sweep and
    salience (22 runs)."""
    study = _base_study("tiny", {k: TINY_BASES[k] for k in ("gendered", "control-t0", "scratch")})
    study["experiments"] = [
        {"name": "inheritance", "kind": "inheritance", "tasks": ["t3"],
         "bases": ["gendered", "control-t0", "scratch"], "levels": ["natural", 0.8], "n_train": 32,
         "seeds": [0, 1]},
        {"name": "sweep", "kind": "correlation_sweep", "tasks": ["t3"], "bases": ["gendered"],
         "interventions": ["collect", "reweight"], "levels": [0.5, 0.8], "n_train": 32, "seeds": [0, 1],
         "test": 0.8},
        {"name": "salience", "kind": "salience", "tasks": ["t0"], "n_train": 32, "seeds": [0]},
    ]
    study.update(overrides)
    return study


def kind_study_dict(kind: str) -> dict:
    """A tiny study of one block: the ``example`` block of the experiment plugin ``kind``."""
    from biastransfer import plugins  # noqa: F401
    from biastransfer.experiments.base import EXPERIMENTS, ExampleData

    plugin = EXPERIMENTS.get(kind)
    example = copy.deepcopy(plugin.example)
    used = example.get("bases") or ["scratch"]
    extra = issubclass(plugin, ExampleData)
    bases = {**TINY_BASES, **(plugin.example_bases if extra else {})}
    study = _base_study(f"tiny-{kind}", {k: v for k, v in bases.items() if k in used})
    if extra and plugin.example_dataset:
        study["dataset"] = copy.deepcopy(plugin.example_dataset)
    study["experiments"] = [{"name": kind, "kind": kind, **example}]
    return study

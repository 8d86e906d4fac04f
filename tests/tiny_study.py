"""A tiny study definition shared by tests (importable as ``tiny_study``)."""

from __future__ import annotations

TINY_PARAMS = {"pretrain": 600, "train": 1200, "val": 600, "test": 800}


def tiny_study_dict(**overrides) -> dict:
    """A study small enough to run in a few seconds (16×16 images, 2-epoch trainings)."""
    study = {
        "name": "tiny",
        "dataset": {"name": "synthetic", "resolution": 16, "params": dict(TINY_PARAMS)},
        "model": {"arch": "small_resnet"},
        "train": {"lr": [0.05], "weight_decay": [0.0005], "max_epochs": 2, "patience": 1},
        "base_training": {"epochs": 1},
        "bases": {"gendered": {"kind": "trained", "attribute": "a"},
                  "control-t0": {"kind": "trained", "attribute": "t0"},
                  "scratch": {"kind": "scratch"}},
        "evaluation": {"threshold": "val", "test_size": 200},
        "experiments": [
            {"name": "inheritance", "kind": "inheritance", "tasks": ["t3"],
             "bases": ["gendered", "control-t0", "scratch"], "levels": ["natural", 0.8], "n_train": 32,
             "seeds": [0, 1]},
            {"name": "sweep", "kind": "correlation_sweep", "tasks": ["t3"], "bases": ["gendered"],
             "interventions": ["collect", "reweight"], "levels": [0.5, 0.8], "n_train": 32, "seeds": [0, 1],
             "test": 0.8},
            {"name": "salience", "kind": "salience", "tasks": ["t0"], "n_train": 32, "seeds": [0]},
        ],
    }
    study.update(overrides)
    return study

"""A tiny underrepresentation study on the tiny fake Fashion-MNIST (``fake_fmnist``, tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path


def underrep_study_dict(root: Path, **block) -> dict:
    """A study of one underrepresentation block on the fake Fashion-MNIST (12×12 images, 2-epoch trainings)."""
    exp = {"name": "ur", "kind": "underrepresentation", "tasks": ["pullover+coat"],
           "bases": ["pretrain-pullover", "pretrain-coat"], "levels": [0.25, 0.5], "n_train": 32,
           "n_val": 16, "seeds": [0, 1], "test": "natural", "options": {"negatives": ["t-shirt", "shirt"]}}
    exp.update(block)
    return {
        "name": "tiny-underrep",
        "dataset": {"name": "fashion-mnist", "root": str(root), "resolution": 12, "params": {"val_share": 0.2}},
        "model": {"arch": "small_resnet"},
        "train": {"lr": [0.05], "weight_decay": [0.0005], "max_epochs": 2, "patience": 1},
        "base_training": {"epochs": 1, "max_examples": 160},
        "bases": {"pretrain-pullover": {"kind": "trained", "attribute": "pullover"},
                  "pretrain-coat": {"kind": "trained", "attribute": "coat"},
                  "scratch": {"kind": "scratch"}},
        "evaluation": {"threshold": "val"},
        "experiments": [exp],
    }

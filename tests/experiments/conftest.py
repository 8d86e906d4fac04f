"""A tiny fake Fashion-MNIST (idx files) and a tiny underrepresentation study on it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_DATA_CONFTEST = Path(__file__).resolve().parents[1] / "data" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_fmnist_idx_helpers", _DATA_CONFTEST)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
write_idx = _helpers.write_idx  # the idx writer of tests/data (reused, not copied)

N_TRAIN_ITEMS, N_TEST_ITEMS = 1000, 200


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST idx files: 1000 train and 200 test items, labels i % 10 (100 / 20 per class).

    The class shifts the mean intensity a little, so that finetuned models learn something.
    """
    root = tmp_path_factory.mktemp("fake-fmnist")
    rng = np.random.default_rng(0)
    for part, n in (("train", N_TRAIN_ITEMS), ("t10k", N_TEST_ITEMS)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        base = rng.integers(0, 120, size=(n, 28, 28))
        images = np.clip(base + 12 * labels[:, None, None], 0, 255).astype(np.uint8)
        write_idx(root / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", labels)
    return root


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

"""The bundled Fashion-MNIST studies parse and expand to the documented grids (no data needed)."""

from __future__ import annotations

from collections import Counter
from importlib import resources

from biastransfer.plan import load_study


def _study(name: str):
    return load_study(resources.files("biastransfer.studies") / name)


def test_fashion_underrep_grid() -> None:
    study = _study("fashion_underrep.yaml")
    specs = study.expand()
    assert len(specs) == 2 * 3 * 2 * 3  # bases × shares × N × seeds
    assert {s.kind for s in specs} == {"underrepresentation"}
    assert {s.task for s in specs} == {"pullover+coat"}
    assert {s.base["attribute"] for s in specs} == {"pullover", "coat"}
    assert all(s.options["negatives"] == ["t-shirt", "shirt", "dress"] for s in specs)


def test_fashion_spurious_grid() -> None:
    study = _study("fashion_spurious.yaml")
    assert study.config.dataset.name == "fashion-mnist-panels" and study.config.dataset.resolution == 32
    specs = study.expand()
    kinds = Counter(s.kind for s in specs)
    assert kinds == {"inheritance": 3 * 2 * 3, "correlation_sweep": 5 * 5}
    assert study.config.bases["gendered"].options() == {"attribute": "second_bag"}
    assert {s.test for s in specs if s.kind == "correlation_sweep"} == {0.8}


def test_fashion_underrep_pairs_grid() -> None:
    """Four pairs in one block, each with its own two Pretrain bases and scratch (not the other pairs' bases)."""
    specs = _study("fashion_underrep_pairs.yaml").expand()
    assert len(specs) == 4 * 3 * 3 * 2 * 3  # pairs × (its 2 Pretrain bases + scratch) × shares × N × seeds
    by_task: dict[str, set[str]] = {}
    for s in specs:
        by_task.setdefault(s.task, set()).add(s.base_name)
    assert by_task == {
        "pullover+coat": {"pretrain-pullover", "pretrain-coat", "scratch"},
        "coat+pullover": {"pretrain-pullover", "pretrain-coat", "scratch"},
        "t-shirt+shirt": {"pretrain-t-shirt", "pretrain-shirt", "scratch"},
        "shirt+t-shirt": {"pretrain-t-shirt", "pretrain-shirt", "scratch"},
    }
    assert all(s.options["negatives"] == ["dress"] for s in specs) and {s.n_train for s in specs} == {128, 1024}

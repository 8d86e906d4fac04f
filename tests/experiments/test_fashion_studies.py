"""The two bundled Fashion-MNIST studies parse and expand to the documented grids (no data needed)."""

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

"""The result store keeps exactly one row per run key and round-trips artifacts."""

from __future__ import annotations

import numpy as np
import pytest

from biastransfer.spec import RunSpec
from biastransfer.store.sqlite import ResultStore


def _spec(**kw) -> RunSpec:
    base = {"experiment": "e", "kind": "inheritance", "dataset": {"name": "synthetic"}, "arch": "small_resnet",
            "base_name": "scratch", "base": {"kind": "scratch"}, "task": "t3", "seed": 0}
    return RunSpec(**{**base, **kw})


def test_key_is_stable_and_sensitive_to_every_field():
    assert _spec().key == _spec().key
    assert _spec(seed=1).key != _spec().key
    assert _spec(level=0.8).key != _spec().key
    assert RunSpec.from_dict(_spec().to_dict()) == _spec()


def test_one_row_per_key_and_artifacts(tmp_path):
    store = ResultStore(tmp_path)
    spec = _spec()
    arrays = {"train_rows": np.arange(5), "test_scores": np.linspace(0, 1, 4, dtype=np.float32)}
    store.add_run(spec.key, spec.to_dict(), {"auc": 0.7}, {"seed": 0}, arrays, 1.0)
    store.add_run(spec.key, spec.to_dict(), {"auc": 0.1}, {"seed": 0}, arrays, 1.0)  # ignored
    assert store.count() == 1 and store.done_keys() == {spec.key}
    assert store.runs()[0]["result"]["auc"] == 0.7
    got = store.artifacts(spec.key)
    assert np.array_equal(got["train_rows"], arrays["train_rows"])
    with pytest.raises(KeyError):
        store.artifacts("missing")
    store.close()


def test_nan_survives_the_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    spec = _spec()
    store.add_run(spec.key, spec.to_dict(), {"fpr_diff": float("nan")}, {})
    assert np.isnan(store.runs()[0]["result"]["fpr_diff"])


def test_open_existing_requires_results(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.db is missing"):
        ResultStore.open_existing(tmp_path / "empty")

"""The finetuning run shared by inheritance, correlation sweeps and finetuning-number curves
(experiments/spurious.py): its threshold calibrated on validation reweighted to the test set's (a, y) cells, and
the columns ``corr_direction``, ``fpr_diff_signed``, ``fpr_diff_abs``, ``test_base_rate`` and
``test_predicted_positive_rate`` (docs/metrics.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from biastransfer.data.synthetic import SyntheticDataset
from biastransfer.driver import run_study
from biastransfer.experiments import spurious
from biastransfer.experiments.spurious import COLUMNS, correlation_direction, prepare_data
from biastransfer.metrics.threshold import cell_proportions, resolve_threshold
from biastransfer.plan import parse_study
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore
from tiny_study import TINY_PARAMS, tiny_study_dict


def test_correlation_direction_counts_and_weights() -> None:
    """d = sign(c − P(a=1)), c = N(a=1,y=1)/N(y=1): c = 3/4 > P(a=1) = 1/2 → +1; mirrored → −1; independent → 0;
    the weights count (here they undo the correlation)."""
    y, a = np.array([1, 1, 1, 1, 0, 0, 0, 0]), np.array([1, 1, 1, 0, 0, 0, 0, 1])
    assert correlation_direction(y, a) == 1
    assert correlation_direction(y, 1 - a) == -1
    assert correlation_direction(y, np.array([1, 1, 0, 0, 1, 1, 0, 0])) == 0
    assert correlation_direction(y, a, np.array([1, 1, 1, 3, 1, 1, 1, 3]) / 1.5) == 0
    assert correlation_direction(np.ones(4, int), np.array([0, 1, 1, 1])) == 0  # no negatives: c = P(a=1)


def _study(levels: list[Any], threshold: str = "val") -> dict[str, Any]:
    study = tiny_study_dict()
    study["bases"] = {"scratch": {"kind": "scratch"}}
    study["evaluation"]["threshold"] = threshold
    study["experiments"] = [{"name": "inheritance", "kind": "inheritance", "tasks": ["t3"], "bases": ["scratch"],
                             "interventions": ["collect", "reweight"], "levels": levels, "n_train": 64,
                             "seeds": [0], "test": "natural"}]
    return study


def test_correlation_direction_of_the_drawn_finetuning_sets(cache_dir: Path) -> None:
    """Sets drawn at level 0.8 are correlated towards a=1 (d = +1), at 0.2 towards a=0 (d = −1), at 0.5
    neither (d = 0), for ``collect`` (counts) and ``reweight`` (weights) alike."""
    data = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    y, a = data.table.column("t3"), data.table.column("a")
    found = {}
    for spec in parse_study(_study([0.2, 0.5, 0.8])).expand():
        drawn = prepare_data(spec, data, level=spec.level, seed=spec.seed)
        rows = drawn.train_rows
        found[spec.intervention, spec.level] = correlation_direction(y[rows], a[rows], drawn.train_weights)
    assert found == {(iv, level): d for iv in ("collect", "reweight") for level, d in ((0.2, -1), (0.5, 0), (0.8, 1))}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict[str, Any]:
    """Four tiny runs (scratch base, levels 0.2 and 0.8, collect and reweight, the natural test pool, where t3 has
    base rate ≈ 0.5 and level ≈ 0.8), with every calibration call recorded."""
    calls: list[dict[str, Any]] = []

    def recording(policy: Any, **kw: Any) -> float:
        calls.append({"policy": str(policy), **kw})
        return resolve_threshold(policy, **kw)

    out = tmp_path_factory.mktemp("spurious-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spurious, "resolve_threshold", recording)
        run_study(parse_study(_study([0.2, 0.8])), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    store = ResultStore.open_existing(out)
    frame, artifacts = runs_frame(store), {k: store.artifacts(k) for k in store.done_keys()}
    store.close()
    data = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    return {"frame": frame, "artifacts": artifacts, "calls": calls, "data": data}


def test_the_run_calibrates_on_validation_reweighted_to_the_test_cells(tiny_runs: dict[str, Any]) -> None:
    data, calls = tiny_runs["data"], tiny_runs["calls"]
    y, a = data.table.column("t3"), data.table.column("a")
    assert len(calls) == 4
    test_rows = next(iter(tiny_runs["artifacts"].values()))["test_rows"]
    for call in calls:
        assert call["policy"] == "val"
        assert call["target_cells"] == cell_proportions(y[test_rows], a[test_rows])
        assert call["target_cells"] != cell_proportions(call["val_labels"], call["val_groups"])
        assert len(call["val_groups"]) == len(call["val_labels"])
    frame = tiny_runs["frame"]
    assert set(frame["threshold_policy"]) == {"val"}


def test_the_new_columns_of_a_tiny_run(tiny_runs: dict[str, Any]) -> None:
    frame, artifacts, data = tiny_runs["frame"], tiny_runs["artifacts"], tiny_runs["data"]
    y = data.table.column("t3")
    assert frame["corr_direction"].tolist() == [-1 if level == 0.2 else 1 for level in frame["level"]]
    np.testing.assert_allclose(frame["fpr_diff_signed"], frame["corr_direction"] * frame["fpr_diff"])
    np.testing.assert_allclose(frame["fpr_diff_abs"], frame["fpr_diff"].abs())
    for row in frame.itertuples():
        stored = artifacts[row.run_key]
        assert row.test_base_rate == pytest.approx(y[stored["test_rows"]].mean())
        assert row.test_predicted_positive_rate == pytest.approx(np.mean(stored["test_scores"] >= row.threshold),
                                                                 abs=1e-6)
    kinds = {c.name: (c.dtype, c.role) for c in COLUMNS}
    assert kinds["fpr_diff_signed"] == kinds["fpr_diff_abs"] == ("float", "metric")
    assert kinds["corr_direction"] == ("int", "outcome")
    assert kinds["test_base_rate"] == kinds["test_predicted_positive_rate"] == ("float", "outcome")


def test_runs_stored_before_the_columns_read_as_missing() -> None:
    """A run of 0.1 (no ``calibration`` in its spec, none of the new results): NaN, except ``fpr_diff_abs``, which
    needs only ``fpr_diff``; its policy reads as ``val-unweighted``, so it never groups with the reweighted
    ``val``."""
    old = {"key": "k", "spec": {"threshold": "val", "level": 0.8, "test": "natural"},
           "result": {"fpr_diff": -0.25, "threshold_policy": "val"}}
    values = {c.name: c.value(old) for c in COLUMNS}
    assert all(math.isnan(values[name]) for name in ("fpr_diff_signed", "corr_direction", "test_base_rate",
                                                       "test_predicted_positive_rate"))
    assert values["fpr_diff_abs"] == 0.25
    assert values["threshold_policy"] == "val-unweighted"
    assert {c.name: c.value({**old, "spec": {**old["spec"], "calibration": "reweighted"}})
            for c in COLUMNS}["threshold_policy"] == "val"
    fixed = {**old, "spec": {**old["spec"], "threshold": 0.5}, "result": {"threshold_policy": "0.5"}}
    assert {c.name: c.value(fixed) for c in COLUMNS}["threshold_policy"] == "0.5"


def test_a_one_point_grid_trains_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 × 1 lr × weight-decay grid has nothing to choose: the search returns its point without training (and
    the plan counts no search trainings); a 2-point grid trains each point."""
    from biastransfer.experiments import finetuning
    from biastransfer.plan import planned_trainings

    calls: list[float] = []

    class Fit:
        best_val_loss, epochs = 0.5, 1

    def fake_finetune(spec, inputs, data, *, lr, weight_decay, seed, labels=None, num_outputs=1, classes=False):
        calls.append(lr)
        return None, Fit()

    monkeypatch.setattr(finetuning, "finetune", fake_finetune)
    study = parse_study(tiny_study_dict())
    spec = study.expand()[0]
    found = finetuning.grid_search(spec, None, lambda seed: None)
    assert calls == [] and found["lr"] == 0.05 and math.isnan(found["val_loss"]) and not found["searched"]
    assert planned_trainings(study)["search_trainings"] == 0
    two = spec.replace(train={**spec.train, "lr": [0.05, 0.01]})
    found = finetuning.grid_search(two, None, lambda seed: None)
    assert calls == [0.05, 0.01] and found["searched"] and len(found["trials"]) == 2

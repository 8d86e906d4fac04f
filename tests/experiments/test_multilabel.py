"""The multi-label experiment (paper §4.2, COCO): one head per object plus the attribute; BiasAmp→ in both
directions and normalised AP per group, checked against the metric functions on the run's own stored scores;
block validation; and its golden report from a real tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from inline_snapshot import snapshot

from biastransfer.config import ConfigError
from biastransfer.data.synthetic import SyntheticDataset
from biastransfer.driver import run_study
from biastransfer.experiments.multilabel import both_values, label_matrix, object_metrics
from biastransfer.metrics.bias_amp import bias_amplification
from biastransfer.metrics.ranking import auc, normalized_average_precision
from biastransfer.plan import parse_study
from biastransfer.store.sqlite import ResultStore
from report_snapshot import page_snapshot
from tiny_study import TINY_PARAMS, kind_study_dict


def test_object_metrics_against_the_metric_functions() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    a = rng.integers(0, 2, 400)
    s = y + 0.8 * a + rng.normal(0, 1, 400)
    got = object_metrics(y, s, a)
    assert got["auc"] == pytest.approx(auc(y, s))
    for g in (0, 1):
        m = a == g
        assert got[f"nap_a{g}"] == pytest.approx(
            normalized_average_precision(y[m], s[m], n_pos_ref=int((y[m] == 0).sum()))
        )
    assert got["nap_gap"] == pytest.approx(got["nap_a1"] - got["nap_a0"])
    no_pos = object_metrics(np.where(a == 1, 0, y), s, a)
    assert math.isnan(no_pos["nap_a1"]) and math.isnan(no_pos["nap_gap"])


def test_normalised_ap_of_a_random_ranking_does_not_depend_on_the_group_base_rate() -> None:
    """Group a=1 has 80% positives, a=0 20%: random scores give nAP ≈ 0.5 in both (plain AP would be ≈ 0.8 and
    ≈ 0.2), so the gap measures the model, not the base rates."""
    rng = np.random.default_rng(1)
    a = np.repeat([0, 1], 20000)
    y = np.where(a == 1, rng.random(a.size) < 0.8, rng.random(a.size) < 0.2).astype(int)
    got = object_metrics(y, rng.random(a.size), a)
    assert got["nap_a0"] == pytest.approx(0.5, abs=0.02) and got["nap_a1"] == pytest.approx(0.5, abs=0.02)


@pytest.fixture(scope="module")
def finished_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("multilabel")
    study = parse_study(kind_study_dict("multilabel"))
    run_study(study, out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True, workers="1")
    return out


@pytest.fixture(scope="module")
def finished(finished_dir: Path):
    store = ResultStore.open_existing(finished_dir)
    runs = store.runs()
    arts = {r["key"]: store.artifacts(r["key"]) for r in runs}
    store.close()
    return runs, arts


def test_a_run_recomputes_from_its_stored_scores(finished, cache_dir: Path) -> None:
    """BiasAmp→ both ways, nAP per group and AUC of every object equal the metric functions applied to the
    run's stored test scores, rows and thresholds (signs from the finetuning labels)."""
    runs, arts = finished
    dataset = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    assert len(runs) == 2 * 2  # bases × seeds
    for run in runs:
        res, art = run["result"], arts[run["key"]]
        objects = run["spec"]["task"].split(",")
        assert objects == ["t0", "t3", "t5"]
        labels = label_matrix(dataset, objects)
        test, train = art["test_rows"], art["train_rows"]
        scores = art["test_scores"].astype(np.float64)
        assert scores.shape == (test.size, len(objects) + 1) and train.size == 64
        a_test = labels[test, -1]
        pred = np.stack([scores[:, k] >= res["objects"][t]["threshold"] for k, t in enumerate(objects)], axis=1)
        # a enters as its two values, A_0 = [a=0] and A_1 = [a=1]
        a_train2 = np.stack([1 - labels[train, -1], labels[train, -1]], axis=1)
        a_test2 = np.stack([1 - a_test, a_test], axis=1)
        a_hat = (scores[:, -1] >= res["threshold_a"]).astype(int)
        t_train, t_test = labels[train, :-1], labels[test, :-1]
        expected_at = bias_amplification(a_train2, t_train, a_test2, t_test, pred.astype(int), "A->T")
        expected_ta = bias_amplification(a_train2, t_train, a_test2, t_test, np.stack([1 - a_hat, a_hat], 1), "T->A")
        assert res["biasamp_at"] == pytest.approx(expected_at, abs=1e-6)
        assert res["biasamp_ta"] == pytest.approx(expected_ta, abs=1e-6)
        for k, t in enumerate(objects):
            y = labels[test, k]
            assert res["objects"][t]["auc"] == pytest.approx(auc(y, scores[:, k]), abs=1e-6)
            for g in (0, 1):
                m = a_test == g
                assert res["objects"][t][f"nap_a{g}"] == pytest.approx(
                    normalized_average_precision(y[m], scores[m, k], n_pos_ref=int((y[m] == 0).sum())), abs=1e-6
                )
        assert res["auc_a"] == pytest.approx(auc(a_test, scores[:, -1]), abs=1e-6)
        assert res["nap_gap_mean"] == pytest.approx(np.mean([res["objects"][t]["nap_gap"] for t in objects]))


def test_the_attribute_enters_biasamp_as_both_of_its_values() -> None:
    assert both_values(np.array([0, 1, 1])).tolist() == [[1, 0], [0, 1], [0, 1]]


def test_block_needs_two_distinct_objects() -> None:
    study = kind_study_dict("multilabel")
    study["experiments"][0]["tasks"] = ["t0"]
    with pytest.raises(ConfigError, match="at least 2 distinct objects"):
        parse_study(study)
    study["experiments"][0]["tasks"] = ["t0", "t1"]
    study["experiments"][0]["options"] = {"x": 1}
    with pytest.raises(ConfigError, match="options"):
        parse_study(study)


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("multilabel").html) == snapshot(
        {
            "summary": {"numbers": ["4", "4", "0", "3", "5", "2", "2", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    [
                        "0",
                        "3",
                        "5",
                        "64",
                        "2",
                        "-0.316",
                        "-0.326",
                        "-0.306",
                        "-0.276",
                        "-1.252",
                        "0.701",
                        "1",
                        "0",
                        "0.033",
                        "-0.196",
                        "0.262",
                        "0.493",
                    ],
                    [
                        "0",
                        "3",
                        "5",
                        "64",
                        "2",
                        "-0.290",
                        "-0.415",
                        "-0.164",
                        "-0.300",
                        "-2.287",
                        "1.687",
                        "1",
                        "0",
                        "-0.008",
                        "-0.131",
                        "0.116",
                        "0.487",
                    ],
                    ["0", "3", "5", "64", "-0.027", "-0.142", "0.088", "2"],
                ],
            },
            "multilabel": {
                "headings": [
                    "Multi-label: bias amplification and normalised AP per group",
                    "Per object (mean over seeds)",
                ],
                "tables": [
                    [
                        [
                            "objects",
                            "base",
                            "N",
                            "seeds",
                            "BiasAmp A→T",
                            "BiasAmp T→A",
                            "nAP gap (a=1 − a=0)",
                            "mean AUC",
                            "AUC of a",
                        ],
                        [
                            "t0,t3,t5",
                            "gendered",
                            "64",
                            "2",
                            "-0.316 [-0.326, -0.306]",
                            "-0.276 [-1.252, 0.701]",
                            "0.033 [-0.196, 0.262]",
                            "0.493 [0.492, 0.493]",
                            "0.519 [0.509, 0.530]",
                        ],
                        [
                            "t0,t3,t5",
                            "scratch",
                            "64",
                            "2",
                            "-0.290 [-0.415, -0.164]",
                            "-0.300 [-2.287, 1.687]",
                            "-0.008 [-0.131, 0.116]",
                            "0.487 [0.073, 0.900]",
                            "0.504 [0.266, 0.742]",
                        ],
                    ],
                    [
                        ["base", "N", "object", "seeds", "auc", "nap_a0", "nap_a1", "nap_gap"],
                        ["gendered", "64", "t0", "2", "0.476", "0.490", "0.531", "0.041"],
                        ["gendered", "64", "t3", "2", "0.508", "0.513", "0.573", "0.060"],
                        ["gendered", "64", "t5", "2", "0.494", "0.493", "0.491", "-0.002"],
                        ["scratch", "64", "t0", "2", "0.421", "0.469", "0.443", "-0.026"],
                        ["scratch", "64", "t3", "2", "0.511", "0.496", "0.494", "-0.002"],
                        ["scratch", "64", "t5", "2", "0.528", "0.481", "0.486", "0.005"],
                    ],
                ],
                "figures": ["plots/multilabel.png"],
                "numbers": [["0", "0.5", "95"]],
            },
            "results": {
                "headings": ["Results per setting", "multilabel"],
                "tables": [
                    [
                        [
                            "task",
                            "base",
                            "base_role",
                            "seeds",
                            "auc_mean",
                            "nap_gap_mean",
                            "biasamp_at",
                            "biasamp_ta",
                            "auc_a",
                        ],
                        [
                            "t0,t3,t5",
                            "gendered",
                            "biased",
                            "2",
                            "0.493 [0.492, 0.493]",
                            "0.033 [-0.196, 0.262]",
                            "-0.316 [-0.326, -0.306]",
                            "-0.276 [-1.252, 0.701]",
                            "0.519 [0.509, 0.530]",
                        ],
                        [
                            "t0,t3,t5",
                            "scratch",
                            "scratch",
                            "2",
                            "0.487 [0.073, 0.900]",
                            "-0.008 [-0.131, 0.116]",
                            "-0.290 [-0.415, -0.164]",
                            "-0.300 [-2.287, 1.687]",
                            "0.504 [0.266, 0.742]",
                        ],
                    ]
                ],
                "figures": [],
                "numbers": [["95"], []],
            },
        }
    )


def test_the_export_has_the_per_object_values_as_json(finished_dir) -> None:
    import biastransfer.plugins  # noqa: F401
    from biastransfer.store.export import runs_frame

    store = ResultStore.open_existing(finished_dir)
    frame = runs_frame(store)
    store.close()
    assert len(frame) == 4 and frame["biasamp_at"].notna().all() and frame["biasamp_ta"].notna().all()
    for text in frame["objects"]:
        parsed = json.loads(text)
        assert set(parsed) == {"t0", "t3", "t5"}
        assert set(parsed["t3"]) == {"auc", "nap_a0", "nap_a1", "nap_gap", "threshold"}


def test_the_biased_base_is_compared_with_each_other_base_paired_by_seed() -> None:
    import pandas as pd

    from biastransfer.experiments.multilabel import biased_vs_others
    from biastransfer.metrics.intervals import t_interval

    values = {"gendered": [0.20, 0.15, 0.18], "control-t0": [0.05, 0.02, 0.04], "scratch": [0.19, 0.16, 0.17]}
    roles = {"gendered": "biased", "control-t0": "control", "scratch": "scratch"}
    runs = pd.DataFrame(
        [
            {"task": "t1,t2", "n_train": 256, "base": b, "base_role": roles[b], "seed": s, "biasamp_at": v}
            for b, vs in values.items()
            for s, v in enumerate(vs)
        ]
    )
    [line] = biased_vs_others(runs)
    d = t_interval(np.array(values["gendered"]) - np.array(values["control-t0"]))
    assert f"− control-t0 {d.mean:.3f} [{d.low:.3f}, {d.high:.3f}] (higher, 3 seeds)" in line
    assert "− scratch 0.003 [" in line and "(not established, 3 seeds)" in line
    assert biased_vs_others(runs[runs["base"] != "gendered"]) == []

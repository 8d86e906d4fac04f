"""The underrepresentation experiment (paper §5): grid, sets, metric definitions, errors, a tiny real run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from inline_snapshot import snapshot

from biastransfer.data.registry import load_dataset
from biastransfer.driver import run_study
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.experiments.underrepresentation import Underrepresentation
from biastransfer.experiments.underrepresentation.sets import (
    base_role,
    parse_task,
    prepare_share_data,
    subgroup_aucs,
)
from biastransfer.metrics.ranking import auc
from biastransfer.plan import parse_study
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore
from conftest import underrep_study_dict
from report_snapshot import page_snapshot


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("underrepresentation").html) == snapshot(
        {
            "summary": {"numbers": ["8", "8", "3", "5", "3", "5", "4", "2", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    [
                        "3",
                        "5",
                        "1",
                        "3",
                        "2",
                        "5",
                        "32",
                        "5",
                        "5",
                        "3",
                        "2",
                        "0.25",
                        "-0.000",
                        "-0.270",
                        "0.269",
                        "0",
                        "0.5",
                        "0.008",
                        "-0.180",
                        "0.197",
                        "0",
                        "3",
                        "5",
                        "0",
                        "2",
                    ],
                    ["3", "5", "32", "5", "0.25", "5", "0.518", "3", "0.518", "-0.000", "-0.270", "0.269"],
                ],
            },
            "underrepresentation": {
                "headings": [
                    "Underrepresentation: AUC on the subcategory T2",
                    "T2 AUC difference (Pretrain-T2 − Pretrain-T1)",
                    "Correction: Pretrain-T1 at share p against Pretrain-T2 at the smallest share",
                    "AUC per base and share",
                ],
                "tables": [
                    [
                        [
                            "task",
                            "N",
                            "share of T2",
                            "AUC on T2, Pretrain-T1",
                            "AUC on T2, Pretrain-T2",
                            "difference",
                            "seeds",
                            "CI above 0",
                        ],
                        ["t3+t5", "32", "0.25", "0.518", "0.518", "0.000 [-0.270, 0.269]", "2", "no"],
                        ["t3+t5", "32", "0.5", "0.512", "0.520", "0.008 [-0.180, 0.197]", "2", "no"],
                    ],
                    [
                        [
                            "task",
                            "N",
                            "reference share",
                            "share p (Pretrain-T1)",
                            "AUC on T2, reference",
                            "AUC on T2, Pretrain-T1",
                            "remaining gap",
                            "reaches",
                        ],
                        ["t3+t5", "32", "0.25", "0.25", "0.518", "0.518", "0.000 [-0.270, 0.269]", "yes"],
                        ["t3+t5", "32", "0.25", "0.5", "0.518", "0.512", "0.006 [-0.216, 0.227]", "no"],
                    ],
                    [
                        ["task", "N", "base", "role", "share of T2", "seeds", "AUC", "AUC on T1", "AUC on T2"],
                        [
                            "t3+t5",
                            "32",
                            "pretrain-t3",
                            "pretrain-t1",
                            "0.25",
                            "2",
                            "0.519 [0.386, 0.651]",
                            "0.520 [0.092, 0.947]",
                            "0.518 [0.342, 0.695]",
                        ],
                        [
                            "t3+t5",
                            "32",
                            "pretrain-t3",
                            "pretrain-t1",
                            "0.5",
                            "2",
                            "0.512 [0.351, 0.673]",
                            "0.513 [0.076, 0.950]",
                            "0.512 [0.384, 0.640]",
                        ],
                        [
                            "t3+t5",
                            "32",
                            "pretrain-t5",
                            "pretrain-t2",
                            "0.25",
                            "2",
                            "0.517 [0.334, 0.700]",
                            "0.517 [0.248, 0.786]",
                            "0.518 [0.424, 0.611]",
                        ],
                        [
                            "t3+t5",
                            "32",
                            "pretrain-t5",
                            "pretrain-t2",
                            "0.5",
                            "2",
                            "0.519 [0.324, 0.714]",
                            "0.517 [0.194, 0.841]",
                            "0.520 [0.460, 0.580]",
                        ],
                    ],
                ],
                "figures": ["plots/underrepresentation.png"],
                "numbers": [["1", "2", "2", "2", "2", "1", "1", "1", "2", "1", "2", "2", "2", "1", "95"]],
            },
            "results": {
                "headings": [
                    "Results per setting",
                    "underrepresentation",
                ],
                "tables": [
                    [
                        ["task", "base", "level", "seeds", "auc", "auc_t1", "auc_t2"],
                        [
                            "t3+t5",
                            "pretrain-t3",
                            "0.25",
                            "2",
                            "0.519 [0.386, 0.651]",
                            "0.520 [0.092, 0.947]",
                            "0.518 [0.342, 0.695]",
                        ],
                        [
                            "t3+t5",
                            "pretrain-t3",
                            "0.5",
                            "2",
                            "0.512 [0.351, 0.673]",
                            "0.513 [0.076, 0.950]",
                            "0.512 [0.384, 0.640]",
                        ],
                        [
                            "t3+t5",
                            "pretrain-t5",
                            "0.25",
                            "2",
                            "0.517 [0.334, 0.700]",
                            "0.517 [0.248, 0.786]",
                            "0.518 [0.424, 0.611]",
                        ],
                        [
                            "t3+t5",
                            "pretrain-t5",
                            "0.5",
                            "2",
                            "0.519 [0.324, 0.714]",
                            "0.517 [0.194, 0.841]",
                            "0.520 [0.460, 0.580]",
                        ],
                    ]
                ],
                "figures": [],
                "numbers": [["95"], ["1", "2", "2", "2", "1", "2"]],
            },
            "hparams": {
                "headings": ["Chosen hyperparameters"],
                "tables": [
                    [
                        ["base", "task", "n_train", "lr", "weight_decay", "val_loss", "trials"],
                        ["pretrain-t3", "t3+t5", "32", "0.05", "0.0005", "—", "0"],
                        ["pretrain-t5", "t3+t5", "32", "0.05", "0.0005", "—", "0"],
                    ]
                ],
                "figures": [],
                "numbers": [],
            },
        }
    )


def test_registered() -> None:
    assert EXPERIMENTS.get("underrepresentation") is Underrepresentation
    assert Underrepresentation.pool_columns == ("y", "subgroup")


def test_expand_grid(tmp_path: Path) -> None:
    study = parse_study(
        underrep_study_dict(
            tmp_path,
            tasks=["pullover+coat", "shirt+t-shirt"],
            bases=["pretrain-pullover", "pretrain-coat", "scratch"],
            levels=[0.1, 0.3, 0.5],
            n_train=[16, 32],
            seeds=[0, 1],
        )
    )
    specs = study.expand()
    # pullover+coat runs its two Pretrain bases and scratch; shirt+t-shirt runs scratch only (the Pretrain bases
    # on pullover and coat belong to the other pair): (3 + 1) bases × shares × N × seeds
    assert len(specs) == (3 + 1) * 3 * 2 * 2
    assert {s.base_name for s in specs if s.task == "shirt+t-shirt"} == {"scratch"}
    assert len({s.key for s in specs}) == len(specs)
    assert {s.intervention for s in specs} == {"subgroup_share"}
    assert {s.level for s in specs} == {0.1, 0.3, 0.5}
    assert {(s.task, s.n_train) for s in specs} == {
        (t, n) for t in ("pullover+coat", "shirt+t-shirt") for n in (16, 32)
    }
    assert all(s.options["negatives"] == ["t-shirt", "shirt"] for s in specs)
    one = next(s for s in specs if s.base_name == "pretrain-coat")
    assert one.base == {"kind": "trained", "attribute": "coat"} and one.base_training


@pytest.mark.parametrize("task", ["pullover", "pullover+", "coat+coat", "a+b+c"])
def test_task_must_be_a_pair(task: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="T1\\+T2"):
        parse_task(task)
    with pytest.raises(ValueError, match=re.escape(f"task {task!r}")):
        parse_study(underrep_study_dict(tmp_path, tasks=[task]))


def test_roles() -> None:
    assert base_role({"kind": "trained", "attribute": "pullover"}, "pullover+coat") == "pretrain-t1"
    assert base_role({"kind": "trained", "attribute": "coat"}, "pullover+coat") == "pretrain-t2"
    assert base_role({"kind": "trained", "attribute": "shirt"}, "pullover+coat") == "other"
    assert base_role({"kind": "scratch"}, "pullover+coat") == "other"


def test_auc_t2_uses_only_t2_positives_and_all_negatives() -> None:
    t1 = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 1])
    t2 = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 1])  # the last example is both: left out of the subgroup AUCs
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1, 0.35, 0.5, 0.4, 0.3, 0.0])
    got = subgroup_aucs(scores, t1, t2)
    neg = slice(6, 9)
    # T2 positives (0.6, 0.1, 0.35) against every negative (0.5, 0.4, 0.3): 3 + 0 + 1 of 9 pairs
    assert got["auc_t2"] == pytest.approx(4 / 9)
    assert got["auc_t2"] == pytest.approx(auc(np.r_[1, 1, 1, 0, 0, 0], np.r_[scores[3:6], scores[neg]]))
    assert got["auc_t1"] == pytest.approx(1.0)
    assert got["auc"] == pytest.approx(auc((t1 | t2), scores))
    # T1 scores do not move the AUC on T2, negatives do
    moved = scores.copy()
    moved[:3] = -5.0
    assert subgroup_aucs(moved, t1, t2)["auc_t2"] == got["auc_t2"]
    moved = scores.copy()
    moved[6] = 0.05
    assert subgroup_aucs(moved, t1, t2)["auc_t2"] > got["auc_t2"]


def _specs(root: Path, **block):
    return parse_study(underrep_study_dict(root, **block)).expand()


def test_sets_have_exact_cells_and_come_from_their_pools(fake_fmnist: Path, cache_dir: Path) -> None:
    spec = next(s for s in _specs(fake_fmnist, levels=[0.25]) if s.seed == 0)
    data = load_dataset(
        "fashion-mnist", root=fake_fmnist, cache_dir=cache_dir / "data", resolution=12, params={"val_share": 0.2}
    )
    sets = prepare_share_data(spec, data, share=0.25, seed=0)
    frame = data.table.frame
    cls = frame["class"].to_numpy()
    split = frame["split"].to_numpy()
    for rows, pool, n in ((sets.train_rows, "train", 32), (sets.val_rows, "val", 16)):
        assert len(rows) == n and set(split[rows]) == {pool}
        counts = pd.Series(cls[rows]).value_counts()
        assert counts.get("coat", 0) == round(0.25 * (n // 2))
        assert counts.get("pullover", 0) == n // 2 - round(0.25 * (n // 2))
        assert counts.get("t-shirt", 0) + counts.get("shirt", 0) == n - n // 2
        assert set(counts.index) <= {"coat", "pullover", "t-shirt", "shirt"}
    test_pool = np.flatnonzero((split == "test") & np.isin(cls, ["coat", "pullover", "t-shirt", "shirt"]))
    np.testing.assert_array_equal(np.sort(sets.test_rows), test_pool)
    assert sets.train_share == pytest.approx(0.25)
    # the test set does not depend on the seed or the share; the finetuning sets are nested across shares
    other = prepare_share_data(spec, data, share=0.5, seed=1)
    np.testing.assert_array_equal(other.test_rows, sets.test_rows)
    half = prepare_share_data(spec, data, share=0.5, seed=0)
    assert len(np.intersect1d(half.train_rows, sets.train_rows)) == 32 - 4  # only T1 ↔ T2 swaps differ


def test_infeasible_share_fails_before_training(fake_fmnist: Path, cache_dir: Path, tmp_path: Path) -> None:
    study = parse_study(underrep_study_dict(fake_fmnist, levels=[1.0], n_train=200))
    with pytest.raises(ValueError) as info:
        run_study(study, tmp_path / "out", device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    msg = str(info.value)
    assert "finetuning set (pool 'train', share 1.0, N=200)" in msg
    assert "T2 positives needs 100 examples but the pool has" in msg
    assert "available:" in msg and "T1 positives:" in msg
    assert not (tmp_path / "out" / "logs").exists()  # nothing trained


def test_unknown_negative_class_is_named(fake_fmnist: Path, cache_dir: Path, tmp_path: Path) -> None:
    study = parse_study(underrep_study_dict(fake_fmnist, options={"negatives": ["jumper"]}))
    with pytest.raises(ValueError, match="unknown attribute 'jumper'"):
        run_study(study, tmp_path / "out", device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)


@pytest.fixture(scope="module")
def finished(fake_fmnist: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ur-run")
    study = parse_study(underrep_study_dict(fake_fmnist))
    summary = run_study(study, out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    assert summary.ran == 2 * 2 * 2
    return out


def test_end_to_end_results_and_artifacts(finished: Path) -> None:
    store = ResultStore.open_existing(finished)
    runs = store.runs()
    assert len(runs) == 8
    for run in runs:
        res, spec = run["result"], run["spec"]
        p = spec["level"]
        assert res["n_train_t2"] == round(p * 16) and res["n_train_t1"] == 16 - round(p * 16)
        assert res["n_train_neg"] == 16 and res["share"] == pytest.approx(p)
        assert res["role"] == ("pretrain-t1" if spec["base_name"] == "pretrain-pullover" else "pretrain-t2")
        arts = store.artifacts(run["key"])
        assert len(arts["train_rows"]) == 32 and len(arts["val_rows"]) == 16
        assert res["n_test"] == len(arts["test_rows"]) == res["n_test_t1"] + res["n_test_t2"] + res["n_test_neg"]
        for k in ("auc", "auc_t1", "auc_t2"):
            assert 0.0 <= res[k] <= 1.0
    frame = runs_frame(store)
    assert set(frame["experiment_kind"]) == {"underrepresentation"}
    assert frame[["auc_t1", "auc_t2", "share"]].notna().all().all()
    assert sorted(frame["level"].unique()) == [0.25, 0.5]
    store.close()


def test_stored_auc_t2_matches_the_stored_scores(finished: Path, fake_fmnist: Path, cache_dir: Path) -> None:
    data = load_dataset(
        "fashion-mnist", root=fake_fmnist, cache_dir=cache_dir / "data", resolution=12, params={"val_share": 0.2}
    )
    cls = data.table.frame["class"].to_numpy()
    store = ResultStore.open_existing(finished)
    for run in store.runs()[:2]:
        arts = store.artifacts(run["key"])
        c = cls[arts["test_rows"]]
        s = arts["test_scores"].astype(float)
        keep = c != "pullover"
        want = auc((c[keep] == "coat").astype(int), s[keep])
        assert run["result"]["auc_t2"] == pytest.approx(want)
        assert not math.isnan(run["result"]["tpr_t2"])
    store.close()


def test_report_has_the_underrepresentation_section(finished: Path) -> None:
    from biastransfer.report.page import build_report

    store = ResultStore.open_existing(finished)
    frame = runs_frame(store)
    store.close()
    path = build_report(frame, finished, title="tiny")
    text = path.read_text()
    assert '<section id="underrepresentation">' in text
    assert "T2 AUC difference (Pretrain-T2 − Pretrain-T1)" in text
    assert (finished / "plots" / "underrepresentation.png").read_bytes()[:4] == b"\x89PNG"
    assert "Underrepresentation pullover+coat (T1 = pullover, T2 = coat), N=32" in text


def test_test_at_a_share_is_a_fixed_set_of_test_size(fake_fmnist: Path, cache_dir: Path) -> None:
    raw = underrep_study_dict(fake_fmnist, test=0.25)
    raw["evaluation"] = {"threshold": "val", "test_size": 40}
    specs = parse_study(raw).expand()
    data = load_dataset(
        "fashion-mnist", root=fake_fmnist, cache_dir=cache_dir / "data", resolution=12, params={"val_share": 0.2}
    )
    cls = data.table.frame["class"].to_numpy()
    sets = [prepare_share_data(s, data, share=s.level, seed=s.seed) for s in specs]
    first = sets[0].test_rows
    counts = pd.Series(cls[first]).value_counts()
    assert len(first) == 40 and counts["coat"] == 5 and counts["pullover"] == 15
    assert counts.get("t-shirt", 0) + counts.get("shirt", 0) == 20
    assert all(np.array_equal(s.test_rows, first) for s in sets)  # same for every seed and share

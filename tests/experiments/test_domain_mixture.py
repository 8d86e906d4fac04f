"""The domain-mixture experiment (paper §5.2, Fig. 6): the multi-class engine (K-way cross-entropy), the two-domain
benchmark, the sets (exact counts, nested across shares, shared across bases), top-k from the run's own stored
scores, the catch-up reading on constructed runs, and its golden report from a real tiny run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from inline_snapshot import snapshot

from biastransfer.config import ConfigError
from biastransfer.data.registry import load_dataset
from biastransfer.data.synthetic_objects import DOMAINS, SHAPES, ObjectsParams, generate
from biastransfer.data.table import LABEL, DataError, ExampleTable
from biastransfer.driver import run_study
from biastransfer.experiments.domain_mixture import draw_sets
from biastransfer.experiments.domain_mixture.analysis import catch_up
from biastransfer.interventions.base import InfeasibleSelectionError
from biastransfer.metrics.multiclass import top_k_accuracy
from biastransfer.models.bases import BaseContext
from biastransfer.plan import parse_study
from biastransfer.store.sqlite import ResultStore
from biastransfer.train.engine import Split, make_split, weighted_cross_entropy, weighted_loss
from biastransfer.train.pretrain import train_attribute_base
from report_snapshot import page_snapshot
from tiny_study import kind_study_dict

EXAMPLE = kind_study_dict("domain_mixture")


# ------------------------------------------------------------------------------------------ the engine
def test_weighted_cross_entropy_is_the_mean_of_weighted_negative_log_softmax() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=gen)
    y = torch.tensor([0, 3, 1, 2, 2, 0, 1])
    w = torch.rand(7, generator=gen)
    by_hand = -(w * torch.log_softmax(logits, 1)[torch.arange(7), y]).mean()
    assert float(weighted_cross_entropy(logits, y, w.reshape(-1, 1))) == pytest.approx(float(by_hand), rel=1e-6)
    assert float(weighted_loss(logits, y, None)) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-6)
    # float targets keep binary cross-entropy on each logit
    t = torch.zeros(7, 4)
    assert float(weighted_loss(logits, t, None)) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, t)), rel=1e-6
    )


def test_class_index_splits_keep_int64_targets_and_refuse_unknown_classes() -> None:
    images = torch.zeros(5, 3, 4, 4, dtype=torch.uint8)
    split = make_split(images, np.arange(3), np.array([2, 0, 1]), classes=True)
    assert split.targets.dtype == torch.int64 and split.targets.tolist() == [2, 0, 1]
    assert make_split(images, np.arange(3), np.array([1, 0, 1])).targets.shape == (3, 1)  # binary stays (n, 1)
    with pytest.raises(ValueError, match=">= 0"):
        Split(images[:2], torch.tensor([0, -1]))


def test_a_base_trained_on_the_class_label_has_one_logit_per_class(tmp_path: Path) -> None:
    data = load_dataset(
        "synthetic-objects",
        cache_dir=tmp_path / "data",
        resolution=16,
        params={"classes": 5, "pretrain": 60, "train": 20, "val": 10, "test": 10},
    )
    config = {"lr": 0.05, "weight_decay": 0.0, "batch_size": 32, "epochs": 1, "seed": 0}
    model, info = train_attribute_base(
        data,
        arch="small_resnet",
        attribute=LABEL,
        config=config,
        cache_dir=tmp_path / "cache",
        device=torch.device("cpu"),
    )
    assert model.head.out_features == 5
    assert info["pool"]["split"] == "pretrain" and info["pool"]["n_examples"] == 60
    assert 0.0 <= info["val_accuracy"] <= 1.0
    binary, _ = train_attribute_base(
        data,
        arch="small_resnet",
        attribute="diverse",
        config=config,
        cache_dir=tmp_path / "cache",
        device=torch.device("cpu"),
    )
    assert binary.head.out_features == 1
    assert BaseContext  # the context type the workspace builds bases with (import kept for the reader)


def test_a_table_with_classes_checks_its_label_column() -> None:
    frame = pd.DataFrame({"split": ["train"] * 3, "a": [0, 1, 0], LABEL: [0, 2, 1]})
    table = ExampleTable(frame=frame, sensitive="a", group_names=("x", "y"), tasks=(), classes=("p", "q", "r"))
    assert table.is_multiclass(LABEL) and not table.is_multiclass("a") and LABEL in table.attributes
    with pytest.raises(DataError, match="outside"):
        ExampleTable(frame=frame, sensitive="a", group_names=("x", "y"), tasks=(), classes=("p", "q"))


# -------------------------------------------------------------------------------------- the benchmark
def test_the_benchmark_balances_classes_in_every_pool_and_domain_and_is_deterministic() -> None:
    params = ObjectsParams(resolution=16, classes=4, pretrain=40, pretrain_diverse=20, train=24, val=8, test=12)
    frame, images = generate(params)
    counts = frame.groupby(["split", "domain"]).size().to_dict()
    assert counts == {
        ("pretrain", "uniform"): 40,
        ("pretrain_diverse", "diverse"): 20,
        ("train", "uniform"): 24,
        ("train", "diverse"): 24,
        ("val", "uniform"): 8,
        ("val", "diverse"): 8,
        ("test", "uniform"): 12,
        ("test", "diverse"): 12,
    }
    for _, rows in frame.groupby(["split", "domain"]):
        per_class = np.bincount(rows[LABEL], minlength=4)
        assert per_class.max() - per_class.min() <= 1
    assert (frame["diverse"] == (frame["domain"] == "diverse")).all()
    for k, name in enumerate(list(SHAPES)[:4]):
        assert (frame[name] == (frame[LABEL] == k)).all()
    again_frame, again = generate(params)
    assert again_frame.equals(frame) and np.array_equal(again, images)
    # the domains differ where the docstring says: the diverse backgrounds vary far more
    corners = images[:, :2, :2].reshape(len(images), -1).astype(float)
    spread = {d: corners[(frame["domain"] == d).to_numpy()].std(axis=0).mean() for d in DOMAINS}
    assert spread["diverse"] > 3 * spread["uniform"]
    with pytest.raises(DataError, match="classes"):
        generate(ObjectsParams(classes=len(SHAPES) + 1, pretrain=4, train=4, val=4, test=4))


# ------------------------------------------------------------------------------------------ the sets
@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory):
    return load_dataset(
        "synthetic-objects",
        cache_dir=tmp_path_factory.mktemp("objects"),
        resolution=16,
        params={"classes": 4, "pretrain": 20, "train": 60, "val": 30, "test": 20},
    )


def _specs(shares: list[float], n: int = 40, bases: tuple[str, ...] = ("uniform-pre", "scratch")):
    study = kind_study_dict("domain_mixture")
    study["dataset"]["params"] = {"classes": 4, "pretrain": 20, "train": 60, "val": 30, "test": 20}
    study["bases"]["scratch"] = {"kind": "scratch"}
    study["experiments"][0].update(shares=shares, n_train=n, n_val=20, bases=list(bases), seeds=[0])
    return parse_study(study).expand()


def test_sets_have_exact_domain_counts_nest_across_shares_and_do_not_depend_on_the_base(objects) -> None:
    domain = objects.table.frame["domain"].to_numpy()
    specs = _specs([0.0, 0.25, 0.5, 1.0])
    sets = {(s.base_name, s.level): draw_sets(s, objects, s.seed) for s in specs}
    for (_base, q), drawn in sets.items():
        assert drawn.train_rows.size == 40 and drawn.val_rows.size == 20
        assert int((domain[drawn.train_rows] == "diverse").sum()) == round(q * 40)
        assert int((domain[drawn.val_rows] == "diverse").sum()) == round(q * 20)
        assert set(objects.table.frame["split"].to_numpy()[drawn.train_rows]) == {"train"}
        assert (domain[drawn.test_diverse] == "diverse").all() and (domain[drawn.test_other] == "uniform").all()
        assert drawn.test_diverse.size == drawn.test_other.size == 20
        np.testing.assert_array_equal(drawn.train_rows, sets[("scratch", q)].train_rows)
    diverse_at = {
        q: set(s.train_rows[domain[s.train_rows] == "diverse"]) for (b, q), s in sets.items() if b == "scratch"
    }
    assert diverse_at[0.25] <= diverse_at[0.5] <= diverse_at[1.0]  # more of the diverse domain: a superset


def test_an_infeasible_share_names_the_domain_and_the_counts(objects) -> None:
    (spec, *_) = _specs([1.0], n=80, bases=("scratch",))
    with pytest.raises(InfeasibleSelectionError, match=r"finetuning set.*domain 1.*60"):
        draw_sets(spec, objects, 0)


def test_block_validation_names_the_field() -> None:
    study = kind_study_dict("domain_mixture")
    study["experiments"][0]["shares"] = [0.1, 1.5]
    with pytest.raises(ConfigError, match="share must be in"):
        parse_study(study)
    study["experiments"][0]["shares"] = [0.1]
    study["experiments"][0]["options"] = {"top_k": 0}
    with pytest.raises(ConfigError, match="top_k"):
        parse_study(study)


# ------------------------------------------------------------------------------------------ the reading
def _runs(values: dict[tuple[str, float], list[float]]) -> pd.DataFrame:
    rows = []
    for (base, q), accs in values.items():
        for seed, acc in enumerate(accs):
            rows.append(
                {
                    "base": base,
                    "share": q,
                    "seed": seed,
                    "topk_diverse": acc,
                    "n_train": 128,
                    "top_k": 5,
                    "diverse_domain": "diverse",
                    "base_role": "other",
                }
            )
    return pd.DataFrame(rows)


def test_catch_up_finds_the_first_share_where_the_follower_reaches_the_leader() -> None:
    runs = _runs(
        {
            ("geo", 0.1): [0.50, 0.52, 0.54],
            ("geo", 0.2): [0.60, 0.62, 0.64],
            ("imnet", 0.1): [0.40, 0.41, 0.42],
            ("imnet", 0.2): [0.49, 0.50, 0.51],
            ("imnet", 0.3): [0.55, 0.57, 0.59],
        }
    )
    (found,) = catch_up(runs)
    assert (found.leader, found.follower) == ("geo", "imnet")
    assert found.leader_acc == pytest.approx(0.52) and found.follower_acc == pytest.approx(0.41)
    assert found.reached_share == pytest.approx(0.3) and found.reached_acc == pytest.approx(0.57)
    mean, low, high, k = found.diff  # imnet@0.3 − geo@0.1 by seed: 0.05, 0.05, 0.05
    assert (mean, k) == (pytest.approx(0.05), 3) and low == pytest.approx(0.05) and high == pytest.approx(0.05)
    assert "reaches it at q=0.30" in found.sentence() and "established" in found.sentence()
    never = catch_up(_runs({("geo", 0.1): [0.5, 0.5], ("imnet", 0.1): [0.3, 0.3], ("imnet", 0.5): [0.4, 0.45]}))
    assert never[0].reached_share is None and "does not reach it" in never[0].sentence()
    assert catch_up(_runs({("geo", 0.1): [0.5], ("imnet", 0.1): [0.3]})) == []  # one share: nothing to reach


# ------------------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def finished_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("domain_mixture")
    run_study(parse_study(EXAMPLE), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True, workers="1")
    return out


def test_top_k_recomputes_from_the_stored_scores(finished_dir: Path, cache_dir: Path) -> None:
    store = ResultStore.open_existing(finished_dir)
    runs = store.runs()
    data = load_dataset(
        "synthetic-objects", cache_dir=cache_dir / "data", resolution=16, params=EXAMPLE["dataset"]["params"]
    )
    labels = data.table.frame[LABEL].to_numpy()
    assert len(runs) == 2 * 2 * 2  # bases × shares × seeds
    for run in runs:
        res, art = run["result"], store.artifacts(run["key"])
        for name in ("diverse", "other"):
            rows, scores = art[f"test_rows_{name}"], art[f"test_scores_{name}"].astype(np.float64)
            assert scores.shape == (rows.size, 6)
            assert res[f"topk_{name}"] == pytest.approx(top_k_accuracy(labels[rows], scores, 3))
            assert res[f"top1_{name}"] == pytest.approx(float(np.mean(scores.argmax(1) == labels[rows])))
        share = float(np.mean(data.table.frame["domain"].to_numpy()[art["train_rows"]] == "diverse"))
        assert res["share"] == pytest.approx(share) and not math.isnan(res["topk_diverse"])
    store.close()


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("domain_mixture").html) == snapshot(
        {
            "summary": {"numbers": ["8", "8", "4", "2", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    ["32", "0.09", "0.537", "-3", "0.517"],
                    ["32", "-3", "0.09", "0.537", "0.50", "0.525", "0.09", "0.517", "0.50", "0.525"],
                ],
            },
            "domain_mixture": {
                "headings": ["Domain mixture: accuracy on the diverse domain against its share of the finetuning set"],
                "tables": [
                    [
                        [
                            "base",
                            "N",
                            "q",
                            "seeds",
                            "top-3 on diverse",
                            "top-1 on diverse",
                            "top-3 on the other domain",
                            "top-1 on the other domain",
                        ],
                        [
                            "diverse-pre",
                            "32",
                            "0.09",
                            "2",
                            "0.537 [0.485, 0.590]",
                            "0.158 [0.158, 0.158]",
                            "0.512 [0.460, 0.565]",
                            "0.171 [0.118, 0.224]",
                        ],
                        [
                            "diverse-pre",
                            "32",
                            "0.50",
                            "2",
                            "0.525 [0.313, 0.737]",
                            "0.146 [-0.013, 0.305]",
                            "0.508 [0.508, 0.508]",
                            "0.167 [0.167, 0.167]",
                        ],
                        [
                            "uniform-pre",
                            "32",
                            "0.09",
                            "2",
                            "0.517 [0.305, 0.728]",
                            "0.175 [0.069, 0.281]",
                            "0.529 [0.159, 0.900]",
                            "0.167 [0.167, 0.167]",
                        ],
                        [
                            "uniform-pre",
                            "32",
                            "0.50",
                            "2",
                            "0.525 [0.313, 0.737]",
                            "0.175 [0.069, 0.281]",
                            "0.504 [0.451, 0.557]",
                            "0.167 [0.167, 0.167]",
                        ],
                    ]
                ],
                "figures": ["plots/domain_mixture.png"],
                "numbers": [["95"], ["32", "0.09", "0.537", "-3", "0.517"]],
            },
            "results": {
                "headings": ["Results per setting", "domain_mixture"],
                "tables": [
                    [
                        ["task", "base", "share", "seeds", "topk_diverse", "top1_diverse", "topk_other", "top1_other"],
                        [
                            "label",
                            "diverse-pre",
                            "0.09375",
                            "2",
                            "0.537 [0.485, 0.590]",
                            "0.158 [0.158, 0.158]",
                            "0.512 [0.460, 0.565]",
                            "0.171 [0.118, 0.224]",
                        ],
                        [
                            "label",
                            "diverse-pre",
                            "0.5",
                            "2",
                            "0.525 [0.313, 0.737]",
                            "0.146 [-0.013, 0.305]",
                            "0.508 [0.508, 0.508]",
                            "0.167 [0.167, 0.167]",
                        ],
                        [
                            "label",
                            "uniform-pre",
                            "0.09375",
                            "2",
                            "0.517 [0.305, 0.728]",
                            "0.175 [0.069, 0.281]",
                            "0.529 [0.159, 0.900]",
                            "0.167 [0.167, 0.167]",
                        ],
                        [
                            "label",
                            "uniform-pre",
                            "0.5",
                            "2",
                            "0.525 [0.313, 0.737]",
                            "0.175 [0.069, 0.281]",
                            "0.504 [0.451, 0.557]",
                            "0.167 [0.167, 0.167]",
                        ],
                    ]
                ],
                "figures": [],
                "numbers": [["95"], []],
            },
            "hparams": {
                "headings": ["Chosen hyperparameters"],
                "tables": [
                    [
                        ["base", "task", "n_train", "lr", "weight_decay", "val_loss", "trials"],
                        ["uniform-pre", "label", "32", "0.05", "0.0005", "—", "0"],
                        ["diverse-pre", "label", "32", "0.05", "0.0005", "—", "0"],
                    ]
                ],
                "figures": [],
                "numbers": [],
            },
        }
    )

"""The finetuning-number experiment (paper §4.1, Fig. 3): grid, `full`, the declared control rule, the paired
agreement, its errors, and its golden report from a real tiny run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from inline_snapshot import snapshot

from biastransfer.config import ConfigError
from biastransfer.data.synthetic import SyntheticDataset
from biastransfer.driver import run_study
from biastransfer.experiments.finetune_number import DEFAULT_SIZES, compare, converged_from
from biastransfer.experiments.spurious import correlation_pool, prepare_data
from biastransfer.plan import parse_study
from report_snapshot import page_snapshot
from tiny_study import TINY_PARAMS, kind_study_dict


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("finetune_number").html) == snapshot(
        {
            "summary": {"numbers": ["36", "36", "3", "0", "2", "12", "3", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    [
                        "3",
                        "64",
                        "0",
                        "95",
                        "16",
                        "16",
                        "-0.052",
                        "-0.261",
                        "0.157",
                        "64",
                        "-0.049",
                        "-0.170",
                        "0.073",
                        "-0.170",
                        "-0.429",
                        "0.090",
                    ]
                ],
            },
            "finetune_number": {
                "headings": ["Finetuning number: bias and AUC against N", "Biased vs chosen control, paired by seed"],
                "tables": [
                    [
                        [
                            "task",
                            "N",
                            "control",
                            "|FPR diff| biased",
                            "|FPR diff| control",
                            "difference",
                            "seeds",
                            "agree",
                        ],
                        ["t3", "16", "control-t0", "0.059", "0.111", "-0.052 [-0.261, 0.157]", "3", "yes"],
                        ["t3", "64", "control-t0", "0.051", "0.100", "-0.049 [-0.170, 0.073]", "3", "yes"],
                        ["t3", "full", "control-t0", "0.378", "0.547", "-0.170 [-0.429, 0.090]", "3", "yes"],
                    ]
                ],
                "figures": ["plots/finetune_number.png"],
                "numbers": [["95", "95", "0"]],
            },
            "results": {
                "headings": [
                    "Results per setting",
                    "finetune_number",
                ],
                "tables": [
                    [
                        [
                            "task",
                            "base",
                            "base_role",
                            "N",
                            "n_label",
                            "seeds",
                            "auc",
                            "fpr_diff",
                            "tpr_diff",
                            "eo_diff",
                            "fpr_diff_signed",
                            "fpr_diff_abs",
                        ],
                        [
                            "t3",
                            "control-t0",
                            "control",
                            "16",
                            "16",
                            "3",
                            "0.528 [0.450, 0.605]",
                            "0.052 [-0.254, 0.357]",
                            "0.015 [-0.117, 0.147]",
                            "0.111 [0.049, 0.173]",
                            "0.052 [-0.254, 0.357]",
                            "0.111 [0.049, 0.173]",
                        ],
                        [
                            "t3",
                            "control-t0",
                            "control",
                            "64",
                            "64",
                            "3",
                            "0.507 [0.387, 0.626]",
                            "0.008 [-0.322, 0.338]",
                            "0.062 [-0.052, 0.177]",
                            "0.111 [0.030, 0.193]",
                            "0.008 [-0.322, 0.338]",
                            "0.100 [-0.029, 0.230]",
                        ],
                        [
                            "t3",
                            "control-t0",
                            "control",
                            "1200",
                            "full",
                            "3",
                            "0.674 [0.644, 0.705]",
                            "0.547 [0.503, 0.592]",
                            "0.435 [0.327, 0.543]",
                            "0.547 [0.503, 0.592]",
                            "0.547 [0.503, 0.592]",
                            "0.547 [0.503, 0.592]",
                        ],
                        [
                            "t3",
                            "control-t2",
                            "control",
                            "16",
                            "16",
                            "3",
                            "0.469 [0.421, 0.517]",
                            "-0.036 [-0.171, 0.099]",
                            "0.004 [-0.225, 0.233]",
                            "0.094 [0.077, 0.111]",
                            "-0.036 [-0.171, 0.099]",
                            "0.037 [-0.095, 0.170]",
                        ],
                        [
                            "t3",
                            "control-t2",
                            "control",
                            "64",
                            "64",
                            "3",
                            "0.466 [0.412, 0.521]",
                            "-0.061 [-0.126, 0.004]",
                            "-0.024 [-0.152, 0.103]",
                            "0.068 [0.001, 0.135]",
                            "-0.061 [-0.126, 0.004]",
                            "0.061 [-0.004, 0.126]",
                        ],
                        [
                            "t3",
                            "control-t2",
                            "control",
                            "1200",
                            "full",
                            "3",
                            "0.652 [0.610, 0.693]",
                            "0.462 [0.354, 0.570]",
                            "0.341 [0.254, 0.428]",
                            "0.462 [0.354, 0.570]",
                            "0.462 [0.354, 0.570]",
                            "0.462 [0.354, 0.570]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "biased",
                            "16",
                            "16",
                            "3",
                            "0.478 [0.454, 0.503]",
                            "-0.047 [-0.236, 0.142]",
                            "-0.052 [-0.164, 0.060]",
                            "0.066 [-0.073, 0.206]",
                            "-0.047 [-0.236, 0.142]",
                            "0.059 [-0.097, 0.214]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "biased",
                            "64",
                            "64",
                            "3",
                            "0.481 [0.472, 0.490]",
                            "-0.051 [-0.133, 0.030]",
                            "-0.049 [-0.108, 0.011]",
                            "0.066 [-0.008, 0.140]",
                            "-0.051 [-0.133, 0.030]",
                            "0.051 [-0.030, 0.133]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "biased",
                            "1200",
                            "full",
                            "3",
                            "0.621 [0.509, 0.733]",
                            "0.378 [0.082, 0.674]",
                            "0.274 [-0.010, 0.558]",
                            "0.378 [0.082, 0.674]",
                            "0.378 [0.082, 0.674]",
                            "0.378 [0.082, 0.674]",
                        ],
                        [
                            "t3",
                            "scratch",
                            "scratch",
                            "16",
                            "16",
                            "3",
                            "0.489 [0.456, 0.522]",
                            "-0.011 [-0.081, 0.058]",
                            "0.001 [-0.141, 0.144]",
                            "0.044 [-0.005, 0.093]",
                            "-0.011 [-0.081, 0.058]",
                            "0.018 [-0.039, 0.074]",
                        ],
                        [
                            "t3",
                            "scratch",
                            "scratch",
                            "64",
                            "64",
                            "3",
                            "0.489 [0.453, 0.524]",
                            "-0.073 [-0.178, 0.032]",
                            "0.022 [-0.216, 0.260]",
                            "0.090 [0.029, 0.150]",
                            "-0.073 [-0.178, 0.032]",
                            "0.073 [-0.032, 0.178]",
                        ],
                        [
                            "t3",
                            "scratch",
                            "scratch",
                            "1200",
                            "full",
                            "3",
                            "0.647 [0.549, 0.746]",
                            "0.460 [0.237, 0.683]",
                            "0.365 [0.189, 0.541]",
                            "0.460 [0.237, 0.683]",
                            "0.460 [0.237, 0.683]",
                            "0.460 [0.237, 0.683]",
                        ],
                    ]
                ],
                "figures": [],
                "numbers": [["95"], ["16"]],
            },
            "hparams": {
                "headings": ["Chosen hyperparameters"],
                "tables": [
                    [
                        ["base", "task", "n_train", "lr", "weight_decay", "val_loss", "trials"],
                        ["gendered", "t3", "16", "0.05", "0.0005", "—", "0"],
                        ["gendered", "t3", "64", "0.05", "0.0005", "—", "0"],
                        ["gendered", "t3", "full", "0.05", "0.0005", "—", "0"],
                        ["control-t0", "t3", "16", "0.05", "0.0005", "—", "0"],
                        ["control-t0", "t3", "64", "0.05", "0.0005", "—", "0"],
                        ["control-t0", "t3", "full", "0.05", "0.0005", "—", "0"],
                        ["control-t2", "t3", "16", "0.05", "0.0005", "—", "0"],
                        ["control-t2", "t3", "64", "0.05", "0.0005", "—", "0"],
                        ["control-t2", "t3", "full", "0.05", "0.0005", "—", "0"],
                        ["scratch", "t3", "16", "0.05", "0.0005", "—", "0"],
                        ["scratch", "t3", "64", "0.05", "0.0005", "—", "0"],
                        ["scratch", "t3", "full", "0.05", "0.0005", "—", "0"],
                    ]
                ],
                "figures": [],
                "numbers": [],
            },
        }
    )


def _study(**block) -> dict:
    study = kind_study_dict("finetune_number")
    study["experiments"][0].update(block)
    return study


def test_default_grid_is_the_papers_and_full_is_the_whole_pool(cache_dir: Path) -> None:
    assert DEFAULT_SIZES == [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, "full"]
    study = _study()
    del study["experiments"][0]["n_train"], study["experiments"][0]["options"]
    specs = parse_study(study).expand()
    assert {s.n_train for s in specs} == set(DEFAULT_SIZES)
    assert {s.intervention for s in specs} == {"natural"} and {s.test for s in specs} == {"natural"}
    full = next(s for s in parse_study(_study()).expand() if s.n_train == "full")
    data = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    sets = prepare_data(full, data, level="natural", seed=0)
    pool, _ = correlation_pool(data, "train", "t3")
    assert np.array_equal(np.sort(sets.train_rows), np.sort(pool))


def test_control_rule_must_name_a_swept_size() -> None:
    with pytest.raises(ConfigError, match=r"options.control_at 1024 must be one of n_train \(16, 64, full\)"):
        parse_study(_study(options={}))


def test_a_size_beyond_the_pool_fails_before_training(tmp_path: Path, cache_dir: Path) -> None:
    study = parse_study(_study(n_train=[16, 64, 4096]))
    with pytest.raises(ValueError, match=r"train set of N=4096: the pool 'train' has 1200 examples .* 'full'"):
        run_study(study, tmp_path / "out", device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    assert not (tmp_path / "out" / "logs").exists()


def _runs(fpr: dict[tuple[str, str], list[float]], auc: dict[tuple[str, str], float]) -> pd.DataFrame:
    """Rows of a finetuning-number study: ``fpr[(base, N label)]`` per seed, ``auc[(base, N label)]``."""
    roles = {"g": "biased", "c1": "control", "c2": "control", "s": "scratch"}
    size = {"16": 16, "64": 64, "full": 1200}
    rows = []
    for (base, label), values in fpr.items():
        for seed, v in enumerate(values):
            rows.append(
                {
                    "experiment": "fn",
                    "task": "t",
                    "base": base,
                    "base_role": roles[base],
                    "seed": seed,
                    "n_train": size[label],
                    "n_label": label,
                    "control_at": 64,
                    "fpr_diff": v,
                    "auc": auc.get((base, label), 0.7) + 0.001 * seed,
                }
            )
    return pd.DataFrame(rows)


def test_compare_pairs_by_seed_with_the_control_of_highest_auc_at_control_at() -> None:
    fpr = {
        ("g", "16"): [0.50, 0.60, 0.70],
        ("c1", "16"): [0.10, 0.12, 0.14],
        ("c2", "16"): [0.0, 0.0, 0.0],
        ("g", "64"): [0.30, 0.32, 0.31],
        ("c1", "64"): [0.29, 0.33, 0.30],
        ("c2", "64"): [0.0, 0.0, 0.0],
        ("g", "full"): [-0.20, -0.21, -0.19],
        ("c1", "full"): [0.21, 0.19, 0.20],
        ("c2", "full"): [0, 0, 0],
        ("s", "16"): [0.0, 0.0, 0.0],
    }
    auc = {("c1", "64"): 0.80, ("c2", "64"): 0.75, ("c2", "16"): 0.99}  # c2 is best at 16, c1 at control_at=64
    comp = compare(_runs(fpr, auc)).set_index("n_label")
    assert set(comp["control"]) == {"c1"} and set(comp["biased"]) == {"g"}
    d16 = np.array([0.40, 0.48, 0.56])
    half = 4.302652729749464 * d16.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert comp.loc["16", "diff_mean"] == pytest.approx(0.48)
    assert comp.loc["16", "diff_low"] == pytest.approx(0.48 - half)
    assert not comp.loc["16", "agree"]
    assert comp.loc["64", "agree"] and comp.loc["full", "agree"]  # |−0.2| vs |0.2|: magnitudes agree
    assert comp.loc["full", "biased_abs_fpr"] == pytest.approx(0.2)
    assert converged_from(comp.reset_index()) == "64"
    disagree_last = comp.reset_index().assign(agree=[True, True, False])
    assert converged_from(disagree_last) is None


def test_one_seed_gives_no_agreement_verdict() -> None:
    from biastransfer.experiments.base import Results
    from biastransfer.experiments.finetune_number import FinetuneNumber

    fpr = {(b, n): [0.1] for b in ("g", "c1") for n in ("16", "64")}
    text = FinetuneNumber().reading(Results(_runs(fpr, {})))
    assert len(text) == 1 and "one seed only: no interval, so agreement is not established" in text[0]

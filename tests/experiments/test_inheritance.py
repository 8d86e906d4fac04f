"""The inheritance experiment: its golden report, and base roles declared or derived from data (never names)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from inline_snapshot import snapshot

from biastransfer.driver import run_study
from biastransfer.experiments.base import Results
from biastransfer.experiments.inheritance import Inheritance, analysis
from biastransfer.plan import parse_study
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore
from report_snapshot import page_snapshot
from tiny_study import tiny_study_dict


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("inheritance").html) == snapshot(
        {
            "summary": {"numbers": ["12", "12", "3", "0", "6", "2", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    ["0", "1", "2", "3"],
                    ["0", "0", "1"],
                    [
                        "3",
                        "2",
                        "0",
                        "-0.150",
                        "-0.911",
                        "0.610",
                        "2",
                        "-0.081",
                        "-0.390",
                        "0.229",
                        "0.070",
                        "-0.382",
                        "0.521",
                        "-0.042",
                        "-0.744",
                        "0.659",
                    ],
                    ["0.8", "0", "1", "2", "3"],
                    ["0.8", "0", "0", "1"],
                    [
                        "3",
                        "0.8",
                        "2",
                        "0",
                        "-0.204",
                        "-1.231",
                        "0.823",
                        "2",
                        "-0.108",
                        "-0.521",
                        "0.304",
                        "0.096",
                        "-0.519",
                        "0.710",
                        "-0.102",
                        "-1.238",
                        "1.033",
                    ],
                    ["1", "3", "0", "3", "0", "3", "0.8", "0"],
                ],
            },
            "inheritance": {
                "headings": ["Inherited bias: biased vs control bases"],
                "tables": [],
                "figures": ["plots/inheritance.png"],
                "numbers": [],
            },
            "regression": {
                "headings": [
                    "Mixed-effects regression of inherited bias",
                    "Dependent variable: ratio b / k (the paper's)",
                    "Dependent variable: difference b − k",
                ],
                "tables": [],
                "figures": [],
                "numbers": [
                    ["1", "0", "1", "1", "1", "−1", "0", "0", "0", "5", "0", "1", "1", "0.5", "95"],
                    ["1", "3", "0", "3", "0", "3", "0.8", "0"],
                    ["1", "3"],
                ],
            },
            "results": {
                "headings": [
                    "Results per setting",
                    "inheritance",
                ],
                "tables": [
                    [
                        [
                            "task",
                            "base",
                            "base_role",
                            "level",
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
                            "natural (0.77)",
                            "2",
                            "0.530 [0.529, 0.530]",
                            "0.070 [-0.382, 0.521]",
                            "0.087 [-0.036, 0.210]",
                            "0.101 [0.046, 0.155]",
                            "0.070 [-0.382, 0.521]",
                            "0.070 [-0.382, 0.521]",
                        ],
                        [
                            "t3",
                            "control-t0",
                            "control",
                            "0.8",
                            "2",
                            "0.534 [0.531, 0.536]",
                            "0.096 [-0.519, 0.710]",
                            "0.069 [0.040, 0.099]",
                            "0.105 [-0.382, 0.593]",
                            "0.096 [-0.519, 0.710]",
                            "0.096 [-0.519, 0.710]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "biased",
                            "natural (0.77)",
                            "2",
                            "0.473 [0.411, 0.536]",
                            "-0.081 [-0.390, 0.229]",
                            "-0.034 [-0.424, 0.356]",
                            "0.085 [-0.169, 0.340]",
                            "-0.081 [-0.390, 0.229]",
                            "0.081 [-0.229, 0.390]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "biased",
                            "0.8",
                            "2",
                            "0.476 [0.406, 0.545]",
                            "-0.108 [-0.521, 0.304]",
                            "-0.042 [-0.648, 0.565]",
                            "0.115 [-0.212, 0.442]",
                            "-0.108 [-0.521, 0.304]",
                            "0.108 [-0.304, 0.521]",
                        ],
                        [
                            "t3",
                            "scratch",
                            "scratch",
                            "natural (0.77)",
                            "2",
                            "0.482 [0.464, 0.500]",
                            "-0.039 [-0.431, 0.354]",
                            "-0.063 [-0.154, 0.028]",
                            "0.070 [0.065, 0.074]",
                            "-0.039 [-0.431, 0.354]",
                            "0.039 [-0.354, 0.431]",
                        ],
                        [
                            "t3",
                            "scratch",
                            "scratch",
                            "0.8",
                            "2",
                            "0.484 [0.475, 0.493]",
                            "-0.006 [-0.729, 0.717]",
                            "-0.048 [-0.188, 0.092]",
                            "0.057 [-0.019, 0.133]",
                            "-0.006 [-0.729, 0.717]",
                            "0.057 [-0.019, 0.133]",
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
                        ["gendered", "t3", "32", "0.05", "0.0005", "—", "0"],
                        ["control-t0", "t3", "32", "0.05", "0.0005", "—", "0"],
                        ["scratch", "t3", "32", "0.05", "0.0005", "—", "0"],
                    ]
                ],
                "figures": [],
                "numbers": [],
            },
        }
    )


@pytest.fixture(scope="module")
def renamed(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path):
    """The tiny inheritance block with bases whose names say the opposite of what they are, and one declared."""
    study = tiny_study_dict(
        bases={
            "biased": {"kind": "trained", "attribute": "t0"},  # a control: trained on another attribute
            "control-gender-free": {"kind": "trained", "attribute": "a"},  # the biased one: trained on a
            "declared": {"kind": "trained", "attribute": "t0", "role": "other"},
            "scratch": {"kind": "scratch"},
        }
    )
    study["experiments"] = [
        {**study["experiments"][0], "bases": ["biased", "control-gender-free", "declared", "scratch"], "levels": [0.8]}
    ]
    out = tmp_path_factory.mktemp("renamed")
    run_study(parse_study(study), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    store = ResultStore.open_existing(out)
    frame, roles = runs_frame(store), store.get_meta("roles")
    store.close()
    return frame, roles


def test_roles_follow_from_data_or_declaration_not_names(renamed) -> None:
    frame, roles = renamed
    assert roles == {"biased": "control", "control-gender-free": "biased", "declared": "other", "scratch": "scratch"}
    assert dict(zip(frame["base"], frame["base_role"], strict=True)) == roles
    found = analysis.findings(frame)
    (entry,) = found.values()
    assert entry["biased_base"] == "control-gender-free"
    assert entry["max_control_base"] == "biased" and entry["n_controls"] == 1  # "declared" is not a control
    text = " ".join(Inheritance().reading(Results(frame)))
    assert "biased (control-gender-free)" in text and "control (biased)" in text


def test_role_keeps_run_keys(tmp_path: Path) -> None:
    """Declaring a role relabels a base for the analysis; its runs (and their keys) stay the same."""
    plain = parse_study(tiny_study_dict()).expand()
    declared = tiny_study_dict()
    declared["bases"]["control-t0"]["role"] = "other"
    assert [s.key for s in parse_study(declared).expand()] == [s.key for s in plain]

"""The correlation sweep: its golden report, and intervention options (start_level) set from the study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from inline_snapshot import snapshot

from biastransfer.data.synthetic import SyntheticDataset
from biastransfer.experiments.spurious import prepare_data
from biastransfer.interventions import subselect_size
from biastransfer.plan import parse_study
from report_snapshot import page_snapshot
from tiny_study import TINY_PARAMS, tiny_study_dict


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("correlation_sweep").html) == snapshot(
        {
            "summary": {"numbers": ["8", "8", "3", "4", "2", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    ["3", "0.01", "0.455", "-0.143", "1.052", "0.8", "0.188"],
                    ["3", "0.01", "0.453", "-0.183", "1.089", "0.8", "0.188"],
                ],
            },
            "tradeoff": {
                "headings": ["Performance–bias tradeoff across finetuning levels"],
                "tables": [],
                "figures": ["plots/tradeoff.png"],
                "numbers": [],
            },
            "results": {
                "headings": [
                    "Results per setting",
                    "correlation_sweep",
                ],
                "tables": [
                    [
                        ["task", "base", "intervention", "level", "seeds", "auc", "fpr_diff", "tpr_diff", "eo_diff"],
                        [
                            "t3",
                            "gendered",
                            "collect",
                            "0.5",
                            "2",
                            "0.439 [-0.005, 0.884]",
                            "-0.250 [-1.044, 0.544]",
                            "-0.044 [-0.758, 0.671]",
                            "0.250 [-0.544, 1.044]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "collect",
                            "0.8",
                            "2",
                            "0.455 [-0.143, 1.052]",
                            "-0.188 [-0.346, -0.029]",
                            "0.056 [-0.023, 0.136]",
                            "0.188 [0.029, 0.346]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "reweight",
                            "0.5",
                            "2",
                            "0.434 [-0.013, 0.880]",
                            "-0.181 [-0.578, 0.216]",
                            "0.012 [-0.146, 0.171]",
                            "0.181 [-0.216, 0.578]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "reweight",
                            "0.8",
                            "2",
                            "0.453 [-0.183, 1.089]",
                            "-0.188 [-0.346, -0.029]",
                            "0.069 [-0.011, 0.148]",
                            "0.188 [0.029, 0.346]",
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
                        ["gendered", "t3", "32", "0.05", "0.0005", "0.693", "1"],
                    ]
                ],
                "figures": [],
                "numbers": [],
            },
        }
    )


def test_start_level_of_subselect_and_reweight_reaches_the_sets(cache_dir: Path) -> None:
    """``{name: subselect, start_level: 0.5}`` starts from a set at level 0.5, not from the pool's natural level
    (0.8 for t3): from 0.5 to 0.2 subselect keeps 2·0.25N/0.8 examples; from 0.8 it keeps 2·0.1N/0.8."""
    study = tiny_study_dict()
    study["experiments"] = [
        {
            "name": "sweep",
            "kind": "correlation_sweep",
            "tasks": ["t3"],
            "bases": ["gendered"],
            "interventions": [
                "subselect",
                {"name": "subselect", "start_level": 0.5},
                {"name": "reweight", "start_level": 0.5},
            ],
            "levels": [0.2],
            "n_train": 128,
            "seeds": [0],
            "test": 0.8,
        }
    ]
    specs = parse_study(study).expand()
    data = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    sets = [prepare_data(s, data, level=s.level, seed=s.seed) for s in specs]
    natural, started, reweighted = sets
    assert len(natural.train_rows) == subselect_size(natural.natural_level, 0.2, 128)
    assert natural.natural_level != 0.5 and len(natural.train_rows) != len(started.train_rows)
    assert len(started.train_rows) == 80  # ⌊(1 − 0.5)·128 / (1 − 0.2)⌋
    assert reweighted.train_weights is not None and len(reweighted.train_rows) == 128
    y, a = data.table.column("t3"), data.table.column("a")
    rows, w = reweighted.train_rows, reweighted.train_weights
    positives = y[rows] == 1
    assert np.isclose(w[positives & (a[rows] == 1)].sum() / w[positives].sum(), 0.2)
    assert np.isclose(((a[rows] == 1) & positives).sum() / positives.sum(), 0.5)  # the start set is at 0.5

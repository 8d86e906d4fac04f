"""Preflight: every distinct setting of a study is checked against the data before anything trains."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from biastransfer.driver import run_study
from biastransfer.plan import parse_study
from tiny_study import tiny_study_dict


def test_an_infeasible_last_block_stops_the_study_before_any_training(tmp_path: Path, cache_dir: Path) -> None:
    """The first blocks are fine; the last asks for more examples than a cell has. Nothing may run: without the
    preflight the first blocks' runs would be trained and stored before the last one fails."""
    study = tiny_study_dict()
    study["experiments"].append({"name": "too-big", "kind": "correlation_sweep", "tasks": ["t3"],
                                 "bases": ["scratch"], "levels": [0.0], "n_train": 1000, "seeds": [0]})
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        run_study(parse_study(study), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    message = str(info.value)
    assert message.startswith("too-big: scratch → t3 collect@0 N=1000 seed=0: finetuning set: collect at level 0")
    assert "needs 500 examples but the pool has" in message and "(available:" in message
    assert sqlite3.connect(out / "results.db").execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert not (out / "logs").exists()  # no job started: no base, no search, no run

"""A folder whose study changed after a partial run (another lr grid) reports and exports only the runs of the
current study's expansion; the others stay in the store, are named, and are never pooled as extra seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import yaml
from typer.testing import CliRunner

from biastransfer.cli import app
from biastransfer.driver import run_study, split_runs
from biastransfer.plan import parse_study
from biastransfer.store.sqlite import ResultStore
from tiny_study import tiny_study_dict


def test_runs_of_an_earlier_version_of_the_study_are_left_out(tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "out"
    first = tiny_study_dict()
    run_study(parse_study(first), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True, max_runs=2)
    changed = tiny_study_dict()
    changed["train"]["lr"] = [0.02]  # another grid: other keys for the same settings and seeds
    run_study(parse_study(changed), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True, max_runs=1)
    store = ResultStore.open_existing(out)
    current, others = split_runs(store)
    store.close()
    assert (len(current), len(others)) == (1, 2)
    assert {r["spec"]["train"]["lr"][0] for r in current} == {0.02}

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(out), "-o", str(tmp_path / "runs.csv")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "2 run(s) in this folder are not part of the current study" in said and "--all" in said
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 1
    result = runner.invoke(app, ["export", str(out), "-o", str(tmp_path / "all.csv"), "--all"])
    assert result.exit_code == 0 and len(pd.read_csv(tmp_path / "all.csv")) == 3

    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    html = (out / "report.html").read_text()
    assert "runs left out" in html and "1 finished run(s)" in html


def test_a_folder_without_a_stored_study_reports_every_run(tmp_path: Path, cache_dir: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    run_study(parse_study(tiny_study_dict()), tmp_path / "out", device=torch.device("cpu"), cache_dir=cache_dir,
              quiet=True, max_runs=1)
    store = ResultStore.open_existing(tmp_path / "out")
    store.set_meta("study", None)
    current, others = split_runs(store)
    store.close()
    assert (len(current), len(others)) == (1, 0)

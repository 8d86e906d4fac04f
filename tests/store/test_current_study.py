"""A folder whose study changed after a partial run (another lr grid) reports and exports only the runs of the
current study's expansion; the others stay in the store, are named, and are never pooled as extra seeds. Which
runs are current is a query of the store (``store.current``): moving a checkpoint file after the study changes
nothing in ``report`` or ``export``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
import yaml
from typer.testing import CliRunner

from biastransfer.cli import app
from biastransfer.driver import run_study, split_runs
from biastransfer.models.architectures import build_model
from biastransfer.plan import parse_study
from biastransfer.store.current import CURRENT_SETTINGS, current_settings
from biastransfer.store.sqlite import ResultStore
from report_snapshot import page_snapshot
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
    store.set_meta(CURRENT_SETTINGS, None)  # a folder from before either was stored
    current, others = split_runs(store)
    store.close()
    assert (len(current), len(others)) == (1, 0)


def _checkpoint_study(path: Path, lr: float) -> dict:
    """A sweep of 2 runs finetuning a backbone read from the checkpoint file ``path``."""
    study = tiny_study_dict(name="ckpt")
    study["bases"] = {"backbone": {"kind": "checkpoint", "format": "torchvision", "path": str(path)}}
    study["train"]["lr"] = [lr]
    study["experiments"] = [{"name": "sweep", "kind": "correlation_sweep", "tasks": ["t3"], "bases": ["backbone"],
                             "interventions": ["collect"], "levels": [0.5, 0.8], "n_train": 32, "seeds": [0],
                             "test": 0.8}]
    return study


def _outputs(out: Path, tmp_path: Path, name: str) -> tuple[str, dict]:
    """What ``export`` (the CSV's text) and ``report`` (the page's snapshot) write of the folder ``out``."""
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(out), "-o", str(tmp_path / f"{name}.csv")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["report", str(out), "-o", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    return (tmp_path / f"{name}.csv").read_text(), page_snapshot((tmp_path / name / "report.html").read_text())


def test_moving_a_checkpoint_file_changes_nothing_in_report_and_export(tmp_path: Path, cache_dir: Path) -> None:
    """The folder holds runs of two versions of a study on a checkpoint base (lr 0.05 then 0.02): after the
    checkpoint file is moved away, the split into current and left-out runs, the export and the report are the
    same, also for a folder written before ``run`` recorded the current settings (the stored study is then
    expanded without checking files)."""
    model = build_model("small_resnet")
    checkpoint = tmp_path / "backbone.pth"
    torch.save({**model.backbone.state_dict(), "fc.weight": torch.randn(1000, model.feature_dim),
                "fc.bias": torch.randn(1000)}, checkpoint)
    out = tmp_path / "out"
    for lr, max_runs in ((0.05, 1), (0.02, None)):
        run_study(parse_study(_checkpoint_study(checkpoint, lr)), out, device=torch.device("cpu"),
                  cache_dir=cache_dir, quiet=True, max_runs=max_runs)
    store = ResultStore.open_existing(out)
    current, others = split_runs(store)
    store.close()
    assert (len(current), len(others)) == (2, 1)
    before = _outputs(out, tmp_path, "before")
    assert len(pd.read_csv(tmp_path / "before.csv")) == 2

    checkpoint.rename(tmp_path / "moved.pth")
    assert _outputs(out, tmp_path, "after") == before

    store = ResultStore.open_existing(out)
    settings = current_settings(store)
    store.set_meta(CURRENT_SETTINGS, None)  # as a folder written before the settings were recorded
    assert current_settings(store) == settings
    store.close()
    assert _outputs(out, tmp_path, "legacy") == before

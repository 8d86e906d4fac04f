"""Inputs that used to be accepted while meaning nothing (or something else) are refused with a named error and
no traceback. One parametrised test per family, so the list only grows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from biastransfer.cli import app
from biastransfer.config import ConfigError, read_yaml
from biastransfer.driver import run_study
from biastransfer.plan import parse_study
from tiny_study import tiny_study_dict

STUDY_FILES = {
    "no experiment blocks": ("name: x\nexperiments: []\n", "at least one experiment block"),
    "a key given twice": ("name: x\nname: y\nexperiments:\n  - {name: a, kind: salience, tasks: [t0]}\n",
                          "the key 'name' is given twice (first at line 1)"),
    "a nested key given twice": ("name: x\nexperiments:\n  - name: a\n    kind: salience\n    tasks: [t0]\n"
                                 "    tasks: [t1]\n", "the key 'tasks' is given twice"),
}


@pytest.mark.parametrize("case", sorted(STUDY_FILES))
def test_study_files_that_mean_nothing_are_refused(case: str, tmp_path: Path) -> None:
    text, message = STUDY_FILES[case]
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data, _ = read_yaml(path)
        parse_study(data, str(path))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and message.split(" (")[0] in said and "Traceback" not in said


@pytest.mark.parametrize("max_runs", [0, -1])
def test_max_runs_must_be_positive(max_runs: int, tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "--quiet",
                                      "--max-runs", str(max_runs)])
    assert result.exit_code != 0 and "max-runs" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out" / "results.db").exists()
    with pytest.raises(ValueError, match="max_runs must be a positive number"):
        run_study(parse_study(tiny_study_dict()), tmp_path / "out2", device=torch.device("cpu"), quiet=True,
                  max_runs=max_runs)

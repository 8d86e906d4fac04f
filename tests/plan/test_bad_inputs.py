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


@pytest.mark.parametrize("threshold", ["nan", "inf", float("nan")])
def test_a_fixed_threshold_must_be_finite(threshold) -> None:
    study = tiny_study_dict()
    study["evaluation"]["threshold"] = threshold
    with pytest.raises(ConfigError, match=r"evaluation\.threshold.*finite number"):
        parse_study(study)


STUDY_PATHS = {
    "a folder": (lambda p: p.mkdir(), "is a folder, not a study file"),
    "not UTF-8": (lambda p: p.write_bytes("name: caf\xe9\n".encode("latin-1")), "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(STUDY_PATHS))
def test_study_paths_that_are_not_study_files(case: str, tmp_path: Path) -> None:
    make, message = STUDY_PATHS[case]
    path = tmp_path / "study.yaml"
    make(path)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and message in said and "Traceback" not in said, said


STORES = {
    "empty (0 bytes)": (b"", "is empty (0 bytes), not a results store"),
    "not sqlite": (b"this is not a database, just text\n" * 200, "is malformed"),
}


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("case", sorted(STORES))
def test_report_and_export_name_a_broken_store_and_leave_it(command: str, case: str, tmp_path: Path) -> None:
    content, message = STORES[case]
    (tmp_path / "results.db").write_bytes(content)
    result = CliRunner().invoke(app, [command, str(tmp_path)])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and message in said and "Traceback" not in said, said
    assert (tmp_path / "results.db").read_bytes() == content  # not re-created or changed


def test_export_to_a_folder_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    run_study(parse_study(tiny_study_dict()), tmp_path / "out", device=torch.device("cpu"), cache_dir=cache_dir,
              quiet=True, max_runs=1)
    (tmp_path / "folder").mkdir()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "out"), "-o", str(tmp_path / "folder")])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "is a folder: give a file to write" in said and "Traceback" not in said


PREDICTIONS = {
    "empty file": ("", "is empty: it has no header and no rows"),
    "header only": ("label,score,group\n", "has no rows (only its header: label, score, group)"),
    "an infinite score": ("label,score,group\n1,0.9,0\n0,inf,1\n1,0.2,1\n0,0.1,0\n",
                          "score column 'score' has 1 infinite value(s) (first at data row 2: inf)"),
}


@pytest.mark.parametrize("case", sorted(PREDICTIONS))
def test_evaluate_names_predictions_files_it_cannot_use(case: str, tmp_path: Path) -> None:
    text, message = PREDICTIONS[case]
    path = tmp_path / "predictions.csv"
    path.write_text(text)
    result = CliRunner().invoke(app, ["evaluate", str(path), "--label", "label", "--score", "score", "--group",
                                      "group", "--threshold", "test"])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and message in said and "Traceback" not in said, said

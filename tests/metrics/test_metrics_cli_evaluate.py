"""The `evaluate` command, registered on a local Typer app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from biastransfer.cli.evaluate import evaluate
from biastransfer.metrics.audit import audit_csv

app = typer.Typer()
app.command("evaluate")(evaluate)


@app.command("version")
def _version() -> None:  # a second command keeps "evaluate" a subcommand, as in the real CLI
    """Placeholder."""


runner = CliRunner()


@pytest.fixture
def predictions(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    n = 120
    y = rng.integers(0, 2, n)
    gender = rng.choice(["Men", "Women"], n)
    split = np.resize(["val", "test"], n)
    frame = pd.DataFrame({"label": y, "prob": y * 0.4 + rng.random(n), "gender": gender, "split": split})
    path = tmp_path / "preds.csv"
    frame.to_csv(path, index=False)
    return path


def _run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["evaluate", *args])


BASE = ("--label", "label", "--score", "prob", "--group", "gender")


def test_human_output(predictions: Path) -> None:
    result = _run(str(predictions), *BASE)
    assert result.exit_code == 0, result.output
    expected = audit_csv(predictions, "label", "prob", "gender", threshold="val")
    lines = {line.split("  ")[0]: line.split()[-1] for line in result.stdout.splitlines() if "  " in line}
    assert lines["FPR diff (Women − Men)"] == f"{expected['fpr_diff']:+.3f}"
    assert lines["TPR diff (Women − Men)"] == f"{expected['tpr_diff']:+.3f}"
    assert lines["EO diff (max of |FPR diff|, |TPR diff|)"] == f"{expected['eo_diff']:.3f}"
    assert lines["AUC"] == f"{expected['auc']:.3f}"
    assert "policy val" in result.stdout
    for name in ("Men", "Women"):
        row = next(line for line in result.stdout.splitlines() if line.startswith(f"│ {name} "))
        group = expected["groups"][name]
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells == [name, str(group["group"]), str(group["count"]), str(group["positives"]),
                         str(group["negatives"]), f"{group['fpr']:.3f}", f"{group['tpr']:.3f}",
                         f"{group['auc']:.3f}"]


def test_json_output(predictions: Path) -> None:
    result = _run(str(predictions), *BASE, "--threshold", "test", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = audit_csv(predictions, "label", "prob", "gender", threshold="test")
    for key in ("auc", "fpr_diff", "tpr_diff", "eo_diff", "threshold"):
        assert data[key] == pytest.approx(expected[key])
    for name in ("Men", "Women"):
        for key in ("fpr", "tpr", "count"):
            assert data["groups"][name][key] == pytest.approx(expected["groups"][name][key])
    assert data["gap_label"] == "Women − Men" and data["threshold_policy"] == "test"


def test_default_threshold_falls_back_to_test_without_split(tmp_path: Path, predictions: Path) -> None:
    no_split = tmp_path / "nosplit.csv"
    pd.read_csv(predictions).drop(columns="split").to_csv(no_split, index=False)
    result = _run(str(no_split), *BASE, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threshold_policy"] == "test"
    assert "calibrating the threshold on the evaluated rows" in result.stderr


def test_missing_file(tmp_path: Path) -> None:
    result = _run(str(tmp_path / "absent.csv"), *BASE)
    assert result.exit_code == 2
    assert "predictions file not found" in result.stderr and "absent.csv" in result.stderr


def test_missing_column(predictions: Path) -> None:
    result = _run(str(predictions), "--label", "label", "--score", "score", "--group", "gender")
    assert result.exit_code == 2
    assert "score column 'score' not found" in result.stderr
    assert "available columns: 'label', 'prob', 'gender', 'split'" in result.stderr


def test_group_without_negatives_is_null_with_warning(predictions: Path) -> None:
    frame = pd.read_csv(predictions)
    frame = frame[~((frame.split == "test") & (frame.gender == "Men") & (frame.label == 0))]
    frame.to_csv(predictions, index=False)
    result = _run(str(predictions), *BASE, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["groups"]["Men"]["fpr"] is None and data["fpr_diff"] is None and data["eo_diff"] is None
    assert data["groups"]["Men"]["tpr"] is not None
    assert any("'Men' (a=0) has no negatives" in w for w in data["warnings"])
    assert "warning: group 'Men' (a=0) has no negatives" in result.stderr
    human = _run(str(predictions), *BASE)
    assert human.exit_code == 0 and "NaN" in human.stdout


def test_bad_threshold_text(predictions: Path) -> None:
    result = _run(str(predictions), *BASE, "--threshold", "median")
    assert result.exit_code == 2
    assert "'val', 'val-unweighted', 'test', or a number" in result.stderr and "'median'" in result.stderr


def test_val_is_reweighted_to_the_evaluated_rows_cells(tmp_path: Path) -> None:
    """Balanced 'val' rows, 'test' rows at base rate 0.2 with group and label correlated: ``--threshold val``
    reweights the val rows to the test rows' (group, label) cells, so the share predicted positive on test is
    close to 0.2; ``val-unweighted`` (0.1's ``val``) targets the val base rate 0.5 and predicts far more."""
    rng = np.random.default_rng(0)
    cells = {"val": {(0, 0): 500, (0, 1): 500, (1, 0): 500, (1, 1): 500},
             "test": {(0, 0): 2500, (0, 1): 250, (1, 0): 1500, (1, 1): 750}}
    parts = []
    for split, counts in cells.items():
        for (g, label), n in counts.items():
            parts.append(pd.DataFrame({"label": label, "group": g, "split": split,
                                       "score": 1.5 * label + 0.8 * g + rng.normal(size=n)}))
    path = tmp_path / "natural.csv"
    pd.concat(parts).to_csv(path, index=False)
    args = (str(path), "--label", "label", "--score", "score", "--group", "group", "--json", "--threshold")
    reweighted = json.loads(_run(*args, "val").stdout)
    unweighted = json.loads(_run(*args, "val-unweighted").stdout)
    assert reweighted["base_rate"] == 0.2 and reweighted["threshold_policy"] == "val"
    assert abs(reweighted["positive_rate"] - 0.2) < 4 * (0.2 * 0.8 / 2000) ** 0.5
    assert unweighted["threshold_policy"] == "val-unweighted" and unweighted["positive_rate"] > 0.3
    assert reweighted["calibration_rows"] == unweighted["calibration_rows"] == 2000

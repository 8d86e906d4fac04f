"""The before/after demo benchmark: its run-by-run comparison of two result stores, and the baseline export."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from biastransfer.store.sqlite import ResultStore

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from demo_baseline import BASELINE_REV, compare_results, export_source  # noqa: E402


def _store(folder: Path, runs: dict[str, dict]) -> Path:
    store = ResultStore(folder)
    for name, result in runs.items():
        spec = {"experiment": "e", "kind": "inheritance", "task": name, "train": {"lr": [0.1]}}
        store.add_run(name, spec, result, {})
    store.close()
    return folder


def test_identical_results_compare_equal_and_seconds_are_ignored(tmp_path):
    a = _store(tmp_path / "a", {"t1": {"auc": 0.9, "fpr_diff": math.nan, "seconds": 3.0}, "t2": {"auc": 0.7}})
    b = _store(tmp_path / "b", {"t1": {"auc": 0.9, "fpr_diff": math.nan, "seconds": 9.0}, "t2": {"auc": 0.7}})
    assert compare_results(a, b) == {"runs_a": 2, "runs_b": 2, "matched": 2, "max_abs_difference": 0.0}


def test_a_different_number_or_a_nan_against_a_number_is_reported(tmp_path):
    a = _store(tmp_path / "a", {"t1": {"auc": 0.9}, "t2": {"eo_diff": 0.1}})
    b = _store(tmp_path / "b", {"t1": {"auc": 0.85}, "t2": {"eo_diff": 0.1}, "t3": {"auc": 0.5}})
    out = compare_results(a, b)
    assert out["matched"] == 2 and out["runs_b"] == 3
    assert out["max_abs_difference"] == pytest.approx(0.05)
    c = _store(tmp_path / "c", {"t1": {"auc": math.nan}})
    assert compare_results(a, c)["max_abs_difference"] == math.inf


def test_specs_match_across_the_later_train_fields(tmp_path):
    old = ResultStore(tmp_path / "old")
    old.add_run("k1", {"experiment": "e", "kind": "k", "train": {"lr": [0.1]}}, {"auc": 0.5}, {})
    old.close()
    new = ResultStore(tmp_path / "new")
    new.add_run("k1", {"experiment": "e", "kind": "k", "train": {"lr": [0.1], "compile": False,
                                                                  "precision": "fp32"}}, {"auc": 0.5}, {})
    new.close()
    assert compare_results(tmp_path / "old", tmp_path / "new")["matched"] == 1


def test_specs_match_across_intervention_options_at_their_default(tmp_path):
    old = _store(tmp_path / "old", {"t1": {"auc": 0.5}, "t2": {"auc": 0.6}})
    new = ResultStore(tmp_path / "new")
    spec = {"experiment": "e", "kind": "inheritance", "train": {"lr": [0.1]}}
    new.add_run("k1", {**spec, "task": "t1", "intervention_options": {}}, {"auc": 0.5}, {})
    new.add_run("k2", {**spec, "task": "t2", "intervention_options": {"start_level": 0.5}}, {"auc": 0.6}, {})
    new.close()
    assert compare_results(old, tmp_path / "new")["matched"] == 1


def test_export_of_the_baseline_revision_imports(tmp_path):
    have = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{BASELINE_REV}^{{commit}}"],
                          capture_output=True)
    if have.returncode != 0:
        pytest.skip(f"{BASELINE_REV} is not in this checkout (shallow clone?)")
    src = export_source(BASELINE_REV, tmp_path / "baseline")
    code = "import biastransfer.plugins, biastransfer; print(biastransfer.__file__)"
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(src))

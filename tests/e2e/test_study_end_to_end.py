"""End to end: the CLI runs a tiny study, reports, exports, resumes after SIGKILL and refuses bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from biastransfer.cli import app
from tiny_study import tiny_study_dict

pytestmark = pytest.mark.slow
runner = CliRunner()


def _write(tmp_path: Path, study: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def _run(args: list[str], cache_dir: Path):
    return runner.invoke(app, [*args, "--cache-dir", str(cache_dir)] if args[0] in ("run", "demo") else args)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, cache_dir):
    folder = tmp_path_factory.mktemp("study")
    study = _write(folder, tiny_study_dict())
    result = _run(["run", str(study), "--out", str(folder / "out"), "--quiet"], cache_dir)
    assert result.exit_code == 0, result.output
    return folder / "out", study


def test_report_and_plots_are_written(finished):
    out, _ = finished
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    for name in ("tradeoff", "inheritance", "salience"):
        png = out / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "logs").glob("*.log"))) > 0


def test_every_run_and_the_report_record_the_pool_each_base_trained_on(finished):
    """Provenance names a trained base's pool: the split, its number of rows and a fingerprint of the rows."""
    out, _ = finished
    conn = sqlite3.connect(out / "results.db")
    pools = {}
    for (prov,) in conn.execute("SELECT provenance FROM runs"):
        for name, info in json.loads(prov)["bases"].items():
            pools.setdefault(name, set()).add(json.dumps(info["pool"], sort_keys=True))
    assert set(pools) == {"gendered", "control-t0"} and all(len(v) == 1 for v in pools.values())
    gendered = json.loads(next(iter(pools["gendered"])))
    assert gendered["split"] == "pretrain" and gendered["n_examples"] == 600  # the whole tiny pretrain pool
    assert re.fullmatch(r"[0-9a-f]{16}", gendered["rows_sha256"])
    html = (out / "report.html").read_text()
    for key, value in (("split", "pretrain"), ("n_examples", "600"), ("rows_sha256", gendered["rows_sha256"])):
        assert re.search(rf"<th>bases\.gendered\.pool\.{key}</th><td[^>]*>{value}</td>", html), key


def test_export_has_one_tidy_row_per_run(finished, tmp_path):
    out, _ = finished
    for fmt in ("csv", "parquet"):
        target = tmp_path / f"runs.{fmt}"
        result = runner.invoke(app, ["export", str(out), "--format", fmt, "-o", str(target)])
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(target) if fmt == "csv" else pd.read_parquet(target)
        # 3 bases × 2 levels × 2 seeds + 2 interventions × 2 levels × 2 seeds + 2 salience runs
        assert len(frame) == 12 + 8 + 2
        for col in ("experiment", "dataset", "task", "base", "intervention", "level", "n_train", "seed", "auc",
                    "fpr_diff", "tpr_diff", "eo_diff", "threshold_policy"):
            assert col in frame.columns
        assert frame["run_key"].is_unique
        assert set(frame["threshold_policy"].dropna()) == {"val"}


def test_rerun_on_a_finished_folder_runs_nothing(finished, cache_dir):
    out, study = finished
    result = _run(["run", str(study), "--out", str(out), "--no-report"], cache_dir)
    assert result.exit_code == 0
    assert "Nothing to run" in result.output


def test_two_workers_train_each_base_and_search_once(tmp_path):
    """From an empty cache with two workers, the trainings the runner counts are exactly the planned ones: no
    run starts before its base and its search are done (else it would train them again)."""
    from biastransfer.plan import parse_study, planned_trainings
    from biastransfer.store.sqlite import ResultStore

    study = tiny_study_dict()
    study["train"]["lr"] = [0.05, 0.01]  # a 2-point grid: each search trains twice (a 1 × 1 grid trains nothing)
    # one trained base: with two workers the base trains alongside the scratch search, never with its own
    del study["bases"]["control-t0"]
    study["experiments"][0]["bases"] = ["gendered", "scratch"]
    path = _write(tmp_path, study)
    result = _run(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--no-report", "--workers", "2"],
                  tmp_path / "fresh-cache")
    assert result.exit_code == 0, result.output
    store = ResultStore.open_existing(tmp_path / "out")
    last = store.get_meta("last_run")
    planned = planned_trainings(parse_study(study))
    assert last["workers"] == 2
    # 8 inheritance + 8 sweep + 2 salience runs, 1 base, 2 trials each for (gendered, t3) and (scratch, t3)
    assert last["trainings"] == planned["total"] == 18 + 1 + 4
    assert store.count() == 18


def test_same_spec_same_numbers(finished, tmp_path, cache_dir):
    out, _ = finished
    study = tiny_study_dict()
    study["experiments"] = study["experiments"][1:2]
    path = _write(tmp_path, study)
    result = _run(["run", str(path), "--out", str(tmp_path / "again"), "--quiet", "--no-report"], cache_dir)
    assert result.exit_code == 0, result.output
    from biastransfer.store.export import runs_frame
    from biastransfer.store.sqlite import ResultStore

    first = runs_frame(ResultStore.open_existing(out)).set_index("run_key")
    second = runs_frame(ResultStore.open_existing(tmp_path / "again")).set_index("run_key")
    common = second.index.intersection(first.index)
    assert len(common) == len(second) == 8
    cols = ["auc", "fpr_diff", "tpr_diff", "threshold"]
    pd.testing.assert_frame_equal(first.loc[common, cols], second.loc[common, cols])


def test_sigkill_midway_then_rerun_gives_exactly_one_row_per_run(tmp_path, cache_dir):
    study = tiny_study_dict()
    study["train"]["max_epochs"] = 4
    study["experiments"] = [b for b in study["experiments"] if b["name"] == "inheritance"]  # 12 runs
    path = _write(tmp_path, study)
    out = tmp_path / "out"
    env = {**os.environ, "BIASTRANSFER_CACHE": str(cache_dir)}
    cmd = [sys.executable, "-m", "biastransfer.cli", "run", str(path), "--out", str(out), "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    db = out / "results.db"
    deadline = time.time() + 240
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                done = sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                done = 0
            if done >= 3:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the study finished before it could be killed; make it longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(db)
    keys = [r[0] for r in conn.execute("SELECT key FROM runs")]
    assert len(keys) == len(set(keys)) == 12
    assert conn.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == 12


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s["experiments"][0].update(tasks=["t9"]), "unknown attribute 't9'"),
        (lambda s: s["experiments"][0].update(n_train=5000), r"cell \(a=., y=.\) needs .* but the pool has"),
        (lambda s: s["experiments"][0].update(levels=[1.2]), r"must be in \[0, 1\]"),
        (lambda s: s["dataset"].update(name="nowhere"), "unknown dataset 'nowhere'"),
        (lambda s: s["bases"]["gendered"].update(attribute="beard"), "unknown attribute 'beard'"),
        (lambda s: s["bases"]["gendered"].update(epochs=3), r"and 'pool'; unknown option\(s\): epochs"),
        (lambda s: s["bases"]["gendered"].update(pool="train"), r"bases.gendered: 'pool: train' is refused"),
        (lambda s: s["bases"]["gendered"].update(pool="faces"), r"gendered: .* 'synthetic' has no 'faces'"),
        (lambda s: s["bases"]["scratch"].update(pool="pretrain"), r"bases.scratch.pool: only a base that is trained"),
        (lambda s: s["experiments"][1].update(interventions=[{"name": "subselect", "start_level": 0.3}], n_train=600),
         r"subselect start set at level 0.3 with n=600: cell"),
    ],
)
def test_bad_input_fails_before_training_with_a_clear_message(tmp_path, cache_dir, mutate, message):
    study = tiny_study_dict()
    mutate(study)
    path = _write(tmp_path, study)
    result = _run(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"], cache_dir)
    assert result.exit_code != 0
    assert re.search(message, " ".join(result.output.split())), result.output
    db = tmp_path / "out" / "results.db"
    if db.exists():
        assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_missing_study_file(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "study file not found" in result.output


def test_help_on_every_command():
    for cmd in ([], ["demo"], ["run"], ["studies"], ["report"], ["export"], ["upgrade"], ["evaluate"], ["list"],
                ["bases"], ["datasets"]):
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0, cmd
        assert "Usage" in result.output


def test_every_run_records_what_decides_its_float_summation_order(finished):
    """Bit-identical reruns need the same torch thread count, CPU instruction set and memory layout
    (docs/demo-results.md): every run records them, and the rule that chose the layout."""
    out, _ = finished
    conn = sqlite3.connect(out / "results.db")
    provs = [json.loads(p) for (p,) in conn.execute("SELECT provenance FROM runs")]
    assert provs and all(isinstance(p["torch_threads"], int) and p["torch_threads"] >= 1 for p in provs)
    assert {p["cpu_capability"] for p in provs} == {torch.backends.cpu.get_cpu_capability()}
    from biastransfer.train.layout import choose

    layout, rule = choose(torch.device("cpu"))
    assert {(p["memory_format"], p["memory_format_by"]) for p in provs} == {(layout, rule)}

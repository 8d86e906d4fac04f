"""Registry-wide: every execution backend runs the same jobs to the same numbers, hands each job its
dependencies' products, and reports a failing job with its log."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from biastransfer.backends import BACKENDS, JobFailedError, Resources
from biastransfer.config import ConfigError
from biastransfer.driver import make_backend, run_study
from biastransfer.experiments.base import TIMING_COLUMNS
from biastransfer.plan import parse_study
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore
from tiny_study import kind_study_dict

METRICS = ["auc", "fpr_diff", "tpr_diff", "eo_diff", "threshold", "lr", "val_loss", "epochs"]


def _run(backend: str, out: Path, cache: Path, workers: int) -> pd.DataFrame:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # processes run single-threaded workers; numbers are bitwise equal per thread count
    try:
        summary = run_study(parse_study(kind_study_dict("correlation_sweep")), out, device=torch.device("cpu"),
                            cache_dir=cache, quiet=True, workers=workers, backend=backend)
    finally:
        torch.set_num_threads(threads)
    assert summary.ran == 8 and summary.trainings == 8 + 1  # runs, one base (a 1 × 1 grid trains no search)
    store = ResultStore.open_existing(out)
    try:
        assert store.get_meta("last_run")["backend"] == backend
        return runs_frame(store).set_index("run_key").sort_index()
    finally:
        store.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    frame = _run("inprocess", tmp_path_factory.mktemp("inprocess"), tmp_path_factory.mktemp("cache-ref"), 1)
    assert frame[METRICS].notna().all().all()  # equal frames must not be equal by NaN == NaN
    return frame


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS.names())
def test_every_backend_gives_the_same_numbers(name: str, reference: pd.DataFrame, tmp_path: Path) -> None:
    """From an empty cache (so the base is trained by the backend under test) with two workers: run by run, every
    exported column but wall time (the metrics listed in METRICS are checked to be defined)."""
    got = _run(name, tmp_path / "out", tmp_path / "cache", 2)
    pd.testing.assert_frame_equal(got[METRICS], reference[METRICS])
    columns = [c for c in reference.columns if c not in {t.name for t in TIMING_COLUMNS}]
    pd.testing.assert_frame_equal(got[columns], reference[columns])
    assert len(list((tmp_path / "out" / "logs").glob("*.log"))) == 8 + 1 + 1


def test_auto_chooses_by_workers(tmp_path: Path) -> None:
    resources = Resources(torch.device("cpu"), tmp_path, tmp_path)
    one = make_backend("auto", resources, 1)
    assert one.registry_name == "inprocess"
    many = make_backend("auto", resources, 2)
    try:
        assert many.registry_name == "processes" and many.workers == 2
    finally:
        many.close()
    with pytest.raises(KeyError, match="unknown backend 'slurm'; allowed: inprocess, processes, ray"):
        make_backend("slurm", resources, 1)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKENDS.names())
def test_a_failing_job_names_the_job_and_its_log(name: str, tmp_path: Path, cache_dir: Path) -> None:
    """A corrupt checkpoint: preflight sees the file, the first job that builds the base reads it, and fails."""
    study = kind_study_dict("correlation_sweep")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint" * 10)
    study["bases"]["gendered"] = {"kind": "checkpoint", "format": "torchvision", "path": str(tmp_path / "corrupt.pt")}
    study["train"]["lr"] = [0.05, 0.01]  # a 2-point grid: the search is the first job to build the base
    with pytest.raises(JobFailedError, match=r"^hyperparameter search for gendered → t3 \(N=32\) failed") as info:
        run_study(parse_study(study), tmp_path / "out", device=torch.device("cpu"), cache_dir=cache_dir,
                  quiet=True, workers=2 if name == "processes" else 1, backend=name)
    message = str(info.value)
    assert "could not read checkpoint" in message and "corrupt.pt" in message and "(log: " in message
    log = Path(re.search(r"\(log: ([^)]+)\)", message).group(1))
    assert log.exists() and "could not read checkpoint" in log.read_text()
    assert ResultStore.open_existing(tmp_path / "out").count() == 0


def test_a_missing_checkpoint_is_an_error_when_the_study_is_loaded(tmp_path: Path) -> None:
    study = kind_study_dict("correlation_sweep")
    study["bases"]["gendered"] = {"kind": "checkpoint", "format": "torchvision", "path": str(tmp_path / "none.pt")}
    with pytest.raises(ConfigError, match=r"bases.gendered: checkpoint file not found: .*none.pt"):
        parse_study(study)

"""One study per output folder at a time (store/lock.py), and a study that fails preflight leaves the folder's
stored study as it was."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from biastransfer.cli import app
from biastransfer.driver import run_study
from biastransfer.plan import parse_study
from biastransfer.store.lock import LOCK_NAME, FolderBusyError, folder_lock
from biastransfer.store.sqlite import ResultStore
from tiny_study import tiny_study_dict


def _hold(folder: Path, text: str = "process 4242 on elsewhere (since then)"):
    """Another holder of the folder's lock (a separate open file: flock locks conflict between them)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_NAME, "a+")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()
    return handle


def test_a_held_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    handle = _hold(tmp_path / "out")
    try:
        with pytest.raises(FolderBusyError, match=r"in use by process 4242 on elsewhere.*--wait"), \
                folder_lock(tmp_path / "out"):
            pass
        study = parse_study(tiny_study_dict())
        with pytest.raises(FolderBusyError, match="in use by process 4242"):
            run_study(study, tmp_path / "out", device=torch.device("cpu"), cache_dir=tmp_path / "cache", quiet=True)
        assert not (tmp_path / "out" / "results.db").exists()
    finally:
        handle.close()
    with folder_lock(tmp_path / "out"):  # released with its holder
        assert f"process {os.getpid()}" in (tmp_path / "out" / LOCK_NAME).read_text()


def test_wait_starts_when_the_holder_lets_go(tmp_path: Path) -> None:
    handle = _hold(tmp_path / "out")
    waited: list[str] = []
    timer = threading.Timer(0.3, handle.close)
    timer.start()
    with folder_lock(tmp_path / "out", wait=True, on_wait=waited.append):
        assert waited == ["process 4242 on elsewhere (since then)"]
    timer.join()


def test_the_command_line_says_who_holds_the_folder_and_exits_non_zero(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    handle = _hold(tmp_path / "out")
    try:
        result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "--quiet",
                                          "--cache-dir", str(tmp_path / "cache")])
    finally:
        handle.close()
    assert result.exit_code != 0
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "in use by process 4242" in said and "--wait" in said and "Traceback" not in said


def test_out_naming_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FolderBusyError, match="is a file, not a folder"), folder_lock(tmp_path / "file"):
        pass


def test_a_study_that_fails_preflight_keeps_the_stored_study(tmp_path: Path, cache_dir: Path) -> None:
    first = tiny_study_dict(name="first")
    run_study(parse_study(first), tmp_path, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True,
              max_runs=1)
    second = tiny_study_dict(name="second")
    second["experiments"][0]["n_train"] = 100_000  # more than the pool holds: preflight refuses it
    with pytest.raises(ValueError, match="pool"):
        run_study(parse_study(second), tmp_path, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    store = ResultStore.open_existing(tmp_path)
    try:
        assert store.get_meta("study")["name"] == "first"
        assert len(store.runs()) == 1
    finally:
        store.close()

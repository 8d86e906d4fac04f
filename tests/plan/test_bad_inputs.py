"""Inputs that used to be accepted while meaning nothing (or something else) are refused with a named error and
no traceback. One parametrised test per family, so the list only grows."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from typer.testing import CliRunner

import biastransfer.data.adapters  # noqa: F401  (registers the adapters)
from biastransfer.cli import app
from biastransfer.config import ConfigError, read_yaml
from biastransfer.data.registry import load_dataset
from biastransfer.data.table import DataError
from biastransfer.driver import run_study
from biastransfer.plan import parse_study
from biastransfer.store.sqlite import ResultStore, StoreLayoutError
from tiny_study import tiny_study_dict

RELEASE_01 = Path(__file__).parents[1] / "store" / "fixtures" / "release-0.1"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A results folder with 2 finished runs of the tiny study (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    run_study(parse_study(tiny_study_dict()), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True,
              max_runs=2)
    return out


def _sqlite_bytes(sql: str) -> bytes:
    """The bytes of an SQLite file made by ``sql`` (a valid database that is not a results store)."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "x.db")
        conn.executescript(sql)
        conn.close()
        return (Path(tmp) / "x.db").read_bytes()

def _tiny(where: list, value: object) -> dict:
    """The tiny study with one field set (``where``: the keys and indices down to it)."""
    study = tiny_study_dict()
    node = study
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return study


STUDY_FILES = {
    "no experiment blocks": ("name: x\nexperiments: []\n", "at least one experiment block"),
    "a key given twice": ("name: x\nname: y\nexperiments:\n  - {name: a, kind: salience, tasks: [t0]}\n",
                          "the key 'name' is given twice (first at line 1)"),
    "a nested key given twice": ("name: x\nexperiments:\n  - name: a\n    kind: salience\n    tasks: [t0]\n"
                                 "    tasks: [t1]\n", "the key 'tasks' is given twice"),
    "a block with no tasks": (yaml.safe_dump(_tiny(["experiments", 0, "tasks"], [])),
                              "experiments.0.tasks: needs at least one task"),
    "an unknown model.transfer": (yaml.safe_dump(_tiny(["model", "transfer"], "bogus")),
                                  "model.transfer: unknown transfer mode 'bogus'; allowed: fixed_feature"),
    "a fractional n_train": (yaml.safe_dump(_tiny(["experiments", 0, "n_train"], 64.5)),
                             "experiments.0.n_train: n_train must be a whole number of examples ≥ 4 or 'full' "
                             "(or a list of them), got 64.5"),
    "a fractional n_train in a list": (yaml.safe_dump(_tiny(["experiments", 0, "n_train"], [32, 64.5])),
                                       "experiments.0.n_train: n_train must be a whole number of examples ≥ 4 or "
                                       "'full' (or a list of them), got 64.5"),
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


RUN_ARGUMENTS = {  # extra arguments of 'run' -> what the error says
    "--workers abc": (["--workers", "abc"], "workers must be 'auto' or a positive integer, got abc"),
    "--workers 0": (["--workers", "0"], "workers must be 'auto' or a positive integer, got 0"),
    "--out naming a file": (["--out", "{tmp}/a-file"], "is a file, not a folder: name a folder for the results"),
}


@pytest.mark.parametrize("case", sorted(RUN_ARGUMENTS))
def test_run_arguments_that_mean_nothing_are_refused(case: str, tmp_path: Path) -> None:
    args, message = RUN_ARGUMENTS[case]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    (tmp_path / "a-file").write_text("")
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "--quiet",
                                      *(a.format(tmp=tmp_path) for a in args)])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and message in said and "Traceback" not in said, said
    assert (tmp_path / "a-file").read_text() == ""
    if (tmp_path / "out" / "results.db").exists():  # --workers is checked after the store is opened: no run in it
        store = ResultStore.open_existing(tmp_path / "out", read_only=True)
        assert store.count() == 0
        store.close()


def test_a_refused_workers_argument_leaves_the_stored_study(finished: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict(name="another")))
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--quiet", "--workers", "abc"])
    assert result.exit_code != 0 and "workers must be" in result.output
    store = ResultStore.open_existing(out, read_only=True)
    assert store.get_meta("study")["name"] == "tiny"
    store.close()


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


def _corrupted_store_bytes() -> bytes:
    """A results store whose last b-tree page (a leaf of ``meta``) has its cell pointers overwritten: it opens,
    and sqlite's ``quick_check`` finds the damage."""
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        for i in range(40):
            store.set_meta(f"filler{i}", "x" * 400)
        store.close()
        data = bytearray((Path(tmp) / "results.db").read_bytes())
    size = int.from_bytes(data[16:18], "big")
    last = len(data) // size - 1
    data[last * size + 8: last * size + 40] = b"\xff" * 32
    return bytes(data)


STORES = {
    "empty (0 bytes)": (b"", "is empty (0 bytes), not a results store"),
    # named malformed by quick_check, or by sqlite itself when a read meets the damage first (seen once, in a
    # full-suite run under load: which of the two comes first is not the point)
    "corrupted pages": (_corrupted_store_bytes(), "is malformed"),
    "not sqlite": (b"this is not a database, just text\n" * 200, "is malformed"),
    "an SQLite file of something else": (_sqlite_bytes("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('a');"),
                                         "is an SQLite file but not a results store of biastransfer (no table runs, "
                                         "artifacts, hparams, meta); it is left as it is"),
    "a release-0.1 folder not upgraded": ((RELEASE_01 / "results.db").read_bytes(),
                                          "was written by biastransfer 0.1: run 'biastransfer upgrade"),
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


def test_export_to_a_folder_is_refused(tmp_path: Path, finished: Path) -> None:
    (tmp_path / "folder").mkdir()
    result = CliRunner().invoke(app, ["export", str(finished), "-o", str(tmp_path / "folder")])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "is a folder: give a file to write" in said and "Traceback" not in said


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _pending_wal(finished: Path, folder: Path) -> None:
    """``folder``: a copy of ``finished`` as a killed ``run`` leaves it: one run deleted in results.db-wal, not yet
    checkpointed into results.db (copied while the writing connection is open)."""
    shutil.copytree(finished, folder)
    conn = sqlite3.connect(folder / "results.db", isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    key = conn.execute("SELECT key FROM runs ORDER BY rowid LIMIT 1").fetchone()[0]
    conn.execute("DELETE FROM artifacts WHERE key = ?", (key,))
    conn.execute("DELETE FROM runs WHERE key = ?", (key,))
    snapshot = folder.with_name(folder.name + "-snapshot")
    snapshot.mkdir()
    for name in ("results.db", "results.db-wal", "results.db-shm"):
        shutil.copy(folder / name, snapshot / name)
    conn.close()
    shutil.rmtree(folder)
    snapshot.rename(folder)
    assert (folder / "results.db-wal").stat().st_size > 0


def _not_writable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``os.access`` says ``folder`` is not writable, as on read-only media (chmod blocks nothing for root)."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == folder and mode & os.W_OK
                        else real_access(path, mode, **kw))


READ_ONLY = {  # how the folder is made -> runs export must find
    "a finished folder": (lambda finished, folder: shutil.copytree(finished, folder), 2),
    "a killed run's folder (pending -wal and -shm)": (_pending_wal, 1),
}


@pytest.mark.parametrize("case", sorted(READ_ONLY))
def test_report_and_export_read_results_on_read_only_media(case: str, finished: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder and its files are made read-only (0o555/0o444). Running as root, chmod blocks nothing, so the
    test also makes ``os.access`` say what read-only media would: the folder is not writable. Nothing in the
    folder changes (no -shm or -wal created), and the runs of a pending write-ahead log are read."""
    make, n_runs = READ_ONLY[case]
    folder = tmp_path / "ro"
    make(finished, folder)
    before = _files(folder)
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    _not_writable(monkeypatch, folder)
    try:
        result = CliRunner().invoke(app, ["export", str(folder), "-o", str(tmp_path / "runs.csv")])
        assert result.exit_code == 0 and f"Wrote {n_runs} runs" in result.output, result.output
        result = CliRunner().invoke(app, ["report", str(folder), "-o", str(tmp_path / "report"), "--quiet"])
        assert result.exit_code == 0 and (tmp_path / "report" / "report.html").is_file(), result.output
        store = ResultStore.open_existing(folder, read_only=True)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.set_meta("x", 1)
        store.close()
        after = _files(folder)
        if "results.db-shm" in before and os.geteuid() == 0:  # root writes sqlite's wal index despite 0o444
            before.pop("results.db-shm"), after.pop("results.db-shm")
        assert after == before  # nothing created, changed or removed
    finally:
        folder.chmod(0o755)


def _can_mount_read_only(folder: Path) -> bool:
    """Whether this process may bind-mount ``folder`` read-only in a mount namespace of its own (root, Linux)."""
    if shutil.which("unshare") is None:
        return False
    command = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder} && ! touch {folder}/x"
    return subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True).returncode == 0


READ_ONLY_MOUNT = """
import sys
from typer.testing import CliRunner
from biastransfer.cli import app
folder, out = sys.argv[1], sys.argv[2]
for args in (["export", folder, "-o", out + "/runs.csv"], ["report", folder, "-q", "-o", out],
             ["export", folder]):
    result = CliRunner().invoke(app, args)
    print(args[0], result.exit_code, " ".join(result.output.split()))
"""


def _in_read_only_mount(folder: Path, script: Path, *args: Path) -> subprocess.CompletedProcess:
    """Run ``script ARGS`` in a mount namespace where ``folder`` is bind-mounted read-only."""
    command = (f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} {folder} && "
               f"{sys.executable} {script} {' '.join(str(a) for a in args)}")
    return subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_report_and_export_on_a_read_only_mount(finished: Path, tmp_path: Path) -> None:
    """Real read-only media: the folder bind-mounted read-only (needs root and mount namespaces; skipped
    otherwise). export and report read it and write elsewhere; writing into it is a named error."""
    folder = tmp_path / "ro"
    shutil.copytree(finished, folder)
    if not _can_mount_read_only(folder):
        pytest.skip("cannot bind-mount a folder read-only here (needs root and unshare)")
    before = _files(folder)
    (tmp_path / "elsewhere").mkdir()
    script = tmp_path / "read.py"
    script.write_text(READ_ONLY_MOUNT)
    done = _in_read_only_mount(folder, script, folder, tmp_path / "elsewhere")
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 3, done.stdout + done.stderr
    assert lines[0].startswith("export 0 Wrote 2 runs"), lines[0]
    assert lines[1].startswith("report 0") and (tmp_path / "elsewhere" / "report.html").is_file(), lines[1]
    assert lines[2].startswith("export 2 error: cannot write") and "Read-only file system" in lines[2], lines[2]
    assert "Traceback" not in done.stdout + done.stderr and _files(folder) == before


def test_a_pending_log_without_its_shm_on_read_only_media_says_what_to_do(finished: Path, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "ro"
    _pending_wal(finished, folder)
    (folder / "results.db-shm").unlink()
    _not_writable(monkeypatch, folder)
    result = CliRunner().invoke(app, ["export", str(folder), "-o", str(tmp_path / "runs.csv")])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in said, said
    assert "its latest runs are in results.db-wal" in said and "copy the folder to writable storage" in said


def test_report_and_export_open_the_store_read_only(finished: Path, tmp_path: Path) -> None:
    """In a writable folder too: a write through the store's connection fails (sqlite ``mode=ro``), and the
    file's journal mode is left as it is (a 0.1 folder is not switched to WAL by reading it)."""
    store = ResultStore.open_existing(finished, read_only=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.set_meta("x", 1)
    store.close()
    folder = tmp_path / "release"
    shutil.copytree(RELEASE_01, folder)
    with pytest.raises(StoreLayoutError, match=r"written by biastransfer 0\.1"):
        ResultStore.open_existing(folder, read_only=True)
    conn = sqlite3.connect(folder / "results.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_report_to_a_file_is_refused(tmp_path: Path, finished: Path) -> None:
    (tmp_path / "report.html").write_text("")
    result = CliRunner().invoke(app, ["report", str(finished), "-o", str(tmp_path / "report.html")])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "is a file: give a folder for report.html" in said and "Traceback" not in said


def _images(root: Path, layout: dict[str, int | str]) -> None:
    """``{folder: n}``: n small PNG images in root/folder; ``{folder: "name.txt"}``: one text file, no image."""
    for folder, what in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        if isinstance(what, str):
            (root / folder / what).write_text("not an image")
            continue
        for i in range(what):
            PIL.Image.fromarray(np.full((6, 6, 3), 30 * i, np.uint8)).save(root / folder / f"{i}.png")


GROUPS = {"cat": 0, "dog": 1, "owl": 1}

IMAGE_FOLDERS_WARNED = {  # layout -> (folders named in the warning, tasks that remain)
    "an empty class folder": ({"cat": 3, "dog": 3, "owl": 0}, "owl/", ("cat", "dog")),
    "a class folder without image files": ({"cat": 3, "dog": 3, "owl": "notes.txt"}, "owl/", ("cat", "dog")),
    "an empty class folder in one split": ({"train/cat": 3, "train/dog": 3, "test/cat": 2, "test/dog": 0},
                                           "test/dog/", ("cat", "dog")),
    "an empty split folder": ({"train/cat": 3, "train/dog": 3, "test/cat": 2, "test/dog": 2, "val": 0}, "val/",
                              ("cat", "dog")),
}


@pytest.mark.parametrize("case", sorted(IMAGE_FOLDERS_WARNED))
def test_imagefolder_names_folders_without_images(case: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    layout, named, tasks = IMAGE_FOLDERS_WARNED[case]
    _images(tmp_path / "root", layout)
    with caplog.at_level(logging.WARNING, logger="biastransfer"):
        data = load_dataset("imagefolder", root=tmp_path / "root", cache_dir=tmp_path / "cache", resolution=4,
                            params={"progress": False, "workers": 1, "group_of_class": GROUPS})
    assert data.table.tasks == tasks
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "have no image files (.jpg .jpeg .png" in warned[0], warned
    assert warned[0].endswith(f"and are left out: {named}"), warned


IMAGE_FOLDERS_REFUSED = {
    "every class folder empty": ({"cat": 0, "dog": 0}, "these folders have none: cat/, dog/"),
    "only one class with images": ({"cat": 3, "dog": 0}, "only the class 'cat' has images under"),
    "one class folder only": ({"cat": 3}, "at least two classes need images"),
    "the root is a file": ({}, "is a file; give the folder that holds the class folders"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_FOLDERS_REFUSED))
def test_imagefolder_refuses_folders_that_leave_nothing_to_learn(case: str, tmp_path: Path) -> None:
    layout, message = IMAGE_FOLDERS_REFUSED[case]
    root = tmp_path / "root"
    _images(root, layout)
    if not layout:
        root.write_text("not a folder")
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset("imagefolder", root=root, cache_dir=tmp_path / "cache", resolution=4,
                     params={"progress": False, "group_of_class": GROUPS})
    result = CliRunner().invoke(app, ["datasets", "check", "imagefolder", "--root", str(root), "--cache-dir",
                                      str(tmp_path / "cache"), "-p", "group_of_class={cat: 0, dog: 1, owl: 1}"])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in said and message.split(";")[-1].strip() in said, said


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


METADATA_CSVS = {  # dataset, its metadata files (name -> text), parameters, what the error says
    "manifest, 0 bytes": ("manifest", {"manifest.csv": ""}, {"sensitive": "female"},
                          "manifest.csv is empty: it has no header and no rows"),
    "manifest, header only": ("manifest", {"manifest.csv": "path,split,female,smiling\n"}, {"sensitive": "female"},
                              "manifest.csv has no rows (only its header: path, split, female, smiling)"),
    "geode, 0 bytes": ("geode", {"index.csv": ""}, {}, "index.csv is empty: it has no header and no rows"),
    "geode, header only": ("geode", {"index.csv": "file_path,object,region\n"}, {},
                           "index.csv has no rows (only its header: file_path, object, region)"),
    "fairface, 0 bytes": ("fairface", {"fairface_label_train.csv": "", "fairface_label_val.csv": ""}, {},
                          "fairface_label_train.csv is empty: it has no header and no rows"),
    "fairface, header only": ("fairface", {"fairface_label_train.csv": "file,age,gender,race\n",
                                           "fairface_label_val.csv": "file,age,gender,race\n"}, {},
                              "fairface_label_train.csv has no rows (only its header: file, age, gender, race)"),
    "dollarstreet, 0 bytes": ("dollarstreet", {"images_v2.csv": ""}, {},
                              "images_v2.csv is empty: it has no header and no rows"),
    "dollarstreet, header only": ("dollarstreet", {"images_v2.csv": "imageRelPath,topics,income\n"}, {},
                                  "images_v2.csv has no rows (only its header: imageRelPath, topics, income)"),
    "imagefolder sensitive_csv, 0 bytes": ("imagefolder", {"cat/0.png": 1, "dog/0.png": 1, "groups.csv": ""},
                                           {"sensitive_csv": "groups.csv"},
                                           "groups.csv is empty: it has no header and no rows"),
}


@pytest.mark.parametrize("case", sorted(METADATA_CSVS))
def test_metadata_csvs_without_rows_are_named(case: str, tmp_path: Path) -> None:
    """A 0-byte or header-only metadata CSV names the file and says it has no rows (it was pandas' "No columns to
    parse from file", naming no file, or "no examples found")."""
    name, files, params, message = METADATA_CSVS[case]
    root = tmp_path / "root"
    for rel, text in files.items():
        if isinstance(text, int):
            _images(root, {str(Path(rel).parent): text})
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(name, root=root, cache_dir=tmp_path / "cache", resolution=4,
                     params={"progress": False, **params})
    cli_params = [x for k, v in params.items() for x in ("-p", f"{k}={v}")]
    result = CliRunner().invoke(app, ["datasets", "check", name, "--root", str(root), "--cache-dir",
                                      str(tmp_path / "cache"), *cli_params])
    said = " ".join(result.output.split())
    tail = message.split(" ", 1)[1]  # the file's name may be cut by the terminal width
    assert result.exit_code != 0 and tail in said and "Traceback" not in said, said


MANIFEST_LABELS_WARNED = {  # a value put in the 'hat' column of one row
    "a word": "maybe",
    "a number other than 0/1": "2",
}


@pytest.mark.parametrize("case", sorted(MANIFEST_LABELS_WARNED))
def test_manifest_label_columns_that_are_not_0_1_are_named(case: str, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Left out of the tasks (it used to be silent), with a warning that names the column."""
    root = tmp_path / "root"
    rows = ["path,split,female,smiling,hat"]
    for i, (split, f, s, h) in enumerate([("train", 1, 1, 0), ("train", 0, 1, 1), ("train", 1, 0, 0),
                                          ("train", 0, 0, 0), ("val", 1, 1, 0), ("test", 0, 1, 1)]):
        _images(root, {"imgs": 0})
        PIL.Image.fromarray(np.full((6, 6, 3), 30 * i, np.uint8)).save(root / "imgs" / f"{i}.png")
        rows.append(f"imgs/{i}.png,{split},{f},{s},{MANIFEST_LABELS_WARNED[case] if i == 2 else h}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="biastransfer"):
        data = load_dataset("manifest", root=root, cache_dir=tmp_path / "cache", resolution=4,
                            params={"progress": False, "workers": 1, "sensitive": "female"})
    assert data.table.tasks == ("smiling",)
    assert "column(s) 'hat' hold values other than 0/1" in caplog.text


# ------------------------------------------------------------------------------ ${NAME} in a study's file paths


def test_path_variables_are_expanded_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``${NAME}`` in dataset.root, datasets.NAME.root and bases.NAME.path comes from the environment; nothing
    else is touched (a description keeps its text)."""
    from biastransfer.config import expand_path_variables

    monkeypatch.setenv("DATA_HOME", "/data")
    monkeypatch.setenv("CKPT", "/ckpt")
    study = {"name": "x", "description": "costs ${DATA_HOME}",
             "dataset": {"name": "celeba", "root": "${DATA_HOME}/celeba"},
             "datasets": {"extra": {"name": "geode", "root": "${DATA_HOME}/geode"}},
             "bases": {"moco": {"kind": "checkpoint", "format": "moco_v3", "path": "${CKPT}/${CKPT}.pth"},
                       "scratch": {"kind": "scratch"}}}
    out = expand_path_variables(study)
    assert out["dataset"]["root"] == "/data/celeba" and out["datasets"]["extra"]["root"] == "/data/geode"
    assert out["bases"]["moco"]["path"] == "/ckpt//ckpt.pth"
    assert out["description"] == "costs ${DATA_HOME}" and study["dataset"]["root"] == "${DATA_HOME}/celeba"


def test_an_unset_path_variable_names_the_field_and_the_variable(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELEBA_ROOT", raising=False)
    path = tmp_path / "study.yaml"
    path.write_text("name: x\ndataset: {name: celeba, root: '${CELEBA_ROOT}'}\n"
                    "experiments:\n  - {name: a, kind: salience, tasks: [Smiling]}\n")
    with pytest.raises(ConfigError, match=r"dataset.root: '\$\{CELEBA_ROOT\}' needs the environment variable\(s\) "
                                          r"CELEBA_ROOT, which is not set"):
        read_yaml(path)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "CELEBA_ROOT" in result.output and "Traceback" not in result.output


def test_the_bundled_celeba_study_says_which_variables_to_set(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CELEBA_ROOT", "BIASTRANSFER_CHECKPOINTS"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["run", "celeba_paper", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2  # an invalid study, as every other
    assert "dataset.root" in result.output and "CELEBA_ROOT" in result.output
    assert "bases.moco.path" in result.output and "BIASTRANSFER_CHECKPOINTS" in result.output


# ------------------------------------------------------------ 'run' on read-only, full or damaged storage (OSError)


def _squeezed(text: str) -> str:
    """``text`` without white space: a long path may be cut by the terminal's width anywhere."""
    return "".join(text.split())


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int) -> None:
    """Creating anything in ``folder`` (the folder lock, a subfolder) raises ``OSError(code)`` naming the path, as on
    read-only media (chmod blocks nothing for root, so the calls are patched)."""
    import biastransfer.store.lock as lock

    real_mkdir = os.mkdir

    def refused(path: object) -> OSError:
        return OSError(code, os.strerror(code), str(path))

    def mkdir(path, *args, **kw):
        if Path(path).parent == folder:
            raise refused(path)
        return real_mkdir(path, *args, **kw)

    def open_(path, mode="r", *args, **kw):
        if Path(path).parent == folder and any(m in mode for m in "wax+"):
            raise refused(path)
        return open(path, mode, *args, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(lock, "open", open_, raising=False)


RUN_FOLDERS = {  # case -> (where --out is, the folder that refuses writes, its errno, what the error says)
    "a read-only output folder": ("ro", "ro", errno.EROFS,
                                  "cannot write {tmp}/ro/.biastransfer.lock: the file system is read-only"),
    "a read-only finished folder": ("finished", "finished", errno.EROFS,
                                    "cannot write {tmp}/finished/.biastransfer.lock: the file system is read-only"),
    "--out under a read-only parent": ("ro/new", "ro", errno.EROFS,
                                       "cannot write {tmp}/ro/new: the file system is read-only"),
    "--out in a folder without write permission": ("locked/new", "locked", errno.EACCES,
                                                   "cannot write {tmp}/locked/new: permission denied"),
}


@pytest.mark.parametrize("case", sorted(RUN_FOLDERS))
def test_run_names_an_output_folder_it_cannot_write(case: str, finished: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    where, refusing, code, message = RUN_FOLDERS[case]
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    shutil.copytree(finished, tmp_path / "finished")
    for name in ("ro", "locked"):
        (tmp_path / name).mkdir()
    before = _files(tmp_path / refusing)
    _refuse_writes(monkeypatch, tmp_path / refusing, code)
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / where), "--quiet"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and _squeezed(message.format(tmp=tmp_path)) in _squeezed(said), said
    assert "Traceback" not in said and "Choose an --out folder" in said
    assert "biastransfer report DIR -o ELSEWHERE" in said
    assert _files(tmp_path / refusing) == before


def test_run_names_an_out_name_too_long_for_the_file_system(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    out = tmp_path / ("a" * 300)
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--quiet"])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in said, said
    assert "the name is too long for the file system" in said and "its longest part has 300 bytes" in said
    assert "Choose a shorter --out" in said and list(tmp_path.iterdir()) == [study]


READ_ONLY_RUN = """
import sys
from typer.testing import CliRunner
from biastransfer.cli import app
study, ro = sys.argv[1], sys.argv[2]
for out in (ro + "/empty", ro + "/finished", ro + "/empty/new"):
    result = CliRunner().invoke(app, ["run", study, "--out", out, "--quiet"])
    print(result.exit_code, " ".join(result.output.split()))
"""


def test_run_on_a_read_only_mount(finished: Path, tmp_path: Path) -> None:
    """Real read-only media (a bind mount; needs root and mount namespaces, skipped otherwise): an empty folder,
    a finished one and a new folder in one are each a named error, and nothing in them changes."""
    ro = tmp_path / "ro"
    (ro / "empty").mkdir(parents=True)
    shutil.copytree(finished, ro / "finished")
    if not _can_mount_read_only(ro):
        pytest.skip("cannot bind-mount a folder read-only here (needs root and unshare)")
    before = _files(ro / "finished")
    study, script = tmp_path / "study.yaml", tmp_path / "run.py"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    script.write_text(READ_ONLY_RUN)
    done = _in_read_only_mount(ro, script, study, ro)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 3, done.stdout + done.stderr
    for line, path in zip(lines, ("empty/.biastransfer.lock", "finished/.biastransfer.lock", "empty/new"),
                          strict=True):
        assert _squeezed(line).startswith(_squeezed(f"1 error: cannot write {ro / path}: the file system is "
                                                   "read-only")), line
    assert "Traceback" not in done.stdout + done.stderr
    assert _files(ro / "finished") == before and not list((ro / "empty").iterdir())


class _FailingConnection:
    """An sqlite connection whose statements that start with ``prefix`` raise ``OperationalError(message)``, as on
    a full disk (the methods of sqlite's own connection cannot be patched)."""

    def __init__(self, conn: sqlite3.Connection, prefix: str, message: str) -> None:
        self._conn, self._prefix, self._message = conn, prefix, message

    def execute(self, sql: str, *args):
        if sql.lstrip().startswith(self._prefix):
            raise sqlite3.OperationalError(self._message)
        return self._conn.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._conn, name)


def _failing_sqlite(monkeypatch: pytest.MonkeyPatch, prefix: str, message: str) -> None:
    real = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: _FailingConnection(real(*a, **kw), prefix, message))


@pytest.mark.parametrize("command", ["run", "report", "export"])
def test_a_full_disk_when_the_store_opens_is_named(command: str, finished: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite says "disk I/O error" when it cannot create results.db-shm on a full disk (seen on a full tmpfs):
    each command says the disk may be full or the file unreadable, naming the file, and changes nothing."""
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    before = {name: data for name, data in _files(out).items() if name != ".biastransfer.lock"}
    _failing_sqlite(monkeypatch, "PRAGMA", "disk I/O error")
    args = {"run": ["run", str(study), "--out", str(out), "--quiet"], "report": ["report", str(out), "--quiet"],
            "export": ["export", str(out), "-o", str(tmp_path / "runs.csv")]}[command]
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in said, said
    assert str(out / "results.db") in _squeezed(said) and "sqlite met a disk I/O error: the disk may be full" in said
    assert "or the file unreadable" in said and "Free some space" in said
    assert {name: data for name, data in _files(out).items() if name != ".biastransfer.lock"} == before


def test_a_disk_that_fills_during_a_run_is_named_and_the_stored_runs_kept(finished: Path, tmp_path: Path,
                                                                       cache_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    _failing_sqlite(monkeypatch, "INSERT OR IGNORE INTO runs", "database or disk is full")
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--quiet", "--max-runs", "1",
                                      "--workers", "1", "--cache-dir", str(cache_dir)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in said, said
    assert _squeezed(f"cannot write to {out / 'results.db'}: the disk is full (sqlite: database or disk is full). "
                     "The runs stored before are intact") in _squeezed(said), said
    assert "rerun the same command, which resumes where it stopped" in said
    monkeypatch.undo()
    store = ResultStore.open_existing(out, read_only=True)
    assert store.count() == 2
    store.close()


@pytest.mark.parametrize("case", ["corrupted pages", "not sqlite", "an SQLite file of something else"])
def test_run_refuses_a_damaged_store_before_writing_to_it(case: str, tmp_path: Path) -> None:
    content, message = STORES[case]
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.db").write_bytes(content)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--quiet"])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and message in said and "Traceback" not in said, said
    assert str(out / "results.db") in _squeezed(said) and "it is left as it is" in said
    assert (out / "results.db").read_bytes() == content and not (out / "results.db-wal").exists()


# ----------------------------------------------------------------------------------- the other weak answers


def test_yaml_merge_keys_are_read_as_yaml_1_1_defines_them(tmp_path: Path) -> None:
    """``<<: *anchor`` merges a mapping (the block's own keys win); it was refused as "not valid YAML"."""
    study = tiny_study_dict()
    inheritance = study["experiments"][0]
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in study.items() if k != "experiments"}) + """experiments:
  - &inheritance
    name: inheritance
    kind: inheritance
    tasks: [t3]
    bases: [gendered, control-t0, scratch]
    levels: [natural, 0.8]
    n_train: 32
    seeds: [0, 1]
  - <<: *inheritance
    name: more-seeds
    seeds: [2, 3]
""")
    data, _ = read_yaml(path)
    assert data["experiments"] == [inheritance, {**inheritance, "name": "more-seeds", "seeds": [2, 3]}]
    assert [block.name for block in parse_study(data, str(path)).blocks] == ["inheritance", "more-seeds"]


def test_recommend_tolerance_must_be_a_finite_number(tmp_path: Path) -> None:
    for value in ("nan", "inf", "1.5"):
        result = CliRunner().invoke(app, ["recommend", "--out", str(tmp_path / "out"), "--task", "t0", "--n", "32",
                                          "--tolerance", value])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "Traceback" not in said, said
        assert f"--tolerance must be a finite number in [0, 1) (the AUC a setting may lose, e.g. 0.01), got {value}" \
            in said, said
    assert not (tmp_path / "out").exists()


def test_a_recommend_block_with_a_nan_tolerance_is_refused_as_not_finite() -> None:
    from tiny_study import kind_study_dict

    study = kind_study_dict("recommend")
    study["experiments"][0].setdefault("options", {})["auc_tolerance"] = float("nan")
    with pytest.raises(ConfigError, match=r"options\.auc_tolerance: Input should be a finite number"):
        parse_study(study)


@pytest.mark.parametrize("base", ["bogus:x", "checkpoint:torchvision", "trained", "scratch:extra"])
def test_recommend_names_the_base_forms_every_base_kind_reads(base: str, tmp_path: Path) -> None:
    """``--base`` is read by each base kind's own shorthand; a form none reads lists every kind's form."""
    result = CliRunner().invoke(app, ["recommend", "--out", str(tmp_path / "out"), "--task", "t0", "--n", "32",
                                      "--base", base])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in said, said
    assert f"--base {base!r}: give checkpoint:FORMAT:PATH, scratch, trained:ATTRIBUTE" in said, said
    assert not (tmp_path / "out").exists()


def _planted_study(trigger: dict) -> dict:
    from tiny_study import kind_study_dict

    study = kind_study_dict("trigger_transfer")
    planted = next(name for name, base in study["bases"].items() if base["kind"] == "planted")
    study["bases"][planted]["trigger"] = trigger
    return study


TRIGGERS_REFUSED = {  # the trigger of a planted base -> what preflight says (images of the study: 16×16 px)
    "an overlay file that is not an image": ({"kind": "overlay", "path": "{tmp}/overlay.png"},
                                             "trigger (overlay): overlay file '{tmp}/overlay.png' is not an image"),
    "a patch larger than the images": ({"kind": "patch", "size": 40},
                                       "trigger (patch): a trigger box of 40×40 px does not fit images of 16×16 px: "
                                       "give a smaller size"),
}


@pytest.mark.parametrize("case", sorted(TRIGGERS_REFUSED))
def test_a_trigger_that_cannot_be_planted_is_refused_in_preflight(case: str, tmp_path: Path, cache_dir: Path) -> None:
    """It passed preflight and failed with a traceback once the base trained."""
    trigger, message = TRIGGERS_REFUSED[case]
    (tmp_path / "overlay.png").write_text("not an image")
    trigger = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in trigger.items()}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_planted_study(trigger)))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1",
                                      "--cache-dir", str(cache_dir)])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in said, said
    assert _squeezed(message.format(tmp=tmp_path)) in _squeezed(said), said
    store = ResultStore.open_existing(tmp_path / "out", read_only=True)
    assert store.count() == 0 and not store.get_meta("study")  # refused before anything trained or was stored
    store.close()


@pytest.mark.parametrize("threshold, side", [("5", "negative (0)"), ("-1", "positive (1)"), ("0.5", None)])
def test_evaluate_warns_of_a_threshold_outside_the_scores(threshold: str, side: str | None, tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_text("label,score,group\n1,0.9,0\n0,0.2,1\n1,0.7,1\n0,0.1,0\n")
    result = CliRunner().invoke(app, ["evaluate", str(path), "--label", "label", "--score", "score", "--group",
                                      "group", "--threshold", threshold])
    said = " ".join(result.output.split())
    assert result.exit_code == 0 and "Traceback" not in said, said
    if side is None:
        assert "warning" not in said
    else:
        assert (f"warning: the threshold {threshold} lies outside the range of the scores [0.1, 0.9] of the 4 "
                f"evaluated rows: every prediction is {side}") in said, said


# --------------------------------------------- what 'run' says of the folder it resumes (messages of the driver)


def _resume(finished: Path, tmp_path: Path, cache_dir: Path, edit=None) -> str:
    """What ``run --max-runs 1 --workers 1`` prints on a copy of ``finished`` (2 of the tiny study's 22 runs)."""
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    if edit is not None:
        conn = sqlite3.connect(out / "results.db", isolation_level=None)
        conn.execute(edit)
        conn.close()
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict()))
    result = CliRunner().invoke(app, ["run", str(study), "--out", str(out), "--max-runs", "1", "--workers", "1",
                                      "--cache-dir", str(cache_dir)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_max_runs_does_not_count_the_runs_it_leaves_as_done(finished: Path, tmp_path: Path, cache_dir: Path) -> None:
    """It said "21 already done": the runs cut by --max-runs were counted as done."""
    said = _resume(finished, tmp_path, cache_dir)
    assert "Study 'tiny': 22 runs, 2 already done, 1 to run" in said, said
    assert "19 left for a later run" in said, said


def test_resuming_with_another_thread_count_is_noted(finished: Path, tmp_path: Path, cache_dir: Path) -> None:
    """The stored runs computed with another thread count each (as if another --workers): the runs trained now use
    this process's count, and the two can differ in the last digits; it was silent."""
    threads = torch.get_num_threads()
    other = threads + 5
    said = _resume(finished, tmp_path, cache_dir,
                   f"UPDATE runs SET provenance = json_set(provenance, '$.torch_threads', {other})")
    assert "note:" in said and f"2 with {other} threads" in said, said
    assert f"use {threads} thread{'s' if threads > 1 else ''} per run" in said and "last digits" in said, said

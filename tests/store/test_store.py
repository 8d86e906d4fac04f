"""The result store keeps exactly one row per run key and round-trips artifacts."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

from biastransfer.spec import RunSpec
from biastransfer.store.lock import folder_in_use, folder_lock
from biastransfer.store.sqlite import ResultStore, StoreLayoutError


def _spec(**kw) -> RunSpec:
    base = {"experiment": "e", "kind": "inheritance", "dataset": {"name": "synthetic"}, "arch": "small_resnet",
            "base_name": "scratch", "base": {"kind": "scratch"}, "task": "t3", "seed": 0}
    return RunSpec(**{**base, **kw})


def test_key_is_stable_and_sensitive_to_every_field():
    assert _spec().key == _spec().key
    assert _spec(seed=1).key != _spec().key
    assert _spec(level=0.8).key != _spec().key
    assert RunSpec.from_dict(_spec().to_dict()) == _spec()


def test_one_row_per_key_and_artifacts(tmp_path):
    store = ResultStore(tmp_path)
    spec = _spec()
    arrays = {"train_rows": np.arange(5), "test_scores": np.linspace(0, 1, 4, dtype=np.float32)}
    store.add_run(spec.key, spec.to_dict(), {"auc": 0.7}, {"seed": 0}, arrays, 1.0)
    store.add_run(spec.key, spec.to_dict(), {"auc": 0.1}, {"seed": 0}, arrays, 1.0)  # ignored
    assert store.count() == 1 and store.done_keys() == {spec.key}
    assert store.runs()[0]["result"]["auc"] == 0.7
    got = store.artifacts(spec.key)
    assert np.array_equal(got["train_rows"], arrays["train_rows"])
    with pytest.raises(KeyError):
        store.artifacts("missing")
    store.close()


def test_nan_survives_the_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    spec = _spec()
    store.add_run(spec.key, spec.to_dict(), {"fpr_diff": float("nan")}, {})
    assert np.isnan(store.runs()[0]["result"]["fpr_diff"])


def test_open_existing_requires_results(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.db is missing"):
        ResultStore.open_existing(tmp_path / "empty")


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _store_with_one_run(folder) -> None:
    store = ResultStore(folder)
    spec = _spec()
    store.add_run(spec.key, spec.to_dict(), {"auc": 0.7}, {"seed": 0})
    store.close()


def test_a_reader_leaves_no_write_ahead_log_files(tmp_path):
    """sqlite makes results.db-wal and -shm for a read-only reader of a WAL-mode file and cannot remove them
    itself; closing the read-only store leaves the folder as it found it."""
    _store_with_one_run(tmp_path)
    assert _names(tmp_path) == ["results.db"]
    store = ResultStore.open_existing(tmp_path, read_only=True, check=False)
    assert store.count() == 1 and _names(tmp_path) == ["results.db", "results.db-shm", "results.db-wal"]
    store.close()
    assert _names(tmp_path) == ["results.db"]


def test_a_reader_closing_beside_a_writer_keeps_the_writers_log(tmp_path):
    """A ``run`` that starts writing while a report reads: the reader's close removes nothing the writer needs,
    and every run the writer adds, before and after, is kept."""
    _store_with_one_run(tmp_path)
    reader = ResultStore.open_existing(tmp_path, read_only=True, check=False)
    writer = ResultStore(tmp_path)
    writer.add_run(_spec(seed=1).key, _spec(seed=1).to_dict(), {"auc": 0.6}, {"seed": 1})
    reader.close()
    assert _names(tmp_path) == ["results.db", "results.db-shm", "results.db-wal"]
    writer.add_run(_spec(seed=2).key, _spec(seed=2).to_dict(), {"auc": 0.5}, {"seed": 2})
    assert writer.count() == 3
    writer.close()
    assert _names(tmp_path) == ["results.db"]
    again = ResultStore.open_existing(tmp_path, read_only=True, check=False)
    assert again.count() == 3
    again.close()


def test_a_reader_leaves_a_log_it_did_not_make(tmp_path):
    """A killed run's folder: its last run is only in results.db-wal (copied while the writer was open). That log
    is not the reader's to checkpoint or remove: the reader sees the run, and the file and its log stay byte for
    byte."""
    live, killed = tmp_path / "live", tmp_path / "killed"
    live.mkdir(), killed.mkdir()
    _store_with_one_run(live)
    writer = ResultStore(live)
    writer.add_run(_spec(seed=1).key, _spec(seed=1).to_dict(), {"auc": 0.6}, {"seed": 1})
    for p in live.iterdir():
        shutil.copy(p, killed / p.name)
    writer.close()
    before = {p.name: p.read_bytes() for p in killed.iterdir()}
    assert len(before["results.db-wal"]) > 0
    reader = ResultStore.open_existing(killed, read_only=True, check=False)
    assert reader.count() == 2
    reader.close()
    after = {p.name: p.read_bytes() for p in killed.iterdir()}
    assert after.keys() == before.keys()  # -shm is sqlite's index of the log: a reader may rebuild it
    assert after["results.db"] == before["results.db"] and after["results.db-wal"] == before["results.db-wal"]


def test_a_reader_closing_while_a_run_holds_the_folder_leaves_the_files(tmp_path):
    """A ``run`` holds the folder's lock (as between its runs, with its store closed): the reader's close does not
    open a read-write connection, so even the empty log files stay for the run's own store."""
    _store_with_one_run(tmp_path)
    with folder_lock(tmp_path):
        assert folder_in_use(tmp_path)
        reader = ResultStore.open_existing(tmp_path, read_only=True, check=False)
        reader.count()
        reader.close()
        assert _names(tmp_path) == [".biastransfer.lock", "results.db", "results.db-shm", "results.db-wal"]
    assert not folder_in_use(tmp_path)


def _recording(monkeypatch) -> list[str]:
    tidied: list[str] = []
    monkeypatch.setattr(ResultStore, "_remove_empty_log", lambda self: tidied.append(self.path.name))
    return tidied


def test_only_a_checked_wal_mode_store_is_tidied(tmp_path, monkeypatch):
    """No read-write connection for a file that fails the checks (here an SQLite file of another program, in
    WAL mode) nor for a store in rollback-journal mode, which gets no log files to remove."""
    tidied = _recording(monkeypatch)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / "results.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL"), conn.execute("CREATE TABLE other (x)")
    conn.close()
    with pytest.raises(StoreLayoutError, match="not a results store"):
        ResultStore.open_existing(foreign, read_only=True)
    assert tidied == []
    journal = tmp_path / "journal"
    _store_with_one_run(journal)
    conn = sqlite3.connect(journal / "results.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    store = ResultStore.open_existing(journal, read_only=True, check=False)
    store.close()
    assert tidied == [] and _names(journal) == ["results.db"]
    wal = tmp_path / "wal"
    _store_with_one_run(wal)
    ResultStore.open_existing(wal, read_only=True, check=False).close()
    assert tidied == ["results.db"]  # the recording sees the one call it replaced


def test_tidying_never_creates_the_file(tmp_path):
    """results.db moved away while it was read: closing the reader creates no empty results.db in its place."""
    _store_with_one_run(tmp_path)
    reader = ResultStore.open_existing(tmp_path, read_only=True, check=False)
    reader.count()
    (tmp_path / "results.db").rename(tmp_path / "moved.db")
    reader.close()
    assert not (tmp_path / "results.db").exists()

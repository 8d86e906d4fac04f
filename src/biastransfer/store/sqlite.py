"""The result store: SQLite, one row per finished run, written in one transaction (the only state of a study).

Tables: ``runs`` (key, spec, result metrics, provenance), ``artifacts`` (chosen indices, test predictions; one
compressed blob per run), ``hparams`` (chosen hyperparameters per search key, with every trial) and ``meta``
(the study file, the bases' roles, the layout of the run keys). A killed process loses at most the runs in
flight; rerunning finds the finished keys and runs the rest, so every run appears exactly once. Only the driver
process writes (:mod:`biastransfer.driver`).

**Layout and earlier releases.** ``meta.layout`` records the run-key version (:data:`biastransfer.spec.KEY_VERSION`)
that wrote the folder, and ``data_in_keys`` once its keys include the data's fingerprint (older folders are
rewritten once by :meth:`ResultStore.upgrade`, which ``run`` calls first). A folder without a layout was written
by biastransfer 0.1: :meth:`ResultStore.upgrade` checks that every stored run's key is the key this version
computes from the stored spec (then the folder keeps working, nothing reruns) and refuses it otherwise, with what
to do; a folder of another key version is refused
(:class:`StoreLayoutError`), never mixed.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from biastransfer.spec import KEY_VERSION, RunSpec
from biastransfer.store.errors import (  # noqa: F401  (StoreLayoutError, TABLES: importable from here too)
    TABLES,
    StoreLayoutError,
    check_file,
    open_failed,
    read_failed,
    write_failed,
)
from biastransfer.store.lock import folder_in_use
from biastransfer.store.migrate import put_data_in_keys

LEGACY_RELEASE = "0.1"
"""The release that wrote folders without ``meta.layout``."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    result TEXT NOT NULL,
    provenance TEXT NOT NULL,
    seconds REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS artifacts (
    key TEXT PRIMARY KEY REFERENCES runs(key),
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS hparams (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    result TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_default, allow_nan=True)


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_ahead_logged(path: Path) -> bool:
    """Whether the SQLite file at ``path`` is in WAL mode (its header's read and write versions, bytes 18 and 19,
    are 2)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2 and header[19] == 2


class ResultStore:
    """A study's results in ``DIR/results.db``."""

    FILENAME = "results.db"
    _tidy_candidate = False  # a read-only store that found no -wal or -shm (see close())
    _tidy_log = False  # ... of a WAL-mode store that passed open_existing's checks

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / self.FILENAME
        existing = self.path.is_file() and self.path.stat().st_size > 0
        self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            if existing:  # refused before anything is written: a damaged page, or an SQLite file of another kind
                check_file(self._conn, self.path, new_ok=True)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ValueError(open_failed(self.path, exc)) from exc
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open_existing(cls, folder: Path, *, check: bool = True, read_only: bool = False) -> ResultStore:
        """An existing store; FileNotFoundError when absent, StoreLayoutError when it is empty (it is not
        re-created), unreadable, not a results store or fails sqlite's ``quick_check``, and, with ``check``, when
        its layout is not this version's (see :meth:`check_layout`).

        ``read_only`` (``report``, ``export``) opens it with sqlite's ``mode=ro``: the connection writes nothing,
        not even the journal mode or a missing table (closing it may remove the empty ``-wal`` and ``-shm`` files
        sqlite made for it; see :meth:`close`). In a folder this process cannot write (read-only media), a
        store without a pending write-ahead log is opened ``immutable=1`` (sqlite cannot create ``results.db-shm``
        there); one with a pending log is read through its ``-wal`` and ``-shm`` files, and refused with what to do
        when ``-shm`` is missing."""
        path = Path(folder) / cls.FILENAME
        if not path.exists():
            raise FileNotFoundError(f"no results in {folder}: {cls.FILENAME} is missing (run a study first with "
                                    f"'biastransfer run STUDY.yaml --out {folder}')")
        if path.is_dir() or path.stat().st_size == 0:
            raise StoreLayoutError(f"{path} is {'a folder' if path.is_dir() else 'empty (0 bytes)'}, not a results "
                                   f"store: it is left as it is; rerun the study into this folder or another one")
        store = None
        try:
            store = cls._read_only(path) if read_only else cls(folder)  # the writable one checked the file itself
            if read_only:
                check_file(store._conn, path)
        except StoreLayoutError:
            if store is not None:
                store.close()
            raise
        except (ValueError, sqlite3.DatabaseError) as exc:
            if store is not None:
                store.close()
            cause = exc.__cause__ or exc
            if isinstance(cause, sqlite3.OperationalError):  # a full disk, no permission, or a hot journal a
                raise StoreLayoutError(read_failed(path, cause)) from None  # read-only connection cannot undo
            raise StoreLayoutError(f"{path} is malformed: {cause}") from None
        if check:
            try:
                store.check_layout()
            except StoreLayoutError:
                store.close()
                raise
        store._tidy_log = store._tidy_candidate and _write_ahead_logged(path)  # see close(); only once all passed
        return store

    @classmethod
    def _read_only(cls, path: Path) -> ResultStore:
        """A store whose connection cannot write (``mode=ro``, or ``immutable=1`` in a folder this process cannot
        write and without a pending write-ahead log)."""
        wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
        pending = wal.exists() and wal.stat().st_size > 0
        mode = "mode=ro"
        if not os.access(path.parent, os.W_OK):
            if pending and not shm.exists():
                raise StoreLayoutError(f"{path} cannot be read here: its latest runs are in {wal.name}, which "
                                       f"sqlite reads only with {shm.name} or in a writable folder, and {path.parent} "
                                       "is not writable: copy the folder to writable storage and read the copy")
            if not pending:
                mode = "mode=ro&immutable=1"
        store = cls.__new__(cls)
        store.folder, store.path = path.parent, path
        store._tidy_candidate = (mode == "mode=ro" and not wal.exists() and not shm.exists()
                                 and os.access(path, os.W_OK))
        uri = f"{path.absolute().as_uri()}?{mode}"
        store._conn = sqlite3.connect(uri, uri=True, timeout=60, isolation_level=None)
        return store

    def close(self) -> None:
        """Close the connection. A read-only store of a WAL-mode results store that passed its checks, and found
        no ``results.db-wal``/``-shm`` beside the file, leaves none: sqlite makes them for a reader but only a
        connection that may write removes them, so a read-write connection (``mode=rw``: it never creates the
        file) is opened and closed, unless a ``run`` holds the folder's lock. sqlite removes the two files only
        when that connection is the file's last (a concurrent writer keeps them and its log). If a writer started
        and stopped during the read, sqlite checkpoints its committed runs into the file on that close: the
        file's bytes change, its runs do not."""
        self._conn.close()
        if self._tidy_log:
            self._remove_empty_log()

    def _remove_empty_log(self) -> None:
        if folder_in_use(self.folder):
            return
        try:
            conn = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=rw", uri=True, timeout=1,
                                   isolation_level=None)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:  # busy or unwritable after all: the two files stay, as sqlite left them
            pass

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write, all or nothing; a full disk, an I/O error or a damaged page is a :class:`StoreWriteError`
        naming the file (the runs stored before are intact)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            finally:
                if self._conn.in_transaction:  # the body or COMMIT failed (sqlite may have rolled back already)
                    with suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            error = write_failed(self.path, exc)
            if error is None:
                raise
            raise error from exc

    # runs -------------------------------------------------------------------------------------------------
    def done_keys(self) -> set[str]:
        return {row[0] for row in self._conn.execute("SELECT key FROM runs")}

    def add_run(self, key: str, spec: dict[str, Any], result: dict[str, Any], provenance: dict[str, Any],
                artifacts: dict[str, np.ndarray] | None = None, seconds: float | None = None) -> None:
        """Insert one finished run (and its artifacts) atomically; a key already present is left unchanged."""
        with self._transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO runs (key, experiment, kind, spec, result, provenance, seconds, finished) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, spec["experiment"], spec["kind"], _json(spec), _json(result), _json(provenance), seconds,
                 time.time()))
            if cur.rowcount and artifacts:
                buf = io.BytesIO()
                np.savez_compressed(buf, **artifacts)
                conn.execute("INSERT OR REPLACE INTO artifacts (key, data) VALUES (?, ?)", (key, buf.getvalue()))

    def runs(self) -> list[dict[str, Any]]:
        """Every finished run as {key, spec, result, provenance, seconds}."""
        rows = self._conn.execute(
            "SELECT key, spec, result, provenance, seconds FROM runs ORDER BY rowid").fetchall()
        return [{"key": k, "spec": json.loads(s), "result": json.loads(r), "provenance": json.loads(p),
                 "seconds": sec} for k, s, r, p, sec in rows]

    def data_hashes(self) -> set[str]:
        """The fingerprints of the data the stored runs were computed on."""
        rows = self._conn.execute("SELECT DISTINCT json_extract(provenance, '$.data_hash') FROM runs").fetchall()
        return {r[0] for r in rows if r[0]}

    def data_hashes_of(self, dataset: dict[str, Any]) -> set[str]:
        """The fingerprints of the data that the stored runs on the dataset section ``dataset`` were computed on
        (a study with several ``datasets`` keeps runs on each in one folder)."""
        rows = self._conn.execute("SELECT DISTINCT json_extract(spec, '$.dataset'), "
                                  "json_extract(provenance, '$.data_hash') FROM runs").fetchall()
        want = json.dumps(dataset, sort_keys=True, default=str)
        return {h for d, h in rows if h and json.dumps(json.loads(d), sort_keys=True, default=str) == want}

    def count(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def artifacts(self, key: str) -> dict[str, np.ndarray]:
        row = self._conn.execute("SELECT data FROM artifacts WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(f"no artifacts stored for run {key}")
        with np.load(io.BytesIO(row[0])) as data:
            return {k: data[k] for k in data.files}

    # hyperparameters --------------------------------------------------------------------------------------
    def get_hparams(self, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT result FROM hparams WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put_hparams(self, key: str, spec: dict[str, Any], result: dict[str, Any]) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO hparams (key, spec, result) VALUES (?, ?, ?)",
                         (key, _json(spec), _json(result)))

    def all_hparams(self) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT key, spec, result FROM hparams ORDER BY rowid").fetchall()
        return [{"key": k, "spec": json.loads(s), "result": json.loads(r)} for k, s, r in rows]

    # layout -----------------------------------------------------------------------------------------------
    def layout(self) -> dict[str, Any] | None:
        """``{"key_version": …}``, or None for an empty folder or one written by biastransfer 0.1."""
        return self.get_meta("layout")

    def is_legacy(self) -> bool:
        """True when runs were written by biastransfer 0.1 and the folder was not upgraded yet."""
        return self.layout() is None and self.count() > 0

    def check_layout(self) -> None:
        """Raise :class:`StoreLayoutError` when the folder's run keys are of another version, or when it was
        written by 0.1 and not upgraded yet (see :meth:`upgrade`)."""
        layout = self.layout()
        if layout is None:
            if self.count():
                raise StoreLayoutError(
                    f"{self.path} was written by biastransfer {LEGACY_RELEASE}: run 'biastransfer upgrade "
                    f"{self.folder}' once (it checks every run's key and records the bases' roles; nothing is "
                    f"retrained), or 'biastransfer run STUDY.yaml --out {self.folder}', which does the same first")
            return
        version = layout.get("key_version")
        if version != KEY_VERSION:
            newer = isinstance(version, int) and version > KEY_VERSION
            raise StoreLayoutError(
                f"{self.path} holds run keys of version {version}, this biastransfer uses version {KEY_VERSION}: "
                + ("it was written by a newer biastransfer; upgrade biastransfer to read it" if newer else
                   "rerun the study into a new folder (--out NEW_DIR); results of the two versions are never "
                   "pooled"))

    def upgrade(self) -> int:
        """Stamp an empty or 0.1 folder with the current layout after checking that every stored run's key is
        the key this version computes from its stored spec, and put the data's fingerprint into the keys of a
        folder written before it was part of them (:mod:`biastransfer.store.migrate`); return the number of
        runs checked. Refuses (and changes nothing) when a key differs."""
        layout = self.layout()
        if layout is not None:
            self.check_layout()
            checked = 0
        else:
            rows = self._conn.execute("SELECT key, spec FROM runs").fetchall()
            stale = []
            for key, spec in rows:
                try:
                    recomputed = RunSpec.from_dict(json.loads(spec)).key
                except (TypeError, ValueError):
                    recomputed = None
                if recomputed != key:
                    stale.append(key)
            if stale:
                raise StoreLayoutError(
                    f"{self.path} was written by biastransfer {LEGACY_RELEASE} and {len(stale)} of its {len(rows)} "
                    f"runs have keys this version computes differently (e.g. {stale[0]}); rerun the study into a new "
                    f"folder (--out NEW_DIR): results of the two versions are never pooled")
            checked = len(rows)
            layout = {"key_version": KEY_VERSION, "upgraded_from": LEGACY_RELEASE if rows else None}
        if not layout.get("data_in_keys"):
            moved = put_data_in_keys(self._conn)
            self.set_meta("layout", {**layout, "data_in_keys": True,
                                     **({"data_keys_rewritten": moved} if any(moved.values()) else {})})
        return checked

    # meta -------------------------------------------------------------------------------------------------
    def set_meta(self, name: str, value: Any) -> None:
        self.set_metas({name: value})

    def set_metas(self, values: dict[str, Any]) -> None:
        """Several meta entries in one transaction: all are written, or none."""
        with self._transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                             [(name, _json(value)) for name, value in values.items()])

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row[0])

"""The result store: SQLite, one row per finished run, written in one transaction (the only state of a study).

Tables: ``runs`` (key, spec, result metrics, provenance), ``artifacts`` (chosen indices, test predictions; one
compressed blob per run), ``hparams`` (chosen hyperparameters per search key, with every trial) and ``meta``
(the study file). A killed process loses at most the runs in flight; rerunning finds the finished keys and runs
the rest, so every run appears exactly once.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

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


class ResultStore:
    """A study's results in ``DIR/results.db``."""

    FILENAME = "results.db"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / self.FILENAME
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"cannot open result store {self.path}: {exc}") from exc

    @classmethod
    def open_existing(cls, folder: Path) -> ResultStore:
        if not (Path(folder) / cls.FILENAME).exists():
            raise FileNotFoundError(f"no results in {folder}: {cls.FILENAME} is missing (run a study first with "
                                    f"'biastransfer run STUDY.yaml --out {folder}')")
        return cls(folder)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

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

    # meta -------------------------------------------------------------------------------------------------
    def set_meta(self, name: str, value: Any) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, _json(value)))

    def get_meta(self, name: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row[0])

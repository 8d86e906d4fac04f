"""What a failed read or write of a results store means, in words: the sqlite errors a user meets on a full disk,
an unreadable file or a damaged one, turned into messages that name the file and say what to do."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class StoreLayoutError(ValueError):
    """A results folder this version cannot use as it is; the message says what to do."""


class StoreWriteError(ValueError):
    """``results.db`` could not be written (a full disk, an I/O error, a damaged page); the message names the file,
    says why, and that the runs stored before are intact."""


TABLES = ("runs", "artifacts", "hparams", "meta")
"""The tables of a results store (:data:`biastransfer.store.sqlite.SCHEMA`); a file without one is not one."""

FULL = "database or disk is full"
IO_ERROR = "disk I/O error"


def reason(exc: sqlite3.Error) -> str | None:
    """The cause of a failed read or write in words, or None for an error that is none of these (a busy
    database, a read-only connection, a programming error)."""
    text = str(exc)
    if FULL in text:
        return f"the disk is full (sqlite: {text})"
    if IO_ERROR in text:
        return (f"sqlite met a {IO_ERROR}: the disk may be full (sqlite writes results.db-wal and results.db-shm "
                "beside the file) or the file unreadable")
    if "malformed" in text or "not a database" in text:
        return f"the file is damaged (sqlite: {text})"
    return None


def open_failed(path: Path, exc: sqlite3.Error) -> str:
    """The message of a store that ``run`` could not open (nothing of it was changed)."""
    why = reason(exc)
    if why is None:
        return f"cannot open the results store {path}: {exc}"
    if "damaged" in why:
        return (f"{path} is malformed (sqlite: {exc}); it is left as it is: restore it from a copy or rerun the "
                "study into a new folder (--out NEW_DIR)")
    return (f"cannot open the results store {path}: {why}. Free some space on its disk, or check the permissions "
            "of the file and its folder, then rerun: the runs stored in it are not changed")


def write_failed(path: Path, exc: sqlite3.Error) -> StoreWriteError | None:
    """The error to raise for a failed write to the store (its transaction rolled back), or None when ``exc`` is
    not a disk or file problem."""
    why = reason(exc)
    if why is None:
        return None
    if "damaged" in why:
        return StoreWriteError(f"cannot write to {path}: {why}. Restore it from a copy, or rerun the study into a "
                               "new folder (--out NEW_DIR)")
    return StoreWriteError(f"cannot write to {path}: {why}. The runs stored before are intact (each run is written "
                           "in one transaction): free some space and rerun the same command, which resumes where "
                           "it stopped")


def read_failed(path: Path, exc: sqlite3.Error) -> str:
    """The message of a store that ``report`` or ``export`` could not read (opened read-only)."""
    why = reason(exc)
    if why is not None and "damaged" not in why:
        return (f"{path} cannot be read here: {why}. Free some space on its disk or check the permissions of the "
                "file and its folder; or copy the folder to other storage and read the copy")
    return (f"{path} cannot be read here (sqlite: {exc}); check its permissions, or copy the folder to writable "
            "storage and read the copy")


def check_file(conn: sqlite3.Connection, path: Path, *, new_ok: bool = False) -> None:
    """Raise :class:`StoreLayoutError` for an SQLite file that fails sqlite's ``quick_check`` (a damaged page) or
    is not a results store (``new_ok``: a file without any table is one ``run`` may fill)."""
    problem = conn.execute("PRAGMA quick_check").fetchone()[0]
    if problem != "ok":
        raise StoreLayoutError(f"{path} is malformed (sqlite quick_check: {problem}); it is left as it is: restore "
                               "it from a copy or rerun the study into a new folder (--out NEW_DIR)")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in TABLES if t not in tables]
    if missing and not (new_ok and not tables):
        raise StoreLayoutError(f"{path} is an SQLite file but not a results store of biastransfer (no table "
                               f"{', '.join(missing)}); it is left as it is")

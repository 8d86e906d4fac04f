"""The file-system and sqlite errors of commands that write a results folder, in words: what happened to which
file, and what to do (never a traceback)."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from biastransfer.cli.console import fail

READ_ELSEWHERE = ("a finished folder on read-only media can still be read where it is: 'biastransfer report DIR -o "
                  "ELSEWHERE' and 'biastransfer export DIR -o FILE'")


def os_error_message(exc: OSError, out_dir: Path | None = None) -> str:
    """``exc`` as a sentence naming its file, the cause (read-only file system, permission denied, name too long,
    no space left) and what to do; ``out_dir`` is the folder the command writes its results to (``--out``)."""
    path = exc.filename if exc.filename is not None else (out_dir or "a file")
    out = "--out" if out_dir is not None else "the output"
    code = exc.errno
    if code == errno.EROFS:
        return (f"cannot write {path}: the file system is read-only (Errno {code}: {exc.strerror}). Choose an "
                f"{out} folder on writable storage; {READ_ELSEWHERE}")
    if code in (errno.EACCES, errno.EPERM):
        return (f"cannot write {path}: permission denied (Errno {code}: {exc.strerror}). Choose an {out} folder "
                f"you may write to, or change its permissions; {READ_ELSEWHERE}")
    if code == errno.ENAMETOOLONG:
        longest = max(Path(str(path)).parts, key=lambda part: len(os.fsencode(part)), default="")
        return (f"cannot create {path}: the name is too long for the file system (Errno {code}: {exc.strerror}; "
                f"its longest part has {len(os.fsencode(longest))} bytes, most file systems allow 255 per name and "
                f"4096 per path). Choose a shorter {out}")
    if code in (errno.ENOSPC, errno.EDQUOT):
        stored = f" The runs stored in {out_dir / 'results.db'} are intact:" if out_dir is not None else ""
        return (f"cannot write {path}: no space left on the device (Errno {code}: {exc.strerror}).{stored} free "
                "some space and rerun the same command, which resumes where it stopped")
    return f"{path}: {exc.strerror or exc} (Errno {code})" if code is not None else f"{path}: {exc}"


def sqlite_error_message(exc: sqlite3.Error, store: Path) -> str:
    """An sqlite error that reached the command line, naming the results store ``store`` it came from."""
    from biastransfer.store.errors import write_failed

    error = write_failed(store, exc)
    return str(error) if error is not None else f"the results store {store} failed: sqlite: {exc}"


@contextmanager
def folder_errors(out_dir: Path) -> Iterator[None]:
    """Stop with a named message (``fail``, exit code 1) on an ``OSError`` or an sqlite error of a command that
    writes into ``out_dir``; a missing file (FileNotFoundError) is left to the caller's own message."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as exc:
        fail(os_error_message(exc, out_dir), 1)
    except sqlite3.Error as exc:
        fail(sqlite_error_message(exc, Path(out_dir) / "results.db"), 1)

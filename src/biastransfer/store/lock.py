"""One process per output folder (DESIGN principle 2): ``run`` holds an exclusive lock on ``DIR/.biastransfer.lock``
while it works. A second ``run`` on the same folder is refused with the holder named, or waits with ``--wait``.

The lock is an ``flock`` on the file, so the operating system releases it when the holder exits in any way (a
SIGKILL included): a stale lock file never blocks a later run. The file holds a line naming the holder (process
id, host, start time), for the message only.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".biastransfer.lock"


class FolderBusyError(ValueError):
    """Another process holds the output folder's lock."""


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def folder_lock(out_dir: Path, *, wait: bool = False,
                on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the ``with`` block (creating the folder). Without ``wait`` a held lock raises
    :class:`FolderBusyError` naming the holder; with it, ``on_wait(holder)`` is called and the lock is awaited."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FolderBusyError(f"--out {out_dir} is a file, not a folder: name a folder for the results")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if not wait:
                raise FolderBusyError(
                    f"{out_dir} is in use by {holder}: one study runs into a folder at a time. Wait for it to "
                    f"finish (or stop it), run with --wait to start when it does, or choose another --out folder"
                ) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()} on {socket.gethostname()} (since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder_in_use(out_dir: Path) -> bool:
    """Whether a process holds ``out_dir``'s lock now. Creates and takes nothing: False when there is no lock file;
    True when its state cannot be read (the safe answer for a caller that would otherwise touch the folder)."""
    path = Path(out_dir) / LOCK_NAME
    if not path.exists():
        return False
    try:
        with open(path) as handle:  # read-only: never creates the file
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return True

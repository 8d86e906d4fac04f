"""Worker processes of the ``processes`` backend exit when the main process dies, even by SIGKILL or SIGTERM (they
used to keep running, ~1 GB each, with the results folder in use)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

MAIN = """
import os, sys, time
from pathlib import Path
import torch
from biastransfer.backends.base import Resources
from biastransfer.backends.processes import Processes
folder = Path(sys.argv[1])
backend = Processes(Resources(device=torch.device("cpu"), cache_dir=folder, out_dir=folder), 2)
pids = {backend.pool.submit(os.getpid).result() for _ in range(6)}
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_exit_when_the_main_process_dies(tmp_path: Path, sig: signal.Signals) -> None:
    main = subprocess.Popen([sys.executable, "-c", MAIN, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        line = main.stdout.readline()
        workers = [int(p) for p in line.split()]
        assert workers and all(_alive(p) for p in workers), line
        os.kill(main.pid, sig)
        main.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], f"workers {workers} outlived the main process ({sig.name})"
    finally:
        if main.poll() is None:
            main.kill()

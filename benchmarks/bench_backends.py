"""Overhead of the Ray backend against the local ``processes`` backend on one study.

Runs the study (default: the tiny demo) once per backend, each in a subprocess with a fresh ``--out`` and
``--cache-dir`` (so data generation and base training are included) and the same number of single-threaded
workers, alternating the order over ``--repeat`` rounds; prints the wall seconds of each run and the ratio
ray / processes of their medians, then checks that both backends stored the same numbers run by run.

Usage: ``python benchmarks/bench_backends.py [--study demo_tiny] [--workers 2] [--repeat 1] [--tiny]``.
Every figure is measured in this invocation; the machine may be shared, so compare only figures of one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

BACKENDS = ("processes", "ray")
IGNORED = {"seconds"}


def run_once(study: str, backend: str, workers: int, folder: Path, tiny: bool) -> float:
    """Wall seconds of ``biastransfer run STUDY`` on ``backend``, from an empty cache, without the report."""
    command = [sys.executable, "-m", "biastransfer.cli", "run", study, "--out", str(folder / "out"),
               "--cache-dir", str(folder / "cache"), "--backend", backend, "--workers", str(workers), "--quiet",
               "--no-report", *(["--tiny"] if tiny else [])]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def exported(folder: Path) -> pd.DataFrame:
    target = folder / "runs.csv"
    subprocess.run([sys.executable, "-m", "biastransfer.cli", "export", str(folder / "out"), "-o", str(target)],
                   check=True, capture_output=True)
    frame = pd.read_csv(target).set_index("run_key").sort_index()
    return frame[[c for c in frame.columns if c not in IGNORED]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="demo_tiny", help="a bundled study's name or a study file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="run the study's --tiny version")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {b: [] for b in BACKENDS}
    frames: dict[str, pd.DataFrame] = {}
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        for round_ in range(args.repeat):
            order = BACKENDS if round_ % 2 == 0 else tuple(reversed(BACKENDS))
            for backend in order:
                folder = Path(tmp) / f"{backend}-{round_}"
                seconds[backend].append(run_once(args.study, backend, args.workers, folder, args.tiny))
                print(f"{backend}_seconds_round{round_}: {seconds[backend][-1]:.1f}", flush=True)
                frames.setdefault(backend, exported(folder))
    medians = {b: statistics.median(v) for b, v in seconds.items()}
    for backend, value in medians.items():
        print(f"{backend}_seconds: {value:.1f}")
    print(f"ray_over_processes: {medians['ray'] / medians['processes']:.3f}")
    print(f"ray_overhead_seconds: {medians['ray'] - medians['processes']:.1f}")
    try:
        pd.testing.assert_frame_equal(frames["ray"], frames["processes"])
        print(f"same_numbers: yes ({len(frames['ray'])} runs, every exported column but wall time)")
    except AssertionError as exc:
        print(f"same_numbers: NO\n{exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()

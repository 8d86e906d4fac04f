"""``recommend`` with one backend per study against one backend per round of its adaptive loop.

Runs the bundled study ``recommend_demo`` (or ``--study``) twice per repeat, each into a fresh output folder and
with the same data and base cache (primed first, so neither run pays for data generation or base training):

* ``after``: as the driver runs a study now, one backend (pool of worker processes, or Ray instance) for the
  whole study, so each worker's decoded datasets, bases and frozen features stay loaded from round to round;
* ``before``: the driver's old behaviour, reproduced by wrapping ``make_backend`` so that each round of the
  adaptive loop (each ``run`` call) gets a new backend, closed after it.

It prints each run's wall seconds, trainings, new runs and rounds, the ratio before / after of the wall times
(median over ``--repeat``), and checks that both stored the same results. Every figure is measured in this
invocation; the machine may be shared, so compare only figures of one invocation, and name the CPU (printed).

Usage: ``python benchmarks/recommend_backend.py [--tiny] [--seeds N] [--budget B] [--workers 2]
[--backend processes] [--repeat 1]``. The full study trains up to 28 runs of 20 epochs per mode (about 8 minutes
per mode on 2 cores, estimated); ``--tiny`` (the study's ``--tiny`` version: 16×16 images, 2 epochs, 2 seeds) takes
a minute or two in all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import yaml

from biastransfer.backends import Resources
from biastransfer.backends.workspace import Workspace
from biastransfer.driver import execute, run_study
from biastransfer.plan import parse_study
from biastransfer.store.sqlite import ResultStore
from biastransfer.studies import find
from biastransfer.tiny import shrink_study

MODES = ("before", "after")


class PerRound:
    """The old driver's backend: a new backend (``make()``) for every ``run`` call, closed after it; the first is
    made at once (as the old driver made it before the first round)."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._first = make()
        self.workers, self.registry_name = self._first.workers, self._first.registry_name
        self.threads = getattr(self._first, "threads", None)

    def run(self, jobs: list) -> Iterator:
        runner, self._first = self._first or self._make(), None
        try:
            yield from runner.run(jobs)
        finally:
            runner.close()

    def close(self) -> None:
        if self._first is not None:
            self._first.close()
            self._first = None


@contextlib.contextmanager
def counted(mode: str, rounds: list[int]) -> Iterator[None]:
    """The driver's ``make_backend`` for ``mode`` (per round for ``before``), counting ``run`` calls (rounds)."""
    real = execute.make_backend

    def make(*args: Any, **kwargs: Any) -> Any:
        backend = PerRound(lambda: real(*args, **kwargs)) if mode == "before" else real(*args, **kwargs)
        run = backend.run

        def counted_run(jobs: list) -> Iterator:
            rounds[0] += 1
            return run(jobs)

        backend.run = counted_run
        return backend

    execute.make_backend = make
    try:
        yield
    finally:
        execute.make_backend = real


def load(name: str, tiny: bool, seeds: int | None, budget: int | None) -> dict[str, Any]:
    found = find(name)
    data = yaml.safe_load(found.text if found else Path(name).read_text(encoding="utf-8"))
    if tiny:
        data = shrink_study(data)
    for block in data["experiments"]:
        if seeds is not None:
            block["seeds"] = list(block["seeds"])[:seeds]
        if budget is not None:
            block.setdefault("options", {})["budget"] = budget
    return data


def prime(study: Any, cache: Path, out: Path) -> None:
    """Generate the data and train the bases into ``cache`` (what both modes then read)."""
    workspace = Workspace(Resources(device=torch.device("cpu"), cache_dir=cache, out_dir=out))
    seen = set()
    for spec in study.expand():
        key = (str(spec.dataset), str(spec.base))
        if key not in seen:
            seen.add(key)
            workspace.base_info(spec)


def results(out: Path) -> dict[str, Any]:
    """The stored runs' results by key, without their wall times (``seconds``, ``fit_seconds`` …)."""
    store = ResultStore.open_existing(out)
    try:
        return {r["key"]: {k: v for k, v in r["result"].items() if not k.endswith("seconds")} for r in store.runs()}
    finally:
        store.close()


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Where two folders' results differ: runs only one has, and the first differing fields of the others."""
    out = [f"run {k} only {'before' if k in before else 'after'}" for k in sorted(set(before) ^ set(after))]
    for key in sorted(set(before) & set(after)):
        fields = sorted(f for f in set(before[key]) | set(after[key])  # as JSON: NaN equals NaN
                        if json.dumps(before[key].get(f)) != json.dumps(after[key].get(f)))
        if fields:
            out.append(f"run {key}: {', '.join(fields[:5])}")
    return out


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="recommend_demo", help="a bundled study's name or a study file")
    parser.add_argument("--tiny", action="store_true", help="the study's --tiny version")
    parser.add_argument("--seeds", type=int, help="keep each block's first SEEDS seeds")
    parser.add_argument("--budget", type=int, help="each adaptive block's budget of new runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="processes")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    data = load(args.study, args.tiny, args.seeds, args.budget)
    print(f"cpu: {cpu_name()} ({os.cpu_count()} logical cores); load average at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"study: {data['name']} (workers {args.workers}, backend {args.backend})", flush=True)
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    stored: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-recommend-") as tmp:
        cache = Path(tmp) / "cache"
        started = time.perf_counter()
        prime(parse_study(data), cache, Path(tmp) / "prime")
        print(f"primed the data and base cache in {time.perf_counter() - started:.1f} s", flush=True)
        for repeat in range(args.repeat):
            for mode in MODES if repeat % 2 == 0 else tuple(reversed(MODES)):
                out, rounds = Path(tmp) / f"{mode}-{repeat}", [0]
                started = time.perf_counter()
                with counted(mode, rounds):
                    summary = run_study(parse_study(data), out, device=torch.device("cpu"), cache_dir=cache,
                                        quiet=True, workers=args.workers, backend=args.backend)
                seconds[mode].append(time.perf_counter() - started)
                print(f"{mode}_round{repeat}: {seconds[mode][-1]:.1f} s, {summary.trainings} trainings, "
                      f"{summary.ran} new runs, {rounds[0]} rounds", flush=True)
                stored.setdefault(mode, results(out))
    medians = {m: statistics.median(v) for m, v in seconds.items()}
    print(f"before_seconds: {medians['before']:.1f}\nafter_seconds: {medians['after']:.1f}")
    print(f"before_over_after: {medians['before'] / medians['after']:.3f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    differ = differences(stored["before"], stored["after"])
    print(f"same_results: {'NO' if differ else 'yes'} ({len(stored['after'])} runs, every result field but wall "
          "times)")
    for line in differ[:10]:
        print(f"  {line}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

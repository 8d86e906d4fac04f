"""Run a study: expand it into RunSpecs, skip the keys the store has, run the rest, one transaction per run."""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from biastransfer import plugins  # noqa: F401  (registers everything)
from biastransfer.config import StudyConfig
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.runner.context import RunContext, default_cache_dir
from biastransfer.runner.schedule import JOB_KINDS, plan_jobs, schedule
from biastransfer.runner.spec import RunSpec
from biastransfer.runner.store import ResultStore
from biastransfer.train import engine

log = logging.getLogger("biastransfer")


class RunFailedError(RuntimeError):
    """A run raised; the message names the run and its log file."""


def expand_study(study: StudyConfig) -> list[RunSpec]:
    """Every run of the study, in order, without duplicates."""
    specs: dict[str, RunSpec] = {}
    for block in study.experiments:
        for spec in EXPERIMENTS.get(block.kind)().expand(study, block):
            specs.setdefault(spec.key, spec)
    return list(specs.values())


def preflight(specs: list[RunSpec], ctx: RunContext) -> None:
    """Check every distinct setting (ignoring seeds) before training anything; raise with what to fix."""
    seen: set[str] = set()
    for spec in specs:
        probe = RunSpec.from_dict({**spec.to_dict(), "seed": 0, "base_name": "", "experiment": ""})
        if probe.key in seen:
            continue
        seen.add(probe.key)
        try:
            EXPERIMENTS.get(spec.kind)().check(spec, ctx)
        except ValueError as exc:
            raise type(exc)(f"{spec.describe()}: {exc}") from None


@dataclass
class StudySummary:
    total: int
    skipped: int
    ran: int
    trainings: int
    seconds: float


@contextmanager
def _run_log(path: Path) -> Iterator[logging.Handler]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def _execute(job: str, spec: RunSpec, ctx: RunContext, out_dir: Path) -> dict[str, Any]:
    """Run one job (``base``, ``hparams`` or ``run``) in this process; return what the main process stores."""
    before = engine.TRAININGS.count
    started = time.perf_counter()
    payload: dict[str, Any] = {"job": job, "key": spec.key}
    if job == "base":
        ctx.base_model(spec)
    elif job == "hparams":
        EXPERIMENTS.get(spec.kind)().ensure_hparams(spec, ctx)
    else:
        log_path = Path(out_dir) / "logs" / f"{spec.key}.log"
        with _run_log(log_path):
            log.info("run %s: %s", spec.key, spec.describe())
            try:
                output = EXPERIMENTS.get(spec.kind)().run(spec, ctx)
            except Exception as exc:
                log.error("run failed:\n%s", traceback.format_exc())
                raise RunFailedError(f"run {spec.describe()} failed: {exc} (log: {log_path})") from exc
            log.info("result: %s", output.result)
        payload.update(result=output.result, artifacts=output.artifacts,
                       provenance=ctx.provenance(spec, {"bases": ctx.base_infos}))
    payload["seconds"] = time.perf_counter() - started
    payload["trainings"] = engine.TRAININGS.count - before
    return payload


_WORKER: dict[str, Any] = {}


def _worker_init(out_dir: str, device: str, cache_dir: str, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(out_dir=Path(out_dir), ctx=RunContext(store=ResultStore(Path(out_dir)),
                                                         device=torch.device(device), cache_dir=Path(cache_dir)))


def _worker_job(job: str, spec_dict: dict[str, Any]) -> dict[str, Any]:
    return _execute(job, RunSpec.from_dict(spec_dict), _WORKER["ctx"], _WORKER["out_dir"])


def resolve_workers(workers: int | str, device: torch.device) -> int:
    """``auto``: one single-threaded worker per core on CPU (small models scale better across processes than
    across threads), one process on CUDA."""
    if workers == "auto":
        return 1 if device.type != "cpu" else max(1, min(os.cpu_count() or 1, 8))
    n = int(workers)
    if n < 1:
        raise ValueError(f"workers must be 'auto' or a positive integer, got {workers}")
    return n


def run_study(study: StudyConfig, out_dir: Path, *, device: torch.device, cache_dir: Path | None = None,
              study_text: str | None = None, quiet: bool = False, console: Console | None = None,
              max_runs: int | None = None, workers: int | str = 1) -> StudySummary:
    """Run every missing run of ``study`` into ``out_dir/results.db``; return what was done.

    Every trained base is trained once and every hyperparameter search runs once, before the runs that need them
    (:mod:`biastransfer.runner.schedule`). With ``workers`` > 1 the jobs run in a pool of single-threaded
    processes, each submitted as soon as what it needs is done; the main process alone writes run rows.
    ``max_runs`` stops after that many new runs (for tests and partial runs); rerunning continues.
    """
    console = console or Console(stderr=True, quiet=quiet)
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    store = ResultStore(out_dir)
    store.set_meta("study", study.model_dump(mode="json"))
    if study_text is not None:
        store.set_meta("study_yaml", study_text)
    specs = expand_study(study)
    done = store.done_keys()
    todo = [s for s in specs if s.key not in done]
    if max_runs is not None:
        todo = todo[:max_runs]
    cache = Path(cache_dir or default_cache_dir())
    ctx = RunContext(store=store, device=device, cache_dir=cache)
    if not todo:
        console.print(f"[green]Nothing to run:[/] all {len(specs)} runs of {study.name!r} are in {store.path}")
        store.close()
        return StudySummary(len(specs), len(specs), 0, 0, time.perf_counter() - t0)
    preflight(todo, ctx)
    n_workers = resolve_workers(workers, device)
    jobs = plan_jobs(todo, store)
    console.print(f"Study {study.name!r}: {len(specs)} runs, {len(specs) - len(todo)} already done, "
                  f"{len(todo)} to run on {device} ({n_workers} worker{'s' if n_workers > 1 else ''})")
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    trainings = 0
    pool = None
    if n_workers > 1:
        threads = max(1, torch.get_num_threads() // n_workers)
        pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(str(out_dir), str(device), str(cache),
                                                                       threads))
    try:
        with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
            labels = {"base": "training bases", "hparams": "hyperparameter search", "run": "runs"}
            bars = {kind: progress.add_task(labels[kind], total=count)
                    for kind in JOB_KINDS if (count := sum(job.kind == kind for job in jobs))}
            if pool is None:
                finished = ((job, _execute(job.kind, job.spec, ctx, out_dir)) for job in jobs)
            else:
                finished = schedule(jobs, lambda job: pool.submit(_worker_job, job.kind, job.spec.to_dict()),
                                    capacity=n_workers)
            for job, payload in finished:
                trainings += payload["trainings"]
                if job.kind == "run":
                    store.add_run(job.spec.key, job.spec.to_dict(), payload["result"], payload["provenance"],
                                  payload["artifacts"], payload["seconds"])
                progress.advance(bars[job.kind])
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    summary = StudySummary(len(specs), len(specs) - len(todo), len(todo), trainings, time.perf_counter() - t0)
    from biastransfer.runner.protocol import original_protocol_trainings

    store.set_meta("last_run", {"ran": summary.ran, "trainings": summary.trainings, "seconds": summary.seconds,
                                "workers": n_workers,
                                "original_protocol_trainings": original_protocol_trainings(study)})
    store.close()
    return summary

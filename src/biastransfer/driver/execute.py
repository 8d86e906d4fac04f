"""The driver's backend: how many workers, which backend, one backend for the whole study, and the loop that hands
it jobs and writes what comes back (:func:`drive`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from biastransfer.backends import (
    BACKENDS,
    JOB_KINDS,
    Backend,
    BackendOptions,
    Job,
    JobFailedError,
    Resources,
    auto_backend,
    check_address,
)
from biastransfer.plan import Study, search_record
from biastransfer.store.sqlite import ResultStore


def resolve_workers(workers: int | str, device: torch.device) -> int:
    """``auto``: one single-threaded worker per core on CPU (small models scale better across processes than
    across threads), one process on CUDA."""
    if workers == "auto":
        return 1 if device.type != "cpu" else max(1, min(os.cpu_count() or 1, 8))
    try:
        n = int(workers)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"workers must be 'auto' or a positive integer, got {workers}")
    return n


def make_backend(name: str, resources: Resources, workers: int, options: BackendOptions | None = None) -> Backend:
    """A registered backend by name, or for ``auto`` the one the backends' capabilities pick
    (:func:`~biastransfer.backends.auto_backend`: a cluster's when an address is given, else a pool with more than
    one worker, else in-process); an address with a backend that runs on no cluster is refused."""
    options = options or BackendOptions()
    if name == "auto":
        name = auto_backend(workers, options)
    else:
        BACKENDS.get(name)  # an unknown name is named first, with the registered ones
        check_address(name, options)
    return BACKENDS.get(name)(resources, workers, options)


@contextmanager
def study_backend(name: str, resources: Resources, workers: int, options: BackendOptions) -> Iterator[Backend]:
    """One backend for the whole study (:func:`make_backend`): every round of the adaptive loop runs on the same
    pool of workers or Ray instance, so their datasets, bases and frozen features stay loaded; closed once, when
    the study ends, fails or is interrupted."""
    runner = make_backend(name, resources, workers, options)
    try:
        yield runner
    finally:
        runner.close()


def backend_options(study: Study, *, address: str | None = None, cpus_per_task: float | None = None,
                    gpus_per_task: float | None = None, max_retries: int | None = None) -> BackendOptions:
    """The study's ``execution`` section with what the command line gives (``None``: not given) on top."""
    execution = study.config.execution
    return BackendOptions(
        address=address,
        cpus_per_task=execution.cpus_per_task if cpus_per_task is None else float(cpus_per_task),
        gpus_per_task=execution.gpus_per_task if gpus_per_task is None else float(gpus_per_task),
        max_retries=execution.max_retries if max_retries is None else int(max_retries))


def drive(store: ResultStore, runner: Backend, jobs: list[Job], console: Console, quiet: bool) -> int:
    """Run ``jobs`` on ``runner`` with a progress bar per job kind; write searches and runs as they finish; return
    the trainings. A job that failed (on a backend that goes on after failures) is named at the end, after every
    other job finished, in one :class:`JobFailedError`. The runner stays open (:func:`study_backend` closes it)."""
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    labels = {"base": "training bases", "hparams": "hyperparameter search", "run": "runs"}
    trainings = 0
    failures: list[str] = []
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        bars = {kind: progress.add_task(labels[kind], total=count)
                for kind in JOB_KINDS if (count := sum(job.kind == kind for job in jobs))}
        for job, outcome in runner.run(jobs):
            trainings += outcome.trainings
            if outcome.error is not None:
                failures.append(outcome.error)
                console.print(f"[red]failed:[/] {outcome.error}", highlight=False)
            elif job.kind == "hparams":
                store.put_hparams(job.key.removeprefix("hparams:"), search_record(job.spec), outcome.product)
            elif job.kind == "run":
                p = outcome.product
                store.add_run(job.spec.key, job.spec.to_dict(), p["result"], p["provenance"], p["artifacts"],
                              outcome.seconds)
            progress.advance(bars[job.kind])
    if failures:
        more = f" ({len(failures) - 1} more job(s) failed or were not run; the other jobs finished and are stored)"
        raise JobFailedError(failures[0] + (more if len(failures) > 1 else ""))
    return trainings

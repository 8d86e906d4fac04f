"""The ``processes`` backend: a pool of spawned single-threaded worker processes on this machine.

Each job is submitted as soon as the jobs it needs are done (:func:`schedule`), highest priority first, keeping
exactly one job per worker in flight, so no worker waits at a phase boundary: while the last base trains, the
other workers already search and run for the bases that are ready (and for scratch, which needs none). Every
worker keeps its own :class:`~biastransfer.backends.workspace.Workspace` (datasets decoded once per process;
trained bases reach it through the shared cache folder). Only the order of work changes; every job computes the
same thing as in-process. A worker exits by itself when the main process dies, however it dies.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from biastransfer.backends.base import BACKENDS, Backend, BackendOptions, Job, Outcome, Resources
from biastransfer.backends.jobs import execute_job
from biastransfer.backends.workspace import Workspace
from biastransfer.device import limit_gpu_memory

_WORKER: dict[str, Workspace] = {}


ORPHAN_POLL_SECONDS = 1.0
"""How often a worker checks that the process that started it is still alive."""


def _exit_with_parent(parent: int, poll: float = ORPHAN_POLL_SECONDS) -> None:
    """Exit this worker as soon as its parent is gone (its parent pid changes when the parent dies): a main process
    killed by SIGTERM or SIGKILL never leaves workers running with datasets in memory and the store's folder in
    use. Runs in a daemon thread."""
    while os.getppid() == parent:
        time.sleep(poll)
    os._exit(1)


def _init(resources: Resources, threads: int, parent: int, gpu_share: float) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    torch.set_num_threads(threads)
    limit_gpu_memory(resources.device, gpu_share)
    _WORKER["workspace"] = Workspace(resources)


def _run(job: Job, products: dict[str, Any]) -> Outcome:
    return execute_job(job, products, _WORKER["workspace"])


def schedule(jobs: list[Job], submit: Callable[[Job], Future], capacity: int) -> Iterator[tuple[Job, Any]]:
    """Run ``jobs`` through ``submit`` (which starts one and returns its future), at most ``capacity`` at a time;
    yield ``(job, result)`` as each finishes.

    A job is submitted once every job it needs has finished, the earliest in ``jobs`` (the priority order) first.
    A job that raises stops the schedule: the exception propagates and nothing more is submitted (the caller
    cancels what is in flight).
    """
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, got {capacity}")
    position = {job.key: i for i, job in enumerate(jobs)}
    missing = {job.key: set(job.needs) & position.keys() for job in jobs}
    waiting_on: dict[str, list[Job]] = {}
    ready: list[tuple[int, str]] = []
    for job in jobs:
        for need in missing[job.key]:
            waiting_on.setdefault(need, []).append(job)
        if not missing[job.key]:
            heapq.heappush(ready, (position[job.key], job.key))
    by_key = {job.key: job for job in jobs}
    running: dict[Future, Job] = {}
    while ready or running:
        while ready and len(running) < capacity:
            _, key = heapq.heappop(ready)
            running[submit(by_key[key])] = by_key[key]
        if not running:
            break
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in sorted(finished, key=lambda f: position[running[f].key]):
            job = running.pop(future)
            result = future.result()
            for waiter in waiting_on.pop(job.key, []):
                missing[waiter.key].discard(job.key)
                if not missing[waiter.key]:
                    heapq.heappush(ready, (position[waiter.key], waiter.key))
            yield job, result
    blocked = [key for key, needs in missing.items() if needs]
    if blocked:  # cannot happen for plan_jobs' output (its dependencies point backwards); guards other callers
        raise RuntimeError(f"{len(blocked)} job(s) wait on each other: {', '.join(blocked[:3])}")


def gpu_share(workers: int) -> float:
    """The share of the GPU's memory each of ``workers`` worker processes may use: an equal part each."""
    return 1.0 / max(1, workers)


@BACKENDS.register("processes")
class Processes(Backend):
    """A pool of ``workers`` spawned processes with one thread each on CPU (small models scale better across
    processes than across threads); dependent jobs receive their dependencies' products.

    On CUDA the workers share the GPU: each may use ``1/workers`` of its memory (:func:`gpu_share`), so runs train
    concurrently on one device without one worker's allocations starving another's."""

    description = "a pool of worker processes on this machine, jobs scheduled by dependency"
    auto_rank = 1  # --backend auto: with more than one worker and no cluster

    @classmethod
    def suits_auto(cls, workers: int, options: BackendOptions) -> bool:
        return workers > 1

    def __init__(self, resources: Resources, workers: int = 2, options: BackendOptions | None = None) -> None:
        super().__init__(resources, workers, options)
        self.threads = threads = max(1, torch.get_num_threads() // workers)  # per worker (each run's provenance)
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init,
                                        initargs=(resources, threads, os.getpid(), gpu_share(workers)))

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, Outcome]]:
        products: dict[str, Any] = {}
        dependencies = {need for job in jobs for need in job.needs}

        def submit(job: Job) -> Future:
            return self.pool.submit(_run, job, {k: products[k] for k in job.needs if k in products})

        for job, outcome in schedule(jobs, submit, capacity=self.workers):
            if job.key in dependencies:
                products[job.key] = outcome.product
            yield job, outcome

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)

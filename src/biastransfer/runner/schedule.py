"""The jobs of a study and the order they run in.

A study needs three kinds of job: training a base (``base``), a hyperparameter search (``hparams``) and a run
(``run``). A search needs its trained base; a run needs its trained base and its search. :func:`plan_jobs` lists
the jobs with those dependencies in priority order (bases, then searches, then runs, each in study order), which is
also a valid serial order. :func:`schedule` runs them on a process pool and submits each job as soon as what it
needs is done, highest priority first, keeping exactly one job per worker in flight. So no worker waits at a phase
boundary: while the last base trains, the other workers already search and run for the bases that are ready (and
for scratch, which needs none). Only the order of work changes; every job computes the same thing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.runner.spec import RunSpec, content_key
from biastransfer.runner.store import ResultStore

JOB_KINDS = ("base", "hparams", "run")
"""Job kinds in priority order."""


@dataclass(frozen=True)
class Job:
    """One unit of work for a worker: ``kind`` in :data:`JOB_KINDS`, the spec it is for, a key unique within the
    study, and the keys of the jobs that must finish first."""

    kind: str
    spec: RunSpec
    key: str
    needs: frozenset[str] = field(default_factory=frozenset)


def base_job_key(spec: RunSpec) -> str:
    """The job that trains the run's base (one per distinct trained base of a study)."""
    return "base:" + content_key({"base": spec.base, "arch": spec.arch, "data": spec.dataset,
                                  "training": spec.base_training})


def plan_jobs(todo: list[RunSpec], store: ResultStore) -> list[Job]:
    """The jobs that ``todo`` needs, in priority order, each with its dependencies.

    One ``base`` job per distinct trained base, one ``hparams`` job per hyperparameter search the store does not
    have yet, and one ``run`` job per spec.
    """
    bases: dict[str, Job] = {}
    searches: dict[str, Job] = {}
    stored: dict[str, bool] = {}  # search key -> the store has it (one lookup per key, not per run)
    runs: list[Job] = []
    for spec in todo:
        needs: set[str] = set()
        if spec.base.get("kind") == "trained":
            key = base_job_key(spec)
            bases.setdefault(key, Job("base", spec, key))
            needs.add(key)
        experiment = EXPERIMENTS.get(spec.kind)()
        if experiment.needs_hparams:
            store_key = experiment.hparam_store_key(spec)
            key = "hparams:" + store_key
            if store_key not in stored:
                stored[store_key] = store.get_hparams(store_key) is not None
            if not stored[store_key]:
                searches.setdefault(key, Job("hparams", spec, key, frozenset(needs)))
                needs.add(key)
        runs.append(Job("run", spec, "run:" + spec.key, frozenset(needs)))
    return [*bases.values(), *searches.values(), *runs]


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

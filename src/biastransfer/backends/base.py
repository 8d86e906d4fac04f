"""Execution backends: what runs a study's jobs, and the jobs themselves.

A study needs three kinds of job: training a base (``base``), a hyperparameter search (``hparams``) and a run
(``run``). A job names the jobs whose products it needs (a search needs its trained base; a run its base and its
search) and may carry inputs known when it was planned (``given``: hyperparameters already in the store). A
backend runs jobs, each once its dependencies are done, hands every job the products of its dependencies, and
yields ``(job, outcome)`` to the driver, which alone writes the store: no backend or worker touches SQLite.

Backends are registered in :data:`BACKENDS` (``inprocess``, ``processes``); a new one (Ray) is one more entry
that implements :meth:`Backend.run` on top of :func:`biastransfer.backends.jobs.execute_job`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from biastransfer.registry import Registry
from biastransfer.spec import RunSpec

JOB_KINDS = ("base", "hparams", "run")
"""Job kinds in priority order."""


@dataclass(frozen=True)
class Job:
    """One unit of work: ``kind`` in :data:`JOB_KINDS`, the spec it is for, a key unique within the study, the
    keys of the jobs that must finish first, and inputs known at planning time."""

    kind: str
    spec: RunSpec
    key: str
    needs: frozenset[str] = field(default_factory=frozenset)
    given: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Outcome:
    """What a finished job returns to the driver: its ``product`` (a base's info, the chosen hyperparameters, or
    a run's result, artifacts and provenance), its wall time and the trainings it ran."""

    product: Any
    seconds: float
    trainings: int


class JobFailedError(RuntimeError):
    """A job raised; the message names the job (the run, its log file) and the error."""


@dataclass(frozen=True)
class Resources:
    """Where a backend's workers compute: the device, the cache folder and the study's output folder (logs)."""

    device: torch.device
    cache_dir: Path
    out_dir: Path


class Backend:
    """Base class of registered backends."""

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""

    def __init__(self, resources: Resources, workers: int = 1) -> None:
        self.resources = resources
        self.workers = workers

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Run ``jobs`` (in priority order, dependencies first), yield each with its outcome as it finishes. A job
        that fails raises :class:`JobFailedError`; nothing more is started."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (called by the driver even when a job failed)."""


BACKENDS: Registry[type[Backend]] = Registry("backend")

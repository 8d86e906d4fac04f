"""Execution backends: what runs a study's jobs, and the jobs themselves.

A study needs three kinds of job: training a base (``base``), a hyperparameter search (``hparams``) and a run
(``run``). A job names the jobs whose products it needs (a search needs its trained base; a run its base and its
search) and may carry inputs known when it was planned (``given``: hyperparameters already in the store). A
backend runs jobs, each once its dependencies are done, hands every job the products of its dependencies, and
yields ``(job, outcome)`` to the driver, which alone writes the store: no backend or worker touches SQLite.

Backends are registered in :data:`BACKENDS` (``inprocess``, ``processes``, ``ray``); a new one is one more entry
that implements :meth:`Backend.run` on top of :func:`biastransfer.backends.jobs.execute_job`.

The local backends stop at the first failing job (they raise :class:`JobFailedError`). A backend whose jobs are
spread over machines (``ray``) instead reports a job that failed every try as an :class:`Outcome` with ``error``
set, and goes on with the jobs that do not need it; the driver records what finished and names every failure.
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
    error: str | None = None
    """Set when the job failed (every try, on a backend that retries): what failed, why, and where its log is.
    ``product`` is then ``None``."""


class JobFailedError(RuntimeError):
    """A job raised; the message names the job (the run, its log file) and the error."""


@dataclass(frozen=True)
class Resources:
    """Where a backend's workers compute: the device, the cache folder and the study's output folder (logs)."""

    device: torch.device
    cache_dir: Path
    out_dir: Path


@dataclass(frozen=True)
class BackendOptions:
    """What a study or the command line asks of a distributed backend (the ``execution`` section of a study;
    ``--address``, ``--cpus-per-task``, ``--gpus-per-task``, ``--max-retries``). Local backends use none of them.

    ``gpus_per_task`` ``None`` means: a quarter of a GPU per task when the device is CUDA, none on CPU.
    """

    address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float | None = None
    max_retries: int = 2

    def __post_init__(self) -> None:
        if not self.cpus_per_task > 0:
            raise ValueError(f"cpus per task must be positive, got {self.cpus_per_task}")
        if self.gpus_per_task is not None and not self.gpus_per_task >= 0:
            raise ValueError(f"gpus per task must be 0 or more, got {self.gpus_per_task}")
        if self.max_retries < 0:
            raise ValueError(f"max retries must be 0 or more, got {self.max_retries}")

    def gpus_for(self, device: torch.device) -> float:
        """The GPU share each task asks for on ``device``."""
        if self.gpus_per_task is not None:
            return self.gpus_per_task
        return DEFAULT_GPU_SHARE if device.type == "cuda" else 0.0


DEFAULT_GPU_SHARE = 0.25
"""A task's GPU share when a CUDA study does not set one: the models are small, so four tasks share a GPU."""


class Backend:
    """Base class of registered backends."""

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    auto_rank: ClassVar[int | None] = None
    """``--backend auto`` tries the backends that set it, lowest first, and takes the first that
    :meth:`suits_auto` (:func:`biastransfer.backends.auto_backend`); None: ``auto`` never picks it."""
    uses_address: ClassVar[bool] = False
    """It runs on the cluster at ``--address`` (:attr:`BackendOptions.address`); a backend that does not refuses
    an address."""

    @classmethod
    def suits_auto(cls, workers: int, options: BackendOptions) -> bool:
        """Whether ``--backend auto`` may pick it for ``workers`` workers and these options (default: always)."""
        return True

    threads: int | None = None
    """Torch threads per run where the backend sets them (None: the calling process's own count)."""

    def __init__(self, resources: Resources, workers: int = 1, options: BackendOptions | None = None) -> None:
        self.resources = resources
        self.workers = workers
        self.options = options or BackendOptions()

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Run ``jobs`` (in priority order, dependencies first), yield each with its outcome as it finishes. A job
        that fails raises :class:`JobFailedError` and nothing more is started, or (a backend that goes on) is
        yielded with :attr:`Outcome.error` set, as is every job that needs it."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (called by the driver even when a job failed)."""


BACKENDS: Registry[type[Backend]] = Registry("backend")

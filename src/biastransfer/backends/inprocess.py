"""The ``inprocess`` backend: every job in this process, one after the other, in priority order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from biastransfer.backends.base import BACKENDS, Backend, BackendOptions, Job, Outcome, Resources
from biastransfer.backends.jobs import execute_job
from biastransfer.backends.workspace import Workspace


@BACKENDS.register("inprocess")
class InProcess(Backend):
    """Runs jobs serially in the calling process (the default with one worker; what tests and debuggers use)."""

    description = "every job in this process, one after the other"
    auto_rank = 2  # --backend auto: the last resort (one worker, no cluster)

    def __init__(self, resources: Resources, workers: int = 1, options: BackendOptions | None = None) -> None:
        super().__init__(resources, 1, options)
        self.workspace = Workspace(resources)

    @property
    def threads(self) -> int:
        """The torch threads each run computes with (this process's; recorded in each run's provenance)."""
        return torch.get_num_threads()

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, Outcome]]:
        products: dict[str, Any] = {}
        dependencies = {need for job in jobs for need in job.needs}
        for job in jobs:
            outcome = execute_job(job, {k: products[k] for k in job.needs if k in products}, self.workspace)
            if job.key in dependencies:
                products[job.key] = outcome.product
            yield job, outcome

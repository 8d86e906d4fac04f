"""Execution backends (registry :data:`BACKENDS`): ``inprocess``, ``processes`` and ``ray``. Importing this
package registers all three; the ``ray`` backend imports Ray only when it is used (``pip install
'biastransfer[ray]'``)."""

from biastransfer.backends import inprocess, processes, ray_backend
from biastransfer.backends.base import (
    BACKENDS,
    JOB_KINDS,
    Backend,
    BackendOptions,
    Job,
    JobFailedError,
    Outcome,
    Resources,
)
from biastransfer.backends.ray_backend import BackendUnavailableError

__all__ = ["BACKENDS", "JOB_KINDS", "Backend", "BackendOptions", "BackendUnavailableError", "Job", "JobFailedError",
           "Outcome", "Resources", "inprocess", "processes", "ray_backend"]

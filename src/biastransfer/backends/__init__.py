"""Execution backends (registry :data:`BACKENDS`): ``inprocess`` and ``processes``. Importing this package
registers both."""

from biastransfer.backends import inprocess, processes
from biastransfer.backends.base import BACKENDS, JOB_KINDS, Backend, Job, JobFailedError, Outcome, Resources

__all__ = ["BACKENDS", "JOB_KINDS", "Backend", "Job", "JobFailedError", "Outcome", "Resources", "inprocess",
           "processes"]

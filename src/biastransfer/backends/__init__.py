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
           "Outcome", "Resources", "auto_backend", "check_address", "inprocess", "processes", "ray_backend"]


def auto_backend(workers: int, options: BackendOptions) -> str:
    """The backend ``--backend auto`` picks: of the registered backends with an :attr:`Backend.auto_rank`, lowest
    first, the first that :meth:`Backend.suits_auto` (``ray`` with an address, else ``processes`` with more than
    one worker, else ``inprocess``)."""
    ranked = sorted((cls.auto_rank, name) for name, cls in BACKENDS.items() if cls.auto_rank is not None)
    for _, name in ranked:
        if BACKENDS.get(name).suits_auto(workers, options):
            return name
    raise ValueError(f"no registered backend suits --backend auto with {workers} worker(s)"
                     f"{f' and --address {options.address}' if options.address else ''}")


def check_address(name: str, options: BackendOptions) -> None:
    """Refuse ``--address`` with a backend that runs on no cluster (:attr:`Backend.uses_address`)."""
    if options.address and not BACKENDS.get(name).uses_address:
        users = " or ".join(n for n, cls in BACKENDS.items() if cls.uses_address)
        raise ValueError(f"--address {options.address} names a Ray cluster: it needs --backend {users} (not {name})")

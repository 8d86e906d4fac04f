"""The driver: run a study's missing runs on a backend and write what they produce to the store.

The driver is the only writer of the store (DESIGN principle 2): a backend's workers return products and the
driver records them, one transaction per run. Every run's key says what it is, so a rerun skips the keys the
store has; a killed study loses at most the runs in flight.

* :mod:`~biastransfer.driver.study`: :func:`run_study` (the folder's lock, then the stages in order) and
  :func:`upgrade`;
* :mod:`~biastransfer.driver.stages`: the stages, each a function a test can call;
* :mod:`~biastransfer.driver.execute`: workers, the backend (one per study) and :func:`drive`, which hands it
  jobs and writes what comes back.

The read side (which stored runs are the current study's) is :func:`biastransfer.store.current.split_runs`,
re-exported here for the callers that import it from the driver.
"""

from biastransfer.driver.execute import backend_options, drive, make_backend, resolve_workers, study_backend
from biastransfer.driver.stages import (
    current_specs,
    data_fingerprints,
    other_data,
    record_roles,
    record_study,
    with_fingerprints,
)
from biastransfer.driver.study import StudySummary, run_study, upgrade
from biastransfer.store.current import split_runs

__all__ = ["StudySummary", "backend_options", "current_specs", "data_fingerprints", "drive", "make_backend",
           "other_data", "record_roles", "record_study", "resolve_workers", "run_study", "split_runs",
           "study_backend", "upgrade", "with_fingerprints"]

"""A study run as the sequence of its stages (:mod:`biastransfer.driver.stages`), in one locked folder, on one
backend for the whole study; and :func:`upgrade`, which makes a folder of release 0.1 usable."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from biastransfer.backends import BackendOptions, Resources
from biastransfer.backends.workspace import Workspace
from biastransfer.driver.execute import backend_options, drive, resolve_workers, study_backend
from biastransfer.driver.stages import (
    adopt_runs,
    announce,
    check_runs,
    fingerprint_data,
    note_threads,
    record_roles,
    record_study,
    replan,
    run_adaptive,
    select_runs,
    upgrade_layout,
    with_fingerprints,
)
from biastransfer.paths import default_cache_dir
from biastransfer.plan import Study
from biastransfer.store.lock import folder_lock
from biastransfer.store.sqlite import ResultStore


@dataclass
class StudySummary:
    total: int
    skipped: int
    ran: int
    trainings: int
    seconds: float
    reused: int = 0


def run_study(study: Study, out_dir: Path, *, device: torch.device, cache_dir: Path | None = None,
              quiet: bool = False, console: Console | None = None, max_runs: int | None = None,
              workers: int | str = 1, backend: str = "auto", wait: bool = False,
              options: BackendOptions | None = None) -> StudySummary:
    """Run every missing run of ``study`` into ``out_dir/results.db``; return what was done.

    Every trained base is trained once and every hyperparameter search runs once, before the runs that need them
    (:func:`biastransfer.plan.plan_jobs`); ``backend`` runs the jobs (``auto``: ``processes`` when ``workers`` >
    1; ``ray`` with a cluster ``options.address``), one backend for the whole study, adaptive rounds included;
    ``options`` are the backend's (default: the study's ``execution`` section, :func:`backend_options`).
    ``max_runs`` stops after that many new runs (for tests and partial runs); rerunning continues. The folder
    is locked while the study runs (:mod:`biastransfer.store.lock`): another run on it raises
    :class:`~biastransfer.store.lock.FolderBusyError`, or is waited for with ``wait``. The study is written to
    the store only once preflight has passed, so a study that fails it leaves a finished folder as it was.
    """
    if max_runs is not None and (isinstance(max_runs, bool) or max_runs < 1):
        raise ValueError(f"max_runs must be a positive number of runs, got {max_runs} (leave it out to run them all)")
    console = console or Console(stderr=True, quiet=quiet)
    with folder_lock(Path(out_dir), wait=wait,
                     on_wait=lambda holder: console.print(f"Waiting for {holder} to finish with {out_dir} …")):
        return _run_study(study, Path(out_dir), device=device, cache_dir=cache_dir, quiet=quiet, console=console,
                          max_runs=max_runs, workers=workers, backend=backend,
                          options=options or backend_options(study))


def _run_study(study: Study, out_dir: Path, *, device: torch.device, cache_dir: Path | None, quiet: bool,
               console: Console, max_runs: int | None, workers: int | str, backend: str,
               options: BackendOptions) -> StudySummary:
    t0 = time.perf_counter()
    n_workers = resolve_workers(workers, device)
    resources = Resources(device=device, cache_dir=Path(cache_dir or default_cache_dir()).absolute(),
                          out_dir=out_dir.absolute())
    store = ResultStore(out_dir)
    try:
        upgrade_layout(store)
        local = Workspace(resources)  # the driver's own: preflight and roles (datasets only, no training)
        specs = study.expand()
        fingerprints = fingerprint_data(store, specs, local, console)
        record_roles(store, study, local, specs)
        specs = with_fingerprints(specs, fingerprints)
        selection = select_runs(store, study, specs, max_runs)
        if selection.nothing_to_do:
            record_study(store, study, specs, fingerprints)
            console.print(f"[green]Nothing to run:[/] all {len(specs)} runs of {study.name!r} are in {store.path}")
            return StudySummary(len(specs), len(specs), 0, 0, time.perf_counter() - t0)
        check_runs(selection, local)
        with study_backend(backend, resources, n_workers, options) as runner:
            record_study(store, study, specs, fingerprints)  # only now: a refused study leaves the stored one as it was
            note_threads(store, selection, runner.threads if device.type == "cpu" else None,
                         runner.workers, console)
            adopt_runs(store, selection)
            announce(console, study, selection, runner, device, max_runs)
            trainings = drive(store, runner, replan(store, selection.todo), console, quiet) if selection.todo else 0
            ran = len(selection.todo)
            r, t, a = run_adaptive(store, runner, selection, None if max_runs is None else max_runs - ran, console,
                                   quiet)
        summary = StudySummary(len(specs), len(selection.done), ran + r, trainings + t, time.perf_counter() - t0,
                               selection.adopted + a)
        store.set_meta("last_run", {"ran": summary.ran, "trainings": summary.trainings, "seconds": summary.seconds,
                                    "workers": runner.workers, "backend": runner.registry_name,
                                    "threads": runner.threads})
        return summary
    finally:
        store.close()


def upgrade(out_dir: Path, study: Study, *, cache_dir: Path | None = None) -> int:
    """Make a results folder of biastransfer 0.1 usable by this version: check every run's key (refusing the
    folder if one differs) and record the bases' roles of ``study`` (the one stored in the folder). Trains
    nothing; returns the number of runs checked."""
    store = ResultStore.open_existing(out_dir, check=False)
    try:
        checked = store.upgrade()
        resources = Resources(device=torch.device("cpu"), cache_dir=Path(cache_dir or default_cache_dir()),
                              out_dir=Path(out_dir))
        record_roles(store, study, Workspace(resources))
        return checked
    finally:
        store.close()

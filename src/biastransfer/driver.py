"""The driver: run a study's missing runs on a backend and write what they produce to the store.

The driver is the only writer of the store (DESIGN principle 2): a backend's workers return products and the
driver records them, one transaction per run. Every run's key says what it is, so a rerun skips the keys the
store has; a killed study loses at most the runs in flight.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from biastransfer.adaptive import adopt, search_block, stored_index
from biastransfer.backends import BACKENDS, JOB_KINDS, Backend, BackendOptions, JobFailedError, Resources
from biastransfer.backends.workspace import Workspace
from biastransfer.config import ConfigError
from biastransfer.paths import default_cache_dir
from biastransfer.plan import (
    Study,
    adaptive_kind,
    parse_study,
    plan_jobs,
    preflight,
    resolve_roles,
    search_record,
)
from biastransfer.spec import RunSpec
from biastransfer.store.lock import folder_lock
from biastransfer.store.sqlite import ResultStore

log = logging.getLogger("biastransfer")


@dataclass
class StudySummary:
    total: int
    skipped: int
    ran: int
    trainings: int
    seconds: float
    reused: int = 0


def resolve_workers(workers: int | str, device: torch.device) -> int:
    """``auto``: one single-threaded worker per core on CPU (small models scale better across processes than
    across threads), one process on CUDA."""
    if workers == "auto":
        return 1 if device.type != "cpu" else max(1, min(os.cpu_count() or 1, 8))
    try:
        n = int(workers)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"workers must be 'auto' or a positive integer, got {workers}")
    return n


def make_backend(name: str, resources: Resources, workers: int, options: BackendOptions | None = None) -> Backend:
    """``auto``: ``ray`` when a cluster address is given, else ``processes`` with more than one worker, else
    ``inprocess``; or a registered backend by name."""
    options = options or BackendOptions()
    if name == "auto":
        name = "ray" if options.address else "processes" if workers > 1 else "inprocess"
    elif options.address and name != "ray":
        raise ValueError(f"--address {options.address} names a Ray cluster: it needs --backend ray (not {name})")
    return BACKENDS.get(name)(resources, workers, options)


def backend_options(study: Study, *, address: str | None = None, cpus_per_task: float | None = None,
                    gpus_per_task: float | None = None, max_retries: int | None = None) -> BackendOptions:
    """The study's ``execution`` section with what the command line gives (``None``: not given) on top."""
    execution = study.config.execution
    return BackendOptions(
        address=address,
        cpus_per_task=execution.cpus_per_task if cpus_per_task is None else float(cpus_per_task),
        gpus_per_task=execution.gpus_per_task if gpus_per_task is None else float(gpus_per_task),
        max_retries=execution.max_retries if max_retries is None else int(max_retries))


def _canonical(dataset: Any) -> str:
    return json.dumps(dataset, sort_keys=True, default=str)


def data_fingerprints(specs: list[RunSpec], workspace: Workspace) -> dict[str, str]:
    """The content fingerprint of every dataset section the specs use (loading each once), by its canonical
    JSON."""
    out: dict[str, str] = {}
    for spec in specs:
        key = _canonical(spec.dataset)
        if key not in out:
            out[key] = workspace.dataset(spec).fingerprint
    return out


def with_fingerprints(specs: list[RunSpec], fingerprints: dict[str, str]) -> list[RunSpec]:
    """The specs with their dataset's fingerprint in ``data_fingerprint`` (and so in their run and search keys)."""
    return [spec.replace(data_fingerprint=fingerprints[_canonical(spec.dataset)]) for spec in specs]


def current_specs(study: Study, workspace: Workspace) -> list[RunSpec]:
    """The study's runs as they are keyed on the data as it is now."""
    specs = study.expand()
    return with_fingerprints(specs, data_fingerprints(specs, workspace))


def other_data(store: ResultStore, fingerprints: dict[str, str]) -> dict[str, set[str]]:
    """For each dataset section of the study whose stored runs were computed on other data (a changed dataset
    folder, edited labels, other generation parameters under the same name …): those runs' fingerprints. Their
    keys differ from the current runs' (the fingerprint is part of the key), so they are kept but never pooled."""
    out: dict[str, set[str]] = {}
    for key, fingerprint in fingerprints.items():
        stored = store.data_hashes_of(json.loads(key))  # runs on this section only, not other studies' datasets
        if stored - {fingerprint}:
            out[key] = stored - {fingerprint}
    return out


def record_roles(store: ResultStore, study: Study, workspace: Workspace, specs: list | None = None) -> dict[str, str]:
    """Load the study's dataset(s), resolve the bases' roles (the sensitive attribute of the dataset a base is
    used with decides derived ones) and keep them in the store, merged with those of earlier studies run into the
    same folder."""
    specs = study.expand() if specs is None else specs
    if not specs:
        return {}
    first: dict[str, Any] = {}
    sensitive: dict[str, str] = {}
    for spec in specs:
        key = _canonical(spec.dataset)
        if key not in first:
            first[key] = workspace.dataset(spec)
        sensitive.setdefault(spec.base_name, first[key].table.sensitive)
    sensitive[""] = next(iter(first.values())).table.sensitive
    roles = {**(store.get_meta("roles") or {}), **resolve_roles(study.config, sensitive)}
    store.set_meta("roles", roles)
    return roles


def run_study(study: Study, out_dir: Path, *, device: torch.device, cache_dir: Path | None = None,
              quiet: bool = False, console: Console | None = None, max_runs: int | None = None,
              workers: int | str = 1, backend: str = "auto", wait: bool = False,
              options: BackendOptions | None = None) -> StudySummary:
    """Run every missing run of ``study`` into ``out_dir/results.db``; return what was done.

    Every trained base is trained once and every hyperparameter search runs once, before the runs that need them
    (:func:`biastransfer.plan.plan_jobs`); ``backend`` runs the jobs (``auto``: ``processes`` when ``workers`` >
    1; ``ray`` with a cluster ``options.address``); ``options`` are the backend's (default: the study's
    ``execution`` section, :func:`backend_options`). ``max_runs`` stops after that many new runs (for tests and
    partial runs); rerunning continues. The folder
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
    store = ResultStore(out_dir)
    try:
        store.upgrade()
        resources = Resources(device=device, cache_dir=Path(cache_dir or default_cache_dir()).absolute(),
                              out_dir=out_dir.absolute())
        local = Workspace(resources)  # the driver's own: preflight and roles (datasets only, no training)
        specs = study.expand()
        fingerprints = data_fingerprints(specs, local)
        record_roles(store, study, local, specs)
        for key, old in other_data(store, fingerprints).items():
            console.print(f"[yellow]note:[/] runs in {store.path} on {json.loads(key).get('name')} were computed on "
                          f"other data (fingerprint {', '.join(sorted(old))}; now {fingerprints[key]}): they are kept, "
                          f"not part of the current study, and never pooled with its runs", highlight=False)
        specs = with_fingerprints(specs, fingerprints)
        done = store.done_keys()
        adaptive = {b.name: b for b in study.blocks if b.adaptive}
        searching = [s for s in specs if s.experiment in adaptive]
        todo = [s for s in specs if s.key not in done and s.experiment not in adaptive]
        if max_runs is not None:
            todo = todo[:max_runs]
        if not todo and not searching:
            _record_study(store, study, fingerprints)
            console.print(f"[green]Nothing to run:[/] all {len(specs)} runs of {study.name!r} are in {store.path}")
            return StudySummary(len(specs), len(specs), 0, 0, time.perf_counter() - t0)
        preflight(todo + searching, local.dataset)
        jobs = plan_jobs(todo, store.get_hparams)
        runners = [make_backend(backend, resources, n_workers, options)]
        try:
            _record_study(store, study, fingerprints)  # only now: a refused study leaves the stored one as it was
        except BaseException:
            runners[0].close()
            raise
        runner = runners[0]
        reused = adopt(store, todo, stored_index(store, adaptive_kind)) if todo else 0  # an adaptive block's runs
        if reused:
            todo = [s for s in todo if s.key not in store.done_keys()]
            jobs = plan_jobs(todo, store.get_hparams)
        console.print(f"Study {study.name!r}: {len(specs)} runs, {len(specs) - len(todo)} already done, "
                      f"{len(todo)} to run on {device} ({runner.workers} worker{'s' if runner.workers > 1 else ''}, "
                      f"backend {runner.registry_name})" if not searching else
                      f"Study {study.name!r}: {len(todo)} runs to run, then {len(adaptive)} adaptive block(s) "
                      f"searching up to {len(searching)} runs on {device} (backend {runner.registry_name})")

        def new_runner() -> Backend:
            return runners.pop() if runners else make_backend(backend, resources, n_workers, options)

        trainings = _drive(store, new_runner(), jobs, console, quiet) if todo else 0
        ran = len(todo)
        for block in adaptive.values():
            left = None if max_runs is None else max_runs - ran
            r, t, a = search_block(store, block, [s for s in searching if s.experiment == block.name], left,
                                   lambda room: _drive(store, new_runner(), plan_jobs(room, store.get_hparams), console,
                                                       quiet), console)
            ran, trainings, reused = ran + r, trainings + t, reused + a
        for unused in runners:
            unused.close()
        summary = StudySummary(len(specs), len(done & {s.key for s in specs}), ran, trainings,
                               time.perf_counter() - t0, reused)
        store.set_meta("last_run", {"ran": summary.ran, "trainings": summary.trainings, "seconds": summary.seconds,
                                    "workers": runner.workers, "backend": runner.registry_name})
        return summary
    finally:
        store.close()


def _record_study(store: ResultStore, study: Study, fingerprints: dict[str, str]) -> None:
    """Keep the study (and its text) in the store, with its datasets' fingerprints: what ``report`` describes,
    and what tells its runs from the folder's others (:func:`split_runs`)."""
    store.set_meta("study", study.config.model_dump(mode="json"))
    store.set_meta("data_fingerprints", fingerprints)
    if study.text is not None:
        store.set_meta("study_yaml", study.text)


def _drive(store: ResultStore, runner: Backend, jobs: list, console: Console, quiet: bool) -> int:
    """Run ``jobs`` on ``runner`` with a progress bar per job kind; write searches and runs as they finish. A job
    that failed (on a backend that goes on after failures) is named at the end, after every other job finished,
    in one :class:`JobFailedError`."""
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    labels = {"base": "training bases", "hparams": "hyperparameter search", "run": "runs"}
    trainings = 0
    failures: list[str] = []
    try:
        with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
            bars = {kind: progress.add_task(labels[kind], total=count)
                    for kind in JOB_KINDS if (count := sum(job.kind == kind for job in jobs))}
            for job, outcome in runner.run(jobs):
                trainings += outcome.trainings
                if outcome.error is not None:
                    failures.append(outcome.error)
                    console.print(f"[red]failed:[/] {outcome.error}", highlight=False)
                elif job.kind == "hparams":
                    store.put_hparams(job.key.removeprefix("hparams:"), search_record(job.spec), outcome.product)
                elif job.kind == "run":
                    p = outcome.product
                    store.add_run(job.spec.key, job.spec.to_dict(), p["result"], p["provenance"], p["artifacts"],
                                  outcome.seconds)
                progress.advance(bars[job.kind])
    finally:
        runner.close()
    if failures:
        more = f" ({len(failures) - 1} more job(s) failed or were not run; the other jobs finished and are stored)"
        raise JobFailedError(failures[0] + (more if len(failures) > 1 else ""))
    return trainings


def split_runs(store: ResultStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The folder's finished runs that belong to its current study (the one stored by the last ``run``: the runs
    of its expansion, on the data its datasets held then), and the others: runs of an earlier version of the
    study (another lr grid, other epochs …) or of its data (edited labels …), which must not be pooled with the
    current ones as extra seeds. Without a stored study, or when it no longer validates here (a checkpoint file
    moved …), every run counts as current. Reads the store only (no data is loaded)."""
    runs = store.runs()
    stored = store.get_meta("study")
    if not stored:
        return runs, []
    try:
        settings = {spec.key for spec in parse_study(stored, "the stored study").expand()}
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as exc:
        log.warning("cannot expand the stored study (%s); every run in %s is reported", exc, store.path)
        return runs, []
    fingerprints: dict[str, str] | None = store.get_meta("data_fingerprints")

    def current(run: dict[str, Any]) -> bool:
        try:
            spec = RunSpec.from_dict(run["spec"])
        except (TypeError, ValueError):
            return False
        if spec.setting_key() not in settings:
            return False
        if fingerprints is None:  # stored before the fingerprints were: one version of the data per folder
            return True
        ran_on = spec.data_fingerprint or run["provenance"].get("data_hash")
        return fingerprints.get(_canonical(spec.dataset)) == ran_on

    flags = [current(r) for r in runs]
    return [r for r, f in zip(runs, flags, strict=True) if f], [r for r, f in zip(runs, flags, strict=True) if not f]


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

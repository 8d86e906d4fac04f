"""The ``ray`` backend: every job a Ray task, on a local Ray instance or a cluster (``--address``).

**What it does.** Every job is submitted as soon as the jobs it needs are done (all ready jobs at once; Ray
queues what the cluster cannot start yet), with its resource request (``cpus_per_task`` CPUs and, on CUDA, a GPU
share) and the object references of its dependencies' results as arguments, which Ray resolves on the worker.
Results travel back to the driver through Ray's object store; the driver alone writes the store (DESIGN
principle 2). A job that raises or whose worker dies is tried again, up to ``max_retries`` more times (a raised
error by the driver, a dead worker by Ray); a job that fails every try is yielded with :attr:`Outcome.error`
(the error and its log file named) and the other jobs go on; the jobs that need it are reported as not run.

**What travels where.** Jobs and products are small (specs, hyperparameters, metrics). Decoded datasets and
trained bases do *not* travel through the object store: every worker process keeps a
:class:`~biastransfer.backends.workspace.Workspace` that loads them from the cache folder (``--cache-dir``),
where the first job to need a dataset decodes it and a base job saves its weights (atomic renames and file
locks make concurrent writers safe). On one machine that is automatic; on several, the cache and output folders
must be one shared file system at the same path on every node (see ``docs/scaling.md``); the backend checks
that every node sees them and warns otherwise.

**Pitfalls of Ray on small machines, handled here.**
- A local instance is started with ``address="local"`` (never silently joining another instance on the
  machine), ``--workers`` CPUs, workers at normal priority, no dashboard and a small object store
  (:func:`local_init_options`); when
  ``/dev/shm`` is too small for it Ray keeps objects in ``/tmp``, which is enough for our small products.
- Ray's memory monitor kills workers when the node runs low on memory; such a task is retried at most
  ``max_retries`` times (Ray's default is to retry forever), and the error says what happened and what to do.
- A task that asks for more than any node has would wait forever: the request is checked against the cluster's
  nodes before anything is submitted, and again whenever nothing finishes for a while (nodes can leave).
- A Ray worker may start in another working directory (a cluster's runtime environment): every task works in
  the driver's working directory when the node has it, so relative paths in a study mean the same everywhere.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from biastransfer.backends.base import BACKENDS, Backend, BackendOptions, Job, JobFailedError, Outcome, Resources
from biastransfer.backends.jobs import describe, execute_job
from biastransfer.backends.workspace import Workspace
from biastransfer.device import limit_gpu_memory

log = logging.getLogger("biastransfer")

RAY_MISSING = "the ray backend needs Ray, which the core install leaves out: pip install 'biastransfer[ray]'"

LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
"""Object store of a local instance: products are a few kB each, so a small store is plenty (Ray's default, 30%
of memory, is taken from ``/dev/shm`` and is what makes small containers fail)."""

STALL_CHECK_SECONDS = 60.0
"""How long the driver waits for a job to finish before it checks again that the cluster can run what is left."""

_WORKSPACES: dict[Resources, Workspace] = {}


class BackendUnavailableError(RuntimeError):
    """The backend cannot be used here (Ray not installed, no cluster at the address, a request no node meets)."""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`BackendUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError(RAY_MISSING) from exc
    return ray


def local_init_options(cpus: int, gpus: int, max_retries: int) -> dict[str, Any]:
    """``ray.init`` arguments for a local instance on this machine: ``cpus`` CPUs, ``gpus`` GPUs, a small object
    store, no dashboard, workers' output kept out of the terminal (each job has its log file), tasks killed by
    the memory monitor retried at most ``max_retries`` times, and workers at normal priority (Ray runs them at
    nice 15 by default, so any other load on the machine starves the study; measured: a 20 s test took 335 s
    beside another study)."""
    return {"address": "local", "num_cpus": cpus, "num_gpus": gpus, "include_dashboard": False,
            "log_to_driver": False, "logging_level": logging.ERROR, "object_store_memory": LOCAL_OBJECT_STORE_BYTES,
            "_system_config": {"task_oom_retries": max_retries, "worker_niceness": 0}}


def unmet_request(nodes: list[dict[str, Any]], cpus: float, gpus: float) -> str | None:
    """Why no alive node of the cluster (``ray.nodes()``) can run a task asking for ``cpus`` CPUs and ``gpus``
    GPUs, or ``None`` when one can."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", n.get("alive", True))]
    if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in alive):
        return None
    largest = max(alive, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
    return (f"every task asks for {cpus:g} CPU(s) and {gpus:g} GPU(s), but no node of the Ray cluster has that "
            f"much ({len(alive)} alive node(s); the largest has {largest.get('CPU', 0):g} CPU(s) and "
            f"{largest.get('GPU', 0):g} GPU(s)), so the tasks would wait forever. Lower --cpus-per-task or "
            f"--gpus-per-task (or the study's 'execution' section), or add nodes that have them")


def unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at a cluster ``address`` (``host:port`` or ``ray://host:port``), or ``None`` when
    something does (or the address is ``auto`` or ``local``, which Ray resolves itself). Ray's own connection
    attempt retries for minutes with a warning every few seconds before it gives up."""
    if address in ("auto", "local"):
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return f"--address {address!r} is not HOST:PORT or ray://HOST:PORT (or 'auto' for a cluster on this machine)"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return (f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with 'ray start --head' "
                f"on that machine, or check the address (docs/scaling.md)")


def _workspace(resources: Resources) -> Workspace:
    if resources not in _WORKSPACES:
        _WORKSPACES[resources] = Workspace(resources)
    return _WORKSPACES[resources]


def _execute(job: Job, resources: Resources, threads: int, gpu_share: float, cwd: str, need_keys: list[str],
             *needed: Outcome) -> Outcome:
    """The Ray task: run ``job`` in this worker with its dependencies' outcomes (resolved by Ray from object
    references, in the order of ``need_keys``). A job that raises comes back as an outcome with its error (the
    driver decides whether to try again), so Ray never prints a traceback of an expected error."""
    if cwd and os.path.isdir(cwd) and os.getcwd() != cwd:
        os.chdir(cwd)
    if resources.device.type == "cuda" and os.environ.get("CUDA_VISIBLE_DEVICES"):
        resources = dataclasses.replace(resources, device=torch.device("cuda"))  # the GPU Ray gave this task
    if 0 < gpu_share < 1:  # a fractional GPU: this worker may use that share of its memory
        limit_gpu_memory(resources.device, gpu_share)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        return execute_job(job, {k: o.product for k, o in zip(need_keys, needed, strict=True)},
                           _workspace(resources))
    except JobFailedError as exc:
        return Outcome(product=None, seconds=time.perf_counter() - started, trainings=0, error=str(exc))


def _probe(paths: list[str], token: str) -> tuple[str, list[str]]:
    """The Ray task that checks a node sees the driver's folders: the node's address and the folders it misses."""
    import ray

    missing = [p for p in paths if not (Path(p) / f".ray-probe-{token}").exists()]
    return ray.util.get_node_ip_address(), missing


def failure_message(job_text: str, exc: BaseException, ray: Any) -> str:
    """What a job that failed every try says: the job, the cause (the job's own error with its log file, a
    worker that died, the memory monitor …) and what to do."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, JobFailedError):
        return str(cause)
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return (f"{job_text} failed: Ray's memory monitor killed its worker every try because the node ran low on "
                f"memory; run fewer tasks per node (--workers for a local instance, or more --cpus-per-task) or "
                f"raise RAY_memory_usage_threshold")
    if isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return f"{job_text} failed: its Ray worker died on every try ({type(exc).__name__}: {exc})"
    text = str(cause if cause is not None else exc).strip().splitlines()
    return f"{job_text} failed: {type(exc).__name__}: {text[-1] if text else ''}"


@BACKENDS.register("ray")
class RayBackend(Backend):
    """Every job a Ray task on a local instance (``workers`` CPUs) or the cluster at ``options.address``."""

    description = "Ray tasks on a local instance or a cluster (--address); needs pip install 'biastransfer[ray]'"
    auto_rank = 0  # --backend auto: whenever a cluster address is given
    uses_address = True

    @classmethod
    def suits_auto(cls, workers: int, options: BackendOptions) -> bool:
        return bool(options.address)

    def __init__(self, resources: Resources, workers: int = 1, options: BackendOptions | None = None) -> None:
        super().__init__(resources, workers, options)
        self.ray = ray = import_ray()
        self.cpus = float(self.options.cpus_per_task)
        self.gpus = float(self.options.gpus_for(resources.device))
        self.threads = max(1, int(self.cpus))  # torch threads per task (each run's provenance)
        self.started = False
        if not ray.is_initialized():
            if self.options.address:
                problem = unreachable(self.options.address)
                if problem:
                    raise BackendUnavailableError(problem)
                try:
                    ray.init(address=self.options.address, log_to_driver=False, logging_level=logging.ERROR)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise BackendUnavailableError(
                        f"cannot connect to the Ray cluster at {self.options.address}: {exc}") from exc
            else:
                gpus = torch.cuda.device_count() if resources.device.type == "cuda" else 0
                ray.init(**local_init_options(workers, gpus, self.options.max_retries))
            self.started = True
        try:
            problem = unmet_request(ray.nodes(), self.cpus, self.gpus)
            if problem:
                raise BackendUnavailableError(problem)
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1) // max(self.cpus, 1e-9)))
            self._task = ray.remote(_execute)
            self._check_shared_folders()
        except BaseException:
            self.close()
            raise

    def _check_shared_folders(self) -> None:
        """Warn when a node of the cluster does not see the cache or output folder (bases would be retrained
        there and logs would stay there)."""
        ray = self.ray
        nodes = [n for n in ray.nodes() if n.get("Alive", True)]
        if len(nodes) < 2:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = secrets.token_hex(8)
        folders = [self.resources.cache_dir, self.resources.out_dir]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f".ray-probe-{token}").touch()
        try:
            probe = ray.remote(_probe)
            refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
                n["NodeID"], soft=False)).remote([str(f.resolve()) for f in folders], token) for n in nodes]
            for node, missing in ray.get(refs, timeout=120):
                if missing:
                    log.warning("Ray node %s does not see %s: datasets are decoded and bases trained again there, "
                                "and its job logs stay on it; put the cache and output folders on a file system "
                                "shared by every node (docs/scaling.md)", node, ", ".join(missing))
        finally:
            for folder in folders:
                (folder / f".ray-probe-{token}").unlink(missing_ok=True)

    def run(self, jobs: list[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Submit every job whose dependencies are done (all of them at once: Ray queues what the cluster cannot
        start yet), the earliest in ``jobs`` first, with its dependencies' results as object references; retry a
        job that failed; yield each job once, finished or failed."""
        ray = self.ray
        position = {job.key: i for i, job in enumerate(jobs)}
        by_key = {job.key: job for job in jobs}
        missing = {job.key: set(job.needs) & position.keys() for job in jobs}
        waiters: dict[str, list[str]] = {}
        for job in jobs:
            for need in missing[job.key]:
                waiters.setdefault(need, []).append(job.key)
        results: dict[str, Any] = {}  # finished job → the object reference of its outcome
        running: dict[Any, str] = {}
        tries: dict[str, int] = {}

        def submit(key: str) -> None:
            job = by_key[key]
            needs = sorted(k for k in job.needs if k in results)
            tries[key] = tries.get(key, 0) + 1
            ref = self._task.options(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.options.max_retries,
                                     retry_exceptions=False, name=key).remote(
                job, self.resources, self.threads, self.gpus, os.getcwd(), needs,
                *(results[k] for k in needs))
            running[ref] = key

        for key in sorted((k for k, m in missing.items() if not m), key=position.__getitem__):
            submit(key)
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=STALL_CHECK_SECONDS)
            if not done:
                self._check_still_runnable(list(running))
                continue
            key = running.pop(done[0])
            job = by_key[key]
            retry = True
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # its worker died on every one of Ray's tries (max_retries)
                outcome = Outcome(product=None, seconds=0.0, trainings=0,
                                  error=failure_message(describe(job), exc, ray))
                retry = False
            if outcome.error is not None and retry and tries[key] <= self.options.max_retries:
                log.warning("%s (try %d of %d; trying again)", outcome.error, tries[key],
                            self.options.max_retries + 1)
                submit(key)
                continue
            yield job, outcome
            if outcome.error is None:
                results[key] = done[0]
                for waiter in sorted(waiters.pop(key, []), key=position.__getitem__):
                    missing[waiter].discard(key)
                    if not missing[waiter]:
                        submit(waiter)
            else:
                yield from self._not_run(key, by_key, waiters, position)

    def _not_run(self, failed: str, by_key: dict[str, Job], waiters: dict[str, list[str]],
                 position: dict[str, int]) -> Iterator[tuple[Job, Outcome]]:
        """Every job that needs ``failed`` (directly or through another job), as failed without running."""
        seen: set[str] = set()
        frontier = [(failed, w) for w in waiters.pop(failed, [])]
        while frontier:
            cause, key = frontier.pop(0)
            if key in seen:
                continue
            seen.add(key)
            error = f"{describe(by_key[key])} was not run: it needs the {describe(by_key[cause])}, which failed"
            yield by_key[key], Outcome(product=None, seconds=0.0, trainings=0, error=error)
            frontier.extend((key, w) for w in sorted(waiters.pop(key, []), key=position.__getitem__))

    def _check_still_runnable(self, running: list[Any]) -> None:
        """Nothing finished for a while: stop with a message if no node can run the tasks any more."""
        problem = unmet_request(self.ray.nodes(), self.cpus, self.gpus)
        if problem:
            for ref in running:
                self.ray.cancel(ref, force=True)
            raise BackendUnavailableError(f"the cluster changed while the study ran: {problem}")

    def close(self) -> None:
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False

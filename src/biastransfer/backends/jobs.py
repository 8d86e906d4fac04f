"""What a worker does with one job: build its inputs from the spec and its dependencies' products, run it, and
return the outcome (never writing the store)."""

from __future__ import annotations

import logging
import platform
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from biastransfer import plugins  # noqa: F401  (a spawned worker needs every registry)
from biastransfer.backends.base import Job, JobFailedError, Outcome
from biastransfer.backends.workspace import Workspace
from biastransfer.experiments.base import get_experiment
from biastransfer.train import engine
from biastransfer.train.layout import memory_format_provenance
from biastransfer.versions import package_versions

log = logging.getLogger("biastransfer")


@contextmanager
def job_log(path: Path) -> Iterator[logging.Handler]:
    """Send this process's log records (INFO and up) to ``path`` while the job runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s pid %(process)d %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def describe(job: Job) -> str:
    """What a job is, in words (its log's first line and its error messages)."""
    spec = job.spec
    if job.kind == "base":
        return f"training base {spec.base_name!r} ({spec.base})"
    if job.kind == "hparams":
        return f"hyperparameter search for {spec.base_name} → {spec.task} (N={spec.n_train})"
    return f"run {spec.describe()}"


def execute_job(job: Job, products: dict[str, Any], workspace: Workspace) -> Outcome:
    """Run ``job`` in this process with the ``products`` of the jobs it needs (by job key)."""
    before = engine.TRAININGS.count
    started = time.perf_counter()
    spec = job.spec
    base_info = next((p for k, p in products.items() if k.startswith("base:")), None)
    hparams = next((p for k, p in products.items() if k.startswith("hparams:")), job.given.get("hparams"))
    log_path = workspace.resources.out_dir / "logs" / (
        f"{spec.key}.log" if job.kind == "run" else f"{job.kind}-{job.key.split(':', 1)[1]}.log")
    with job_log(log_path):
        log.info("%s", describe(job))
        try:
            if job.kind == "base":
                product: Any = workspace.base_info(spec)
            elif job.kind == "hparams":
                product = get_experiment(spec.kind).search(spec, workspace.inputs(spec, base_info=base_info))
                log.info("chosen: %s", {k: v for k, v in product.items() if k != "trials"})
            else:
                output = get_experiment(spec.kind).run(spec, workspace.inputs(spec, hparams, base_info))
                log.info("result: %s", output.result)
                product = {"result": output.result, "artifacts": output.artifacts,
                           "provenance": provenance(spec, workspace, base_info)}
        except Exception as exc:
            log.error("failed:\n%s", traceback.format_exc())
            raise JobFailedError(f"{describe(job)} failed: {exc} (log: {log_path})") from exc
    return Outcome(product=product, seconds=time.perf_counter() - started,
                   trainings=engine.TRAININGS.count - before)


def provenance(spec: Any, workspace: Workspace, base_info: dict[str, Any] | None) -> dict[str, Any]:
    """What a run records about how it was computed: seed, versions, data hash, device, threads, the CPU
    instruction set torch's kernels use (``cpu_capability``: e.g. AVX2 or AVX512; with the thread count it decides
    the float summation order, so bit-identical reruns need both equal), the memory layout the engine trained in
    and the rule that chose it (``memory_format``, ``memory_format_by``: :mod:`biastransfer.train.layout`),
    machine."""
    dataset = workspace.dataset(spec)
    return {"seed": spec.seed, "versions": package_versions(), "data_hash": dataset.fingerprint,
            "device": str(workspace.resources.device), "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            **memory_format_provenance(workspace.resources.device), "machine": platform.platform(),
            "spec": spec.to_dict(), "bases": {spec.base_name: base_info} if base_info else {}}

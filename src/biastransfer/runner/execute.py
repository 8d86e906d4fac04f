"""Run a study: expand it into RunSpecs, skip the keys the store has, run the rest, one transaction per run."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from biastransfer import plugins  # noqa: F401  (registers everything)
from biastransfer.config import StudyConfig
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.runner.context import RunContext, default_cache_dir
from biastransfer.runner.spec import RunSpec
from biastransfer.runner.store import ResultStore
from biastransfer.train import engine

log = logging.getLogger("biastransfer")


class RunFailedError(RuntimeError):
    """A run raised; the message names the run and its log file."""


def expand_study(study: StudyConfig) -> list[RunSpec]:
    """Every run of the study, in order, without duplicates."""
    specs: dict[str, RunSpec] = {}
    for block in study.experiments:
        for spec in EXPERIMENTS.get(block.kind)().expand(study, block):
            specs.setdefault(spec.key, spec)
    return list(specs.values())


@dataclass
class StudySummary:
    total: int
    skipped: int
    ran: int
    trainings: int
    seconds: float


@contextmanager
def _run_log(path: Path) -> Iterator[logging.Handler]:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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


def run_study(study: StudyConfig, out_dir: Path, *, device: torch.device, cache_dir: Path | None = None,
              study_text: str | None = None, quiet: bool = False, console: Console | None = None,
              max_runs: int | None = None) -> StudySummary:
    """Run every missing run of ``study`` into ``out_dir/results.db``; return what was done.

    ``max_runs`` stops after that many new runs (for tests and partial runs); rerunning continues.
    """
    console = console or Console(stderr=True, quiet=quiet)
    t0 = time.perf_counter()
    store = ResultStore(out_dir)
    store.set_meta("study", study.model_dump(mode="json"))
    if study_text is not None:
        store.set_meta("study_yaml", study_text)
    specs = expand_study(study)
    done = store.done_keys()
    todo = [s for s in specs if s.key not in done]
    if max_runs is not None:
        todo = todo[:max_runs]
    ctx = RunContext(store=store, device=device, cache_dir=Path(cache_dir or default_cache_dir()))
    trainings_before = engine.TRAININGS.count
    if not todo:
        console.print(f"[green]Nothing to run:[/] all {len(specs)} runs of {study.name!r} are in {store.path}")
        store.close()
        return StudySummary(len(specs), len(specs), 0, 0, time.perf_counter() - t0)
    console.print(f"Study {study.name!r}: {len(specs)} runs, {len(specs) - len(todo)} already done, "
                  f"{len(todo)} to run on {device}")
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=quiet, transient=False) as progress:
        bar = progress.add_task("runs", total=len(todo))
        for spec in todo:
            progress.update(bar, description=spec.describe()[:60])
            log_path = Path(out_dir) / "logs" / f"{spec.key}.log"
            with _run_log(log_path):
                log.info("run %s: %s", spec.key, spec.describe())
                started = time.perf_counter()
                try:
                    output = EXPERIMENTS.get(spec.kind)().run(spec, ctx)
                except Exception as exc:
                    log.error("run failed:\n%s", traceback.format_exc())
                    store.close()
                    raise RunFailedError(f"run {spec.describe()} failed: {exc} (log: {log_path})") from exc
                seconds = time.perf_counter() - started
                log.info("result: %s", output.result)
            store.add_run(spec.key, spec.to_dict(), output.result, ctx.provenance(spec, {
                "bases": ctx.base_infos}), output.artifacts, seconds)
            progress.advance(bar)
    summary = StudySummary(len(specs), len(specs) - len(todo), len(todo),
                           engine.TRAININGS.count - trainings_before, time.perf_counter() - t0)
    store.set_meta("last_run", {"ran": summary.ran, "trainings": summary.trainings, "seconds": summary.seconds})
    store.close()
    return summary

"""The ``biastransfer`` command line."""

from __future__ import annotations

import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.table import Table
from rich.text import Text

from biastransfer.cli.console import err, out
from biastransfer.cli.console import fail as _fail
from biastransfer.cli.errors import folder_errors
from biastransfer.cli.reporting import write_report as _report

app = typer.Typer(
    help="Does the bias of a pretrained vision model carry over into the finetuned model, and which finetuning "
    "data overwrites it? Run studies, audit predictions, and read the report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (results.db, logs/, report.html).")]
Device = Annotated[str, typer.Option(help="Device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")]
CacheDir = Annotated[Path | None, typer.Option(
    help="Where generated data, decoded images and trained bases are cached "
         "(default: $BIASTRANSFER_CACHE or ~/.cache/biastransfer).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; only errors.")]
Workers = Annotated[str, typer.Option(
    help="Parallel worker processes: 'auto' (one single-threaded worker per CPU core, 1 on CUDA) or a number; "
         "1 runs everything in this process.")]
BackendOpt = Annotated[str, typer.Option(
    "--backend", help="Execution backend: auto (ray with --address, else processes with several workers, else "
                      "inprocess), inprocess, processes or ray (a local Ray instance of --workers CPUs, or the "
                      "cluster at --address; needs pip install 'biastransfer\\[ray]'; see docs/scaling.md).")]
Address = Annotated[str | None, typer.Option(
    "--address", help="Address of a running Ray cluster (e.g. ray://head:10001 or head:6379); implies --backend ray.")]
CpusPerTask = Annotated[float | None, typer.Option(
    "--cpus-per-task", min=0.01, help="Ray: CPUs each job asks for (default: the study's execution.cpus_per_task, 1).")]
GpusPerTask = Annotated[float | None, typer.Option(
    "--gpus-per-task", min=0.0,
    help="Ray: GPU share each job asks for (default: the study's execution.gpus_per_task; 0.25 on CUDA, 0 on CPU).")]
MaxRetries = Annotated[int | None, typer.Option(
    "--max-retries", min=0, help="Ray: tries after the first for a job that fails or whose worker dies (default 2).")]


def _study_file(study: str | Path) -> Path:
    """A study argument as a file: a path, or the name of a bundled study; a clear error otherwise."""
    from biastransfer.studies import bundled, resolve

    path = resolve(study)
    if path is None:
        names = ", ".join(s.stem for s in bundled())
        _fail(f"study file not found: {study}, and no bundled study has that name (bundled: {names}; see "
              "'biastransfer studies')")
    return path


def _load(study_path: Path, tiny: bool = False):
    from biastransfer.config import ConfigError, read_yaml
    from biastransfer.plan import load_study, parse_study
    from biastransfer.tiny import shrink_study

    try:
        if not tiny:
            return load_study(study_path)
        data, _ = read_yaml(study_path)
        if not isinstance(data, dict):
            return parse_study(data, str(study_path))  # the usual error for a file that is not a mapping
        small = shrink_study(data)
        text = f"# --tiny version of {study_path.name} (biastransfer.tiny)\n" + yaml.safe_dump(
            small, sort_keys=False, allow_unicode=True)
        return parse_study(small, f"{study_path} (--tiny)", text)
    except ConfigError as exc:
        _fail(str(exc))


def _run_and_report(study_path: Path, out_dir: Path, device: str, cache_dir: Path | None, quiet: bool,
                    max_runs: int | None = None, report: bool = True, workers: str = "auto",
                    backend: str = "auto", tiny: bool = False, wait: bool = False,
                    execution: dict | None = None) -> None:
    import torch

    from biastransfer.backends import BackendUnavailableError, JobFailedError
    from biastransfer.data.table import DataError
    from biastransfer.device import resolve_device
    from biastransfer.driver import backend_options, run_study
    from biastransfer.registry import UnknownNameError
    from biastransfer.store.sqlite import StoreLayoutError

    study = _load(study_path, tiny)
    try:
        dev = resolve_device(device)
    except ValueError as exc:
        if not (execution or {}).get("address") or not device.startswith("cuda"):
            _fail(str(exc))
        dev = torch.device(device)  # a cluster's GPUs: the driver itself trains nothing

    try:
        with folder_errors(out_dir):  # a read-only or full disk, a name too long, a damaged store: named
            options = backend_options(study, **(execution or {}))
            summary = run_study(study, out_dir, device=dev, cache_dir=cache_dir, quiet=quiet, max_runs=max_runs,
                                workers=workers, backend=backend, wait=wait, options=options)
    except StoreLayoutError as exc:
        _fail(str(exc))
    except (DataError, JobFailedError, UnknownNameError, ValueError, FileNotFoundError,
            BackendUnavailableError) as exc:
        _fail(str(exc), 1)
    if not quiet and summary.ran:
        err.print(f"Ran {summary.ran} runs in {summary.seconds:.0f} s: {summary.trainings} trainings incl. bases and "
                  f"hyperparameter search; results in {out_dir / 'results.db'}")
    if report and (max_runs is None):
        with folder_errors(out_dir):
            _report(out_dir, quiet)


def _execution(address: str | None, cpus: float | None, gpus: float | None, retries: int | None) -> dict:
    """The command line's backend options (``None``: take the study's)."""
    return {"address": address, "cpus_per_task": cpus, "gpus_per_task": gpus, "max_retries": retries}


@app.command()
def demo(
    out_dir: OutDir = Path("demo-out"),
    device: Device = "auto",
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
    tiny: Annotated[bool, typer.Option(help="A much smaller version of the demo (a minute; for smoke tests).")]
    = False,
    workers: Workers = "auto",
    backend: BackendOpt = "auto",
    address: Address = None,
    cpus_per_task: CpusPerTask = None,
    gpus_per_task: GpusPerTask = None,
    max_retries: MaxRetries = None,
) -> None:
    """Run the bundled demo study on the built-in benchmark and write DIR/report.html.

    The demo tests the paper's two findings on the synthetic benchmark, 5 seeds each, with paired intervals:
    does a biased ("gendered") base pass its bias to the finetuned model, and which finetuning correlation level
    removes it without losing AUC (non-inferiority within 0.01)? The report opens with the verdict. It takes
    about 8 minutes on 2 CPU cores from an empty cache; rerunning only runs what is missing.
    """
    name = "demo_tiny.yaml" if tiny else "demo.yaml"
    with resources.as_file(resources.files("biastransfer.studies") / name) as path:
        _run_and_report(path, out_dir, device, cache_dir, quiet, workers=workers, backend=backend,
                        execution=_execution(address, cpus_per_task, gpus_per_task, max_retries))


Wait = Annotated[bool, typer.Option(
    "--wait", help="If another run holds the output folder, wait for it to finish instead of stopping.")]
Tiny = Annotated[bool, typer.Option(
    "--tiny", help="A smoke run of the study: every block at a few seconds' size (16×16 images, 2 seeds, N ≤ 64, "
                   "2 epochs; about a minute or two on 2 CPU cores). Its numbers are not evidence of anything.")]


@app.command()
def run(
    study: Annotated[str, typer.Argument(help="A study YAML file (see docs/studies.md), or the name of a bundled "
                                              "study (see 'biastransfer studies').")],
    out_dir: OutDir,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
    max_runs: Annotated[int | None, typer.Option(min=1, help="Stop after this many new runs (rerun to continue).")]
    = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write report.html at the end.")] = False,
    workers: Workers = "auto",
    backend: BackendOpt = "auto",
    tiny: Tiny = False,
    wait: Wait = False,
    address: Address = None,
    cpus_per_task: CpusPerTask = None,
    gpus_per_task: GpusPerTask = None,
    max_retries: MaxRetries = None,
) -> None:
    """Run a study: every run missing from DIR/results.db is run, then the report is written.

    Each run is keyed by a hash of its full specification; a finished folder runs nothing, and a study
    stopped midway (even with SIGKILL) continues where it stopped without duplicating results. One study runs
    into a folder at a time: another 'run' on it is refused, naming the process that holds it (or waits, with
    --wait).
    """
    _run_and_report(_study_file(study), out_dir, device, cache_dir, quiet, max_runs, report=not no_report,
                    workers=workers, backend=backend, tiny=tiny, wait=wait,
                    execution=_execution(address, cpus_per_task, gpus_per_task, max_retries))


@app.command()
def studies() -> None:
    """List the bundled studies: name, estimated time on 2 CPU cores (from an empty cache), runs, and what each
    studies. Run one with 'biastransfer run NAME --out DIR' (add --tiny for a smoke run)."""
    from biastransfer.config import ConfigError
    from biastransfer.plan import parse_study, planned_trainings
    from biastransfer.studies import bundled

    table = Table("name", "time (2 cores)", "runs", "what it studies")
    for study in bundled():
        try:
            runs = str(planned_trainings(parse_study(yaml.safe_load(study.text), study.filename))["runs"])
        except ConfigError:
            runs = "?"
        minutes = study.estimated_minutes
        when = "—" if minutes is None else (f"≈{minutes:g} min" if minutes < 90 else f"≈{minutes / 60:.1f} h")
        table.add_row(study.stem, when, runs, study.description)
    out.print(table)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="A study's output folder (with results.db).")],
    quiet: Quiet = False,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for report.html and plots/ (default DIR; for results on read-only media).")]
    = None,
) -> None:
    """Write DIR/report.html (self-contained) and DIR/plots/*.png from the results in DIR.

    results.db is opened read-only: no run in it changes, and results on read-only media can be read (write
    the report elsewhere with -o)."""
    _report(out_dir, quiet, output)


@app.command()
def upgrade(
    out_dir: Annotated[Path, typer.Argument(help="A results folder written by biastransfer 0.1.")],
    cache_dir: CacheDir = None,
) -> None:
    """Make a results folder of biastransfer 0.1 usable: check every run's key and record the bases' roles.

    Trains nothing. A folder whose runs this version would key differently is refused (rerun the study into a
    new folder); 'run' does this check by itself before running anything.
    """
    from biastransfer.config import ConfigError
    from biastransfer.data.table import DataError
    from biastransfer.driver import upgrade as upgrade_store
    from biastransfer.plan import parse_study
    from biastransfer.store.sqlite import ResultStore, StoreLayoutError

    try:
        store = ResultStore.open_existing(out_dir, check=False)
    except FileNotFoundError as exc:
        _fail(str(exc))
    stored, text = store.get_meta("study"), store.get_meta("study_yaml")
    store.close()
    if not stored:
        _fail(f"{out_dir} holds no study; nothing to upgrade")
    try:  # the study file as written (0.1 stored its schema's dump too, with fields a kind no longer takes)
        data = yaml.safe_load(text) if text else stored
        checked = upgrade_store(out_dir, parse_study(data, f"the study stored in {out_dir}", text),
                                cache_dir=cache_dir)
    except (ConfigError, StoreLayoutError, DataError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    err.print(f"{out_dir}: {checked} runs checked; their keys are this version's, and the bases' roles are "
              "recorded. Nothing was retrained.")


@app.command("list")
def list_registries() -> None:
    """List every registry: experiments, datasets, interventions, training objectives, triggers, base kinds,
    architectures, transfer modes, checkpoint formats and backends."""
    from biastransfer import plugins  # noqa: F401
    from biastransfer.backends import BACKENDS
    from biastransfer.data.registry import DATASETS
    from biastransfer.experiments.base import EXPERIMENTS
    from biastransfer.interventions import INTERVENTIONS
    from biastransfer.models.architectures import ARCHITECTURES
    from biastransfer.models.bases import BASES
    from biastransfer.models.checkpoints import CHECKPOINT_FORMATS
    from biastransfer.models.transfer import TRANSFER_MODES
    from biastransfer.train.objectives import OBJECTIVES
    from biastransfer.triggers import TRIGGERS

    table = Table("registry", "name", "description")
    registries = (("experiment", EXPERIMENTS), ("dataset", DATASETS), ("intervention", INTERVENTIONS),
                  ("objective", OBJECTIVES), ("trigger", TRIGGERS), ("base kind", BASES),
                  ("architecture", ARCHITECTURES), ("transfer mode", TRANSFER_MODES),
                  ("checkpoint format", CHECKPOINT_FORMATS), ("backend", BACKENDS))
    for title, reg in registries:
        for name, obj in reg.items():
            doc = getattr(obj, "description", "") or (obj.__doc__ or "").strip().split("\n")[0]
            if title == "intervention":
                options = ", ".join(obj.option_names())
                doc += f" (pool columns: {', '.join(obj.columns)}" + (f"; options: {options})" if options else ")")
            elif title == "objective":
                options = ", ".join(obj.option_names())
                doc += f" (options: {options})" if options else ""
            elif title == "trigger":
                doc += f" (options: {', '.join(obj.option_names())})"
            table.add_row(title, name, Text(doc))  # plain text: 'biastransfer[ray]' is no markup
    out.print(table)


def _mount_subcommands() -> None:
    from biastransfer.cli.bases import bases_app
    from biastransfer.cli.evaluate import evaluate
    from biastransfer.cli.export import export
    from biastransfer.cli.recommend import recommend

    app.command("export")(export)
    app.command()(recommend)
    app.command("evaluate")(evaluate)
    app.add_typer(bases_app, name="bases", help="Off-the-shelf bases: list kinds and formats, check a checkpoint.")
    from biastransfer.cli.datasets import datasets_app

    app.add_typer(datasets_app, name="datasets", help="Datasets: list them, check a local copy.")


_mount_subcommands()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # per-run INFO logs go to DIR/logs/, not to the terminal
        handler.setLevel(logging.WARNING)
    app(prog_name="biastransfer")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

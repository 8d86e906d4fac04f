"""The ``biastransfer`` command line."""

from __future__ import annotations

import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Does the bias of a pretrained vision model carry over into the finetuned model, and which finetuning "
    "data overwrites it? Run studies, audit predictions, and read the report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output folder (results.db, logs/, report.html).")]
Device = Annotated[str, typer.Option(help="Device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")]
CacheDir = Annotated[Path | None, typer.Option(
    help="Where generated data, decoded images and trained bases are cached "
         "(default: $BIASTRANSFER_CACHE or ~/.cache/biastransfer).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; only errors.")]
Workers = Annotated[str, typer.Option(
    help="Parallel worker processes: 'auto' (one single-threaded worker per CPU core, 1 on CUDA) or a number; "
         "1 runs everything in this process.")]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _run_and_report(study_path: Path, out_dir: Path, device: str, cache_dir: Path | None, quiet: bool,
                    max_runs: int | None = None, report: bool = True, workers: str = "auto") -> None:
    from biastransfer.config import ConfigError, load_study
    from biastransfer.data.table import DataError
    from biastransfer.device import resolve_device
    from biastransfer.runner.execute import RunFailedError, run_study

    try:
        study = load_study(study_path)
        dev = resolve_device(device)
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    try:
        summary = run_study(study, out_dir, device=dev, cache_dir=cache_dir, study_text=study_path.read_text(),
                            quiet=quiet, max_runs=max_runs, workers=workers)
    except (DataError, RunFailedError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 1)
    if not quiet and summary.ran:
        from biastransfer.runner.protocol import original_protocol_trainings

        err.print(f"Ran {summary.ran} runs in {summary.seconds:.0f} s: {summary.trainings} trainings incl. bases and "
                  f"hyperparameter search (the original protocol would need {original_protocol_trainings(study)} "
                  f"for this grid); results in {out_dir / 'results.db'}")
    if report and (max_runs is None):
        _report(out_dir, quiet)


def _report(out_dir: Path, quiet: bool) -> Path:
    from biastransfer.report.html import build_report
    from biastransfer.runner.context import package_versions
    from biastransfer.runner.export import hparams_frame, runs_frame
    from biastransfer.runner.store import ResultStore

    try:
        store = ResultStore.open_existing(out_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    runs, hparams = runs_frame(store), hparams_frame(store)
    study = store.get_meta("study") or {}
    last = store.get_meta("last_run") or {}
    provenance = {"versions": package_versions(), "study_yaml": store.get_meta("study_yaml", ""),
                  "data_hash": sorted({r["provenance"].get("data_hash", "") for r in store.runs()}),
                  "seeds": sorted(set(runs["seed"].tolist())), "last_run": last}
    store.close()
    if runs.empty:
        _fail(f"no finished runs in {out_dir}; nothing to report")
    path = build_report(runs, out_dir, title=f"biastransfer report: {study.get('name', out_dir.name)}",
                        hparams=hparams, provenance=provenance)
    if not quiet:
        err.print(f"Report: {path}")
    return path


@app.command()
def demo(
    out_dir: OutDir = Path("demo-out"),
    device: Device = "auto",
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
    tiny: Annotated[bool, typer.Option(help="A much smaller version of the demo (a minute; for smoke tests).")]
    = False,
    workers: Workers = "auto",
) -> None:
    """Run the bundled demo study on the built-in benchmark and write DIR/report.html.

    The demo shows the paper's two findings on the synthetic benchmark: a biased ("gendered") base passes its
    bias to the finetuned model, and changing the finetuning set's correlation level removes most of it with
    little loss of AUC. About 10 minutes on 2 CPU cores; rerunning only runs what is missing.
    """
    name = "demo_tiny.yaml" if tiny else "demo.yaml"
    with resources.as_file(resources.files("biastransfer.studies") / name) as path:
        _run_and_report(path, out_dir, device, cache_dir, quiet, workers=workers)


@app.command()
def run(
    study: Annotated[Path, typer.Argument(help="A study YAML file (see docs/studies.md).")],
    out_dir: OutDir,
    device: Device = "auto",
    cache_dir: CacheDir = None,
    quiet: Quiet = False,
    max_runs: Annotated[int | None, typer.Option(help="Stop after this many new runs (rerun to continue).")]
    = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Do not write report.html at the end.")] = False,
    workers: Workers = "auto",
) -> None:
    """Run a study: every run missing from DIR/results.db is run, then the report is written.

    Each run is keyed by a hash of its full specification; a finished folder runs nothing, and a study
    stopped midway (even with SIGKILL) continues where it stopped without duplicating results.
    """
    _run_and_report(study, out_dir, device, cache_dir, quiet, max_runs, report=not no_report, workers=workers)


@app.command()
def report(
    out_dir: Annotated[Path, typer.Argument(help="A study's output folder (with results.db).")],
    quiet: Quiet = False,
) -> None:
    """Write DIR/report.html (self-contained) and DIR/plots/*.png from the results in DIR."""
    _report(out_dir, quiet)


@app.command()
def export(
    out_dir: Annotated[Path, typer.Argument(help="A study's output folder (with results.db).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv or parquet.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default DIR/runs.FMT).")]
    = None,
) -> None:
    """Export one tidy row per run (experiment, task, base, intervention, level, seed, metrics, ...)."""
    from biastransfer.runner.export import runs_frame
    from biastransfer.runner.store import ResultStore

    if fmt not in ("csv", "parquet"):
        _fail(f"--format must be 'csv' or 'parquet', got {fmt!r}")
    try:
        store = ResultStore.open_existing(out_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    frame = runs_frame(store)
    store.close()
    target = output or out_dir / f"runs.{fmt}"
    if fmt == "csv":
        frame.to_csv(target, index=False)
    else:
        frame.to_parquet(target, index=False)
    err.print(f"Wrote {len(frame)} runs to {target}")


@app.command("list")
def list_registries() -> None:
    """List the registered experiments, datasets, interventions, base kinds, architectures and transfer modes."""
    from biastransfer import plugins  # noqa: F401
    from biastransfer.data.registry import DATASETS
    from biastransfer.experiments.base import EXPERIMENTS
    from biastransfer.interventions import INTERVENTIONS
    from biastransfer.models.architectures import ARCHITECTURES
    from biastransfer.models.bases import BASES
    from biastransfer.models.transfer import TRANSFER_MODES

    table = Table("registry", "name", "description")
    for title, reg in (("experiment", EXPERIMENTS), ("dataset", DATASETS), ("intervention", INTERVENTIONS),
                       ("base kind", BASES), ("architecture", ARCHITECTURES), ("transfer mode", TRANSFER_MODES)):
        for name, obj in reg.items():
            doc = getattr(obj, "description", "") or (obj.__doc__ or "").strip().split("\n")[0]
            table.add_row(title, name, doc)
    out.print(table)


def _mount_subcommands() -> None:
    from biastransfer.cli_bases import bases_app
    from biastransfer.cli_evaluate import evaluate

    app.command("evaluate")(evaluate)
    app.add_typer(bases_app, name="bases", help="Off-the-shelf bases: list kinds and formats, check a checkpoint.")
    try:
        from biastransfer.cli_datasets import datasets_app
    except ImportError:  # pragma: no cover
        return
    app.add_typer(datasets_app, name="datasets", help="Datasets: list them, check a local copy.")


_mount_subcommands()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # per-run INFO logs go to DIR/logs/, not to the terminal
        handler.setLevel(logging.WARNING)
    app(prog_name="biastransfer")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

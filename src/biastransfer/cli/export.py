"""``biastransfer export`` (registered by cli/__init__.py), and reading a results folder for it and ``report``:
the store opened read-only, the runs left out named."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biastransfer.cli.console import err
from biastransfer.cli.console import fail as _fail


def open_store(out_dir: Path):
    """The folder's store, read-only (report and export write nothing to it; results on read-only media can be
    read)."""
    from biastransfer.store.sqlite import ResultStore, StoreLayoutError

    try:
        return ResultStore.open_existing(out_dir, read_only=True)
    except (FileNotFoundError, StoreLayoutError) as exc:
        _fail(str(exc))


def left_out(others: list[dict], study: str) -> str:
    """What a report or export says of the folder's runs that are not part of its current study."""
    blocks = sorted({str(r["spec"].get("experiment", "?")) for r in others})
    return (f"{len(others)} run(s) in this folder are not part of the current study {study!r} (an earlier version "
            f"of it or of its data, blocks {', '.join(blocks)}): they are kept in results.db but left out, never "
            f"pooled with the current runs (export --all includes them)")


def export(
    out_dir: Annotated[Path, typer.Argument(help="A study's output folder (with results.db).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, parquet, model-card (JSON: metrics per setting "
                                                          "and group with Student-t 95% intervals over seeds, in "
                                                          "the Model Card Toolkit's quantitative_analysis shape, "
                                                          "with thresholds and provenance) or model-card-mct (the "
                                                          "same metrics as MCT's schema v0.0.2 types them, which "
                                                          "its ModelCard.from_json loads).")]
    = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default DIR/runs.FMT, "
                                                                       "DIR/model_card.json, "
                                                                       "DIR/model_card.mct.json).")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Also the runs that are not part of the folder's current "
                                                         "study (earlier versions of it).")] = False,
) -> None:
    """Export one tidy row per run of the folder's current study (experiment, task, base, intervention, level,
    seed, metrics, ...), or its model card (--format model-card: per setting and group, the mean over seeds with
    a Student-t 95% interval, thresholds and provenance; --format model-card-mct: the same metrics in the Model
    Card Toolkit's schema v0.0.2; docs/metrics.md).

    results.db is opened read-only: no run in it changes, and results on read-only media can be read (write
    the table elsewhere with -o)."""
    from biastransfer.store.current import split_runs
    from biastransfer.store.export import runs_frame

    if fmt not in ("csv", "parquet", "model-card", "model-card-mct"):
        _fail(f"--format must be 'csv', 'parquet', 'model-card' or 'model-card-mct', got {fmt!r}")
    store = open_store(out_dir)
    current, others = split_runs(store)
    if fmt.startswith("model-card"):
        mct = fmt == "model-card-mct"
        name = "model_card.mct.json" if mct else "model_card.json"
        _export_card(store, current + others if all_runs else current, [] if all_runs else others,
                     output or out_dir / name, out_dir, name=name, mct=mct)
        return
    frame = runs_frame(store, current + others if all_runs else current)
    if others and not all_runs:
        err.print(f"[yellow]note:[/] {left_out(others, (store.get_meta('study') or {}).get('name', '?'))}")
    store.close()
    target = output or out_dir / f"runs.{fmt}"
    if target.is_dir():
        _fail(f"-o {target} is a folder: give a file to write, e.g. {target / f'runs.{fmt}'}")
    try:
        if fmt == "csv":
            frame.to_csv(target, index=False)
        else:
            frame.to_parquet(target, index=False)
    except OSError as exc:
        _fail(f"cannot write {target} ({exc.strerror or exc}): give a file in a writable folder with -o FILE")
    err.print(f"Wrote {len(frame)} runs to {target}")


def _export_card(store, runs: list[dict], others: list[dict], target: Path, out_dir: Path, *, name: str,
                 mct: bool) -> None:
    """Write the model card of ``runs`` to ``target`` (strict JSON: null for NaN), or with ``mct`` its form in
    MCT's schema v0.0.2 (:func:`~biastransfer.store.model_card.to_mct`); ``name`` is the default file name, for
    the error when ``target`` is a folder. Closes ``store``."""
    import json

    from biastransfer.store.model_card import model_card, to_mct

    study = (store.get_meta("study") or {}).get("name", "?")
    if not runs:
        store.close()
        _fail(f"no finished runs of the current study in {out_dir}; no model card to write")
    try:
        card = model_card(store, runs, left_out=len(others))
    finally:
        store.close()
    if others:
        err.print(f"[yellow]note:[/] {left_out(others, study)}")
    if target.is_dir():
        _fail(f"-o {target} is a folder: give a file to write, e.g. {target / name}")
    written = to_mct(card) if mct else card
    try:
        target.write_text(json.dumps(written, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                          encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {target} ({exc.strerror or exc}): give a file in a writable folder with -o FILE")
    settings = card["biastransfer"]["settings"]
    err.print(f"Wrote the model card of {len(runs)} runs ({len(settings)} settings, "
              f"{len(written['quantitative_analysis']['performance_metrics'])} metrics) to {target}"
              + (" in MCT's schema v0.0.2 (per-run thresholds, notes on missing values and provenance are in "
                 "--format model-card only)" if mct else ""))

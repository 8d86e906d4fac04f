"""``biastransfer evaluate``: audit any model's predictions CSV (registered by cli.py)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from biastransfer.metrics.audit import AuditError, PredictionTable, audit_table, load_predictions, to_json
from biastransfer.metrics.threshold import ThresholdPolicy, parse_threshold_policy


def _fmt(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.3f}"


def _signed(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:+.3f}"


def _group_table(result: dict[str, Any]) -> Table:
    table = Table(title="Per-group rates at the threshold")
    for header in ("group", "a", "count", "positives", "negatives", "FPR", "TPR", "AUC"):
        table.add_column(header, justify="left" if header == "group" else "right")
    for name, g in result["groups"].items():
        table.add_row(name, str(g["group"]), str(g["count"]), str(g["positives"]), str(g["negatives"]),
                      _fmt(g["fpr"]), _fmt(g["tpr"]), _fmt(g["auc"]))
    return table


def _print_human(console: Console, result: dict[str, Any]) -> None:
    label = result["gap_label"]
    calib = f"calibrated on {result['calibration_rows']} rows" if result["calibration_rows"] else "fixed"
    console.print(f"Audit of {result['source']}: {result['n']} rows evaluated ({result['evaluated_rows']})",
                  markup=False, soft_wrap=True)
    console.print(_group_table(result))
    lines = [
        ("AUC", _fmt(result["auc"])),
        ("threshold", f"{result['threshold']:.4g} (policy {result['threshold_policy']}, {calib})"),
        (f"FPR diff ({label})", _signed(result["fpr_diff"])),
        (f"TPR diff ({label})", _signed(result["tpr_diff"])),
        ("EO diff (max of |FPR diff|, |TPR diff|)", _fmt(result["eo_diff"])),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        console.print(f"{name.ljust(width)}  {value}", markup=False, highlight=False, soft_wrap=True)


def _choose_policy(
    threshold: str | None, table: PredictionTable, split_column: str, err: Console
) -> ThresholdPolicy:
    """The parsed --threshold, or by default 'val' when there are val rows and 'test' otherwise."""
    if threshold is not None:
        return parse_threshold_policy(threshold)
    if table.has_val_rows:
        return ThresholdPolicy("val")
    err.print(f"note: no rows with {split_column} == 'val'; calibrating the threshold on the evaluated "
              "rows (--threshold test)", style="yellow", markup=False, soft_wrap=True)
    return ThresholdPolicy("test")


def evaluate(
    predictions: Annotated[Path, typer.Argument(help="CSV with one row per example.", show_default=False)],
    label: Annotated[str, typer.Option("--label", help="Column with the true 0/1 label.")],
    score: Annotated[str, typer.Option("--score", help="Column with the score (probability or logit).")],
    group: Annotated[str, typer.Option("--group", help="Column with the group: 0/1 or two values.")],
    threshold: Annotated[
        str | None,
        typer.Option(
            "--threshold",
            help="'val', 'val-unweighted', 'test' or a number. Default: val if there are val rows.",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print only JSON (NaN as null).")] = False,
    split_column: Annotated[str, typer.Option("--split-column", help="Split of each row.")] = "split",
) -> None:
    """Audit a model's predictions: AUC, per-group FPR/TPR and their gaps.

    Evaluated rows: split == 'test' if any, else rows not 'val', else all.
    Threshold: the top-k scores are positive, k = number of true positives;
    calibrated on the 'val' rows reweighted to the evaluated rows' (group,
    label) proportions (val), on the 'val' rows as they are (val-unweighted)
    or on the evaluated rows (test),
    or a fixed number (scores may be probabilities or logits).
    Gaps are signed, second group minus first: 0/1 codes in code order,
    other values sorted (e.g. "Women − Men").
    FPR diff = FPR(a=1) − FPR(a=0); TPR diff = TPR(a=1) − TPR(a=0);
    EO diff = max(|FPR diff|, |TPR diff|).
    Undefined rates (e.g. a group without negatives) are NaN, null in
    --json, and reported as warnings on stderr. Errors exit with code 2.
    """
    out, err = Console(), Console(stderr=True)
    try:
        table = load_predictions(predictions, label, score, group, split_column)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            policy = _choose_policy(threshold, table, split_column, err)
            result = audit_table(table, policy, split_column)
    except (AuditError, ValueError) as exc:
        err.print(Text(f"error: {exc}", style="bold red"), soft_wrap=True)
        raise typer.Exit(2) from None
    result["warnings"] = [str(w.message) for w in caught]
    for message in result["warnings"]:
        err.print(Text(f"warning: {message}", style="yellow"), soft_wrap=True)
    if json_out:
        typer.echo(to_json(result))
    else:
        _print_human(out, result)

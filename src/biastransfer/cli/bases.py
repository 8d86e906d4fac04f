"""``biastransfer bases …``: list what bases can be built from, and check a checkpoint file's key coverage.

Mounted by the main CLI with ``app.add_typer(bases_app, name="bases")``.

``bases list``
    Tables of the registered base kinds, checkpoint formats, architectures and transfer modes.
``bases check --format FORMAT --path FILE [--arch ARCH]``
    Reads FILE as FORMAT and compares it with a fresh ARCH backbone (default: the format's ``default_arch``,
    resnet50 for the ResNet formats, vit_base_patch16_224 for ``timm_vit``, convnext_tiny for ``timm_convnext``):
    prints the matched / missing / unexpected counts and the keys. Exit 0 when every key is covered, 1 on a mismatch,
    2 when the file cannot be read or the format or architecture is unknown.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from biastransfer.models.architectures import ARCHITECTURES
from biastransfer.models.bases import BASES
from biastransfer.models.checkpoints import (
    CHECKPOINT_FORMATS,
    CheckpointReadError,
    CoverageReport,
    check_checkpoint,
    get_format,
)
from biastransfer.models.transfer import TRANSFER_MODES
from biastransfer.registry import UnknownNameError

bases_app = typer.Typer(
    name="bases",
    help="Off-the-shelf bases: list base kinds, checkpoint formats, architectures and transfer modes; "
    "check a checkpoint file's key coverage.",
    no_args_is_help=True,
    add_completion=False,
)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def _table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("name", no_wrap=True, style="cyan")
    table.add_column("description", overflow="fold")
    for name, desc in rows:
        table.add_row(name, desc)
    if not rows:
        table.add_row("(none registered)", "")
    return table


@bases_app.command("list")
def list_bases() -> None:
    """List base kinds, checkpoint formats, architectures and transfer modes."""
    console = Console(highlight=False)
    console.print(
        _table(
            "Base kinds", [(name, cls.description or _first_line(cls.__doc__)) for name, cls in BASES.items()]
        )
    )
    console.print(
        _table(
            "Checkpoint formats (--format)",
            [(name, cls.description or _first_line(cls.__doc__)) for name, cls in CHECKPOINT_FORMATS.items()],
        )
    )
    console.print(
        _table(
            "Architectures (--arch)",
            [(name, _first_line(factory.__doc__)) for name, factory in ARCHITECTURES.items()],
        )
    )
    console.print(
        _table(
            "Transfer modes",
            [(name, cls.description or _first_line(cls.__doc__)) for name, cls in TRANSFER_MODES.items()],
        )
    )


def _dropped_groups(fmt: str, dropped: list[str]) -> list[tuple[str, int]]:
    """Dropped keys summarised by the format's drop prefix, e.g. ``module.predictor.*``: 11."""
    converter = get_format(fmt)
    counts: dict[str, int] = {}
    for key in dropped:
        lead = "module." if key.startswith("module.") else ""
        name = key[len(lead) :]
        prefix = next((p for p in converter.drop_prefixes if name.startswith(p)), name)
        group = f"{lead}{prefix}*"
        counts[group] = counts.get(group, 0) + 1
    return list(counts.items())


def _print_report(console: Console, report: CoverageReport, show_matched: bool) -> None:
    console.print(
        f"[bold]{escape(report.path)}[/bold] as [cyan]{report.fmt}[/cyan] against [cyan]{report.arch}[/cyan]"
    )
    counts = Table(show_header=False, box=None, padding=(0, 2))
    counts.add_column(justify="left")
    counts.add_column(justify="right")
    for label, n in [
        ("matched", len(report.matched)),
        ("missing", len(report.missing)),
        ("unexpected", len(report.unexpected)),
        ("unrecognized", len(report.unrecognized)),
        ("shape mismatch", len(report.shape_mismatch)),
        ("dropped (heads)", len(report.dropped)),
        ("filled num_batches_tracked", len(report.filled)),
    ]:
        counts.add_row(label, str(n))
    console.print(counts)

    def keys(title: str, items: list[str], style: str, count: int | None = None) -> None:
        if items:
            console.print(f"[{style}]{title} ({len(items) if count is None else count}):[/{style}]")
            for item in items:
                console.print(f"  {item}", markup=False, soft_wrap=True)

    keys("missing from the file", report.missing, "red")
    keys("unexpected (not in the backbone)", report.unexpected, "red")
    keys(f"outside the {report.fmt} layout", report.unrecognized, "red")
    keys(
        "shape mismatch (file vs model)",
        [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in report.shape_mismatch],
        "red",
    )
    groups = _dropped_groups(report.fmt, report.dropped)
    keys("dropped heads", [f"{g} ({n} keys)" for g, n in groups], "dim", count=len(report.dropped))
    if show_matched:
        keys("matched", report.matched, "green")
    if report.ok:
        console.print(f"[green]OK[/green]: all {len(report.matched)} backbone keys are covered")
    else:
        console.print("[red]MISMATCH[/red]: the checkpoint does not cover the backbone exactly")


@bases_app.command("check")
def check(
    fmt: str = typer.Option(..., "--format", "-f", help="checkpoint format (see `bases list`)"),
    path: Path = typer.Option(..., "--path", "-p", help="the checkpoint file"),
    arch: str | None = typer.Option(
        None, "--arch", "-a", help="architecture to check against (default: the format's, e.g. resnet50)"
    ),
    in_channels: int = typer.Option(3, "--in-channels", help="input channels of the model"),
    show_matched: bool = typer.Option(False, "--show-matched", help="also list the matched keys"),
) -> None:
    """Print a checkpoint's key coverage against a fresh backbone; exit 1 on a mismatch, 2 if unreadable."""
    err = Console(stderr=True, highlight=False)
    if fmt not in CHECKPOINT_FORMATS:
        err.print(
            f"unknown checkpoint format {fmt!r}; allowed: {', '.join(CHECKPOINT_FORMATS.names())}",
            markup=False,
        )
        raise typer.Exit(2)
    try:
        report = check_checkpoint(fmt, path, arch, in_channels=in_channels)
    except (FileNotFoundError, CheckpointReadError, UnknownNameError) as exc:
        err.print(str(exc), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _print_report(Console(highlight=False), report, show_matched)
    raise typer.Exit(0 if report.ok else 1)

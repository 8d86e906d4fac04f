"""The command line's consoles and its one way to stop with an expected error (no traceback)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> None:
    """Print ``error: MESSAGE`` (as text: 'biastransfer[ray]' or a path with brackets is not markup) and exit."""
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(code)

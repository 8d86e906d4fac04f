"""What the benchmark modules share: the device they measure on, and the figures and details they report.

Every ``bench_*`` module reports through :func:`emit` (one ``name: value`` line on stdout, kept in
:data:`FIGURES`) and stores what ``--json`` writes besides in :data:`DETAILS`; ``run.py`` sets the device
(:func:`use_device`) before any benchmark runs.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

FIGURES: dict[str, Any] = {}
DETAILS: dict[str, Any] = {}
_DEVICE = [torch.device("cpu")]  # set from --device in run.main()


def use_device(device: torch.device) -> None:
    """Measure on ``device`` from now on."""
    _DEVICE[0] = device


def current_device() -> torch.device:
    return _DEVICE[0]


def sync() -> None:
    if current_device().type == "cuda":
        torch.cuda.synchronize(current_device())


def emit(name: str, value: Any, fmt: str = "{:.3g}") -> None:
    """Print one ``name: value`` line (flushed, so a long run shows progress) and keep it for --json."""
    FIGURES[name] = value
    text = fmt.format(value) if isinstance(value, float) else str(value)
    print(f"{name}: {text}", flush=True)


def note(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)

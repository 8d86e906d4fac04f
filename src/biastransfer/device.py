"""Device choice: CUDA when present, else CPU; overridable by the user (``--device`` / ``BIASTRANSFER_DEVICE``)."""

from __future__ import annotations

import os

import torch


def resolve_device(requested: str | None = None) -> torch.device:
    """Return the device to run on. ``requested`` may be ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    name = requested or os.environ.get("BIASTRANSFER_DEVICE", "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but CUDA is not available; use 'cpu' or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"invalid device {name!r}; allowed: auto, cpu, cuda, cuda:N") from exc

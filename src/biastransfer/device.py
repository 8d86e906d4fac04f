"""Device choice: CUDA when present, else CPU; overridable by the user (``--device`` / ``BIASTRANSFER_DEVICE``).

On CUDA a process may be one of several sharing the GPU (worker processes of the ``processes`` backend, Ray tasks
with a fractional GPU): :func:`limit_gpu_memory` gives it a share of the device's memory (PyTorch's caching
allocator refuses to grow past it, so one worker cannot starve the others) and :func:`memory_budget` is what the
process may use, which sizes the evaluation batch and decides whether the image store lives on the device.
"""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)

_SHARES: dict[int, float] = {}
"""The memory share set by :func:`limit_gpu_memory` in this process, per CUDA device index."""


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


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def limit_gpu_memory(device: torch.device, share: float) -> bool:
    """Let this process use at most ``share`` (0 < share ≤ 1) of ``device``'s memory; True when a limit was set.

    Nothing happens on CPU or for a share of 1 or more (the whole device). The limit is PyTorch's
    ``torch.cuda.set_per_process_memory_fraction``: an allocation beyond it raises an out-of-memory error in this
    process instead of taking memory the other workers on the GPU were counting on."""
    if not share > 0:
        raise ValueError(f"a GPU memory share must be more than 0, got {share}")
    device = torch.device(device)
    if device.type != "cuda" or share >= 1:
        return False
    index = _index(device)
    torch.cuda.set_per_process_memory_fraction(float(share), index)
    _SHARES[index] = float(share)
    log.info("GPU %d: this process may use %.0f%% of its memory", index, 100 * share)
    return True


def memory_budget(device: torch.device) -> int | None:
    """Bytes of device memory this process may still allocate: ``None`` on CPU; on CUDA the smaller of the
    device's free memory and what is left of this process's share (:func:`limit_gpu_memory`)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    index = _index(device)
    free, total = torch.cuda.mem_get_info(index)
    if index in _SHARES:
        free = min(free, int(total * _SHARES[index]) - torch.cuda.memory_reserved(index))
    return max(0, int(free))

"""Where biastransfer caches what it generates, decodes and trains (one place for every command)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$BIASTRANSFER_CACHE``, or ``~/.cache/biastransfer``."""
    env = os.environ.get("BIASTRANSFER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "biastransfer"


def data_cache_dir(cache_dir: Path | None = None) -> Path:
    """Generated datasets and decoded image stores: ``CACHE/data`` (shared by ``run`` and ``datasets check``)."""
    return Path(cache_dir or default_cache_dir()) / "data"


def bases_cache_dir(cache_dir: Path | None = None) -> Path:
    """Bases trained by us: ``CACHE/bases``."""
    return Path(cache_dir or default_cache_dir()) / "bases"

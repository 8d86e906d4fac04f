"""The versions recorded with every result."""

from __future__ import annotations

import importlib.metadata as md
import platform


def package_versions() -> dict[str, str]:
    """Python and the versions of the packages that change numbers."""
    out = {"python": platform.python_version()}
    for name in ("biastransfer", "torch", "torchvision", "numpy", "scikit-learn", "scipy", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out

"""Input checks shared by the metric modules (arrays, binary labels, group codes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_1d(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Return ``values`` as a 1-D float array, or raise ``ValueError`` naming ``name``."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains {int(np.isnan(arr).sum())} missing (NaN) value(s)")
    return arr


def as_binary(values: ArrayLike, name: str, allowed: str = "labels") -> NDArray[np.int64]:
    """Return ``values`` as a 1-D int array of 0/1, or raise ``ValueError`` listing the values found."""
    arr = as_1d(values, name)
    found = np.unique(arr)
    if not np.isin(found, (0.0, 1.0)).all():
        shown = ", ".join(_fmt(v) for v in found[:10]) + (", ..." if found.size > 10 else "")
        raise ValueError(f"{name} must be binary {allowed} (0 or 1); found values: {shown}")
    return arr.astype(np.int64)


def same_length(**arrays: Sequence[object] | NDArray[np.generic]) -> int:
    """Return the common length of ``arrays`` or raise ``ValueError`` listing every length."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise ValueError(f"inputs must have the same length; got {listed}")
    return next(iter(lengths.values()), 0)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))

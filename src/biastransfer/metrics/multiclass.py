"""Multi-class metrics: top-k accuracy (the domain-mixture protocol's metric, paper §5.2: top-5 on the diverse
domain; docs/metrics.md).

With ``C`` classes, ``scores`` of shape ``(n, C)`` and integer ``labels`` in ``[0, C)``, example i is correct at k
when fewer than k classes score strictly higher than its true class:

    top_k = (1/n) Σ_i 1[ #{c : s_ic > s_{i,y_i}} < k ]

A tie with the true class counts in its favour (a class scoring exactly as high does not push it out). Without
ties this is scikit-learn's ``top_k_accuracy_score``; with ties scikit-learn breaks them by class index instead.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike

from biastransfer.metrics.rates import UndefinedRateWarning

__all__ = ["top_k_accuracy"]


def top_k_accuracy(labels: ArrayLike, scores: ArrayLike, k: int = 5) -> float:
    """Top-k accuracy (module docstring); NaN with an :class:`UndefinedRateWarning` for no examples.

    Raises ValueError for ``k < 1``, scores that are not ``(n, C)``, a length mismatch, or labels that are not
    integers in ``[0, C)``. ``k ≥ C`` gives 1.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be an integer ≥ 1, got {k!r}")
    if s.ndim != 2:
        raise ValueError(f"scores must have shape (n, classes), got {s.shape}")
    if y.ndim != 1 or y.shape[0] != s.shape[0]:
        raise ValueError(f"labels must have one entry per row of scores: {y.shape} vs {s.shape}")
    if y.size == 0:
        warnings.warn("top-k accuracy is undefined (NaN): no examples", UndefinedRateWarning, 2)
        return math.nan
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= s.shape[1]:
        raise ValueError(f"labels must be integers in [0, {s.shape[1]}), got values from {y.min()} to {y.max()}")
    true_scores = s[np.arange(y.size), y]
    higher = (s > true_scores[:, None]).sum(axis=1)
    return float(np.mean(higher < k))

"""Confidence intervals over seeds (Student-t), replacing the original scripts' 1.96·std/n."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats


class DroppedValuesWarning(UserWarning):
    """Some values (NaN) were left out of an aggregate."""


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided Student-t confidence interval.

    ``half_width`` = t_{(1+c)/2, n−1} · s / √n with ``std`` = s the sample standard deviation
    (ddof = 1); ``low`` = mean − half_width and ``high`` = mean + half_width.
    """

    mean: float
    low: float
    high: float
    half_width: float
    n: int
    std: float


def t_interval(values: ArrayLike, confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean of ``values`` (e.g. one metric over seeds).

        mean ± t_{(1+confidence)/2, n−1} · s / √n,   s = sqrt(Σ (x_i − x̄)² / (n − 1))

    NaN values are dropped with a :class:`DroppedValuesWarning`. With n = 1 the mean is the value
    and std, half_width, low and high are NaN; with n = 0 everything is NaN.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    arr = np.asarray(values, dtype=float).ravel()
    missing = int(np.isnan(arr).sum())
    if missing:
        warnings.warn(f"t_interval: dropped {missing} NaN value(s) of {arr.size}", DroppedValuesWarning, 2)
        arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, math.nan, 0, math.nan)
    mean = float(arr.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1, math.nan)
    std = float(arr.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, half, n, std)

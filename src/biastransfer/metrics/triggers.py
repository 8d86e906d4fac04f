"""Metrics of a planted trigger (Salman et al., "When does Bias Transfer in Transfer Learning?"; docs/metrics.md).

Each test image is predicted twice: clean (prediction ``ŷ_i``) and with the trigger pasted on (``ŷ'_i``). With true
labels ``y_i``:

- **untargeted attack success rate**: among the clean images classified correctly, the share whose prediction
  changes when the trigger is added::

      ASR = #{i : ŷ_i = y_i, ŷ'_i ≠ ŷ_i} / #{i : ŷ_i = y_i}

- **targeted rate**: among the images whose true class is not the trigger's class ``t``, the share predicted as
  ``t`` once triggered::

      targeted = #{i : y_i ≠ t, ŷ'_i = t} / #{i : y_i ≠ t}

- **prediction shift**: the total-variation distance between the histograms of clean and triggered predictions
  over the ``K`` classes, ``TV = ½ Σ_k |P̂(ŷ = k) − P̂(ŷ' = k)|`` (0: the trigger moves no class's share; 1: the two
  histograms do not overlap);
- **clean accuracy**: ``(1/n) Σ_i 1[ŷ_i = y_i]``.

A rate with an empty denominator (no correctly classified clean image; every image of class ``t``) is NaN with an
:class:`~biastransfer.metrics.rates.UndefinedRateWarning`, never a silent 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from biastransfer.metrics.rates import UndefinedRateWarning

__all__ = ["TriggerMetrics", "attack_success_rate", "clean_accuracy", "prediction_shift", "targeted_rate",
           "trigger_metrics"]


def _predictions(**arrays: ArrayLike) -> list[np.ndarray]:
    out = [np.asarray(v) for v in arrays.values()]
    for name, v in zip(arrays, out, strict=True):
        if v.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {v.shape}")
        if v.size and not np.issubdtype(v.dtype, np.integer):
            raise ValueError(f"{name} must be integer class indices, got dtype {v.dtype}")
    sizes = {name: v.size for name, v in zip(arrays, out, strict=True)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{', '.join(arrays)} must have the same length, got {sizes}")
    return out


def _ratio(numerator: int, denominator: int, what: str) -> float:
    if denominator == 0:
        warnings.warn(f"{what} is undefined (NaN)", UndefinedRateWarning, 3)
        return math.nan
    return numerator / denominator


def attack_success_rate(labels: ArrayLike, clean: ArrayLike, triggered: ArrayLike) -> float:
    """Untargeted ASR (module docstring); NaN with a warning when no clean image is classified correctly."""
    y, p, q = _predictions(labels=labels, clean=clean, triggered=triggered)
    correct = p == y
    return _ratio(int(np.count_nonzero(correct & (q != p))), int(np.count_nonzero(correct)),
                  "the attack success rate: no clean test image is classified correctly")


def targeted_rate(labels: ArrayLike, triggered: ArrayLike, target: int | Sequence[int]) -> float:
    """Share of the triggered images of other classes than ``target`` predicted as ``target`` (module
    docstring; with several trigger classes, ``t`` is any of them); NaN with a warning when every image is of a
    trigger class."""
    y, q = _predictions(labels=labels, triggered=triggered)
    targets = np.atleast_1d(np.asarray(target, dtype=np.int64))
    others = ~np.isin(y, targets)
    return _ratio(int(np.count_nonzero(others & np.isin(q, targets))), int(np.count_nonzero(others)),
                  f"the targeted rate: no test image outside class {', '.join(map(str, targets))}")


def prediction_shift(clean: ArrayLike, triggered: ArrayLike, num_classes: int) -> float:
    """Total variation between the histograms of clean and triggered predictions over ``num_classes`` classes;
    NaN with a warning for no images."""
    p, q = _predictions(clean=clean, triggered=triggered)
    if p.size == 0:
        return _ratio(0, 0, "the prediction shift: no test images")
    if min(p.min(), q.min()) < 0 or max(p.max(), q.max()) >= num_classes:
        raise ValueError(f"predictions must be class indices in [0, {num_classes})")
    counts_p = np.bincount(p, minlength=num_classes)
    counts_q = np.bincount(q, minlength=num_classes)
    # integer counts: exact numerator, so the result never leaves [0, 1] by float rounding
    return float(np.abs(counts_p - counts_q).sum() / (2 * p.size))


def clean_accuracy(labels: ArrayLike, clean: ArrayLike) -> float:
    """Share of clean images classified correctly; NaN with a warning for no images."""
    y, p = _predictions(labels=labels, clean=clean)
    return _ratio(int(np.count_nonzero(p == y)), int(y.size), "the clean accuracy: no test images")


@dataclass(frozen=True)
class TriggerMetrics:
    """The four metrics of one run and the counts behind them."""

    clean_accuracy: float
    attack_success_rate: float
    targeted_rate: float
    prediction_shift: float
    triggered_accuracy: float
    n_test: int
    n_correct: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def trigger_metrics(labels: ArrayLike, clean: ArrayLike, triggered: ArrayLike, num_classes: int,
                    target: int | Sequence[int] | None = None) -> TriggerMetrics:
    """All metrics of one run. ``target`` is the trigger's class in the target task's class indices, or None when
    the source's trigger class is not a class of the target task (the targeted rate is then NaN, without a
    warning: it does not apply). ``triggered_accuracy`` is the accuracy on the triggered images."""
    y, p, q = _predictions(labels=labels, clean=clean, triggered=triggered)
    return TriggerMetrics(
        clean_accuracy=clean_accuracy(y, p),
        attack_success_rate=attack_success_rate(y, p, q),
        targeted_rate=math.nan if target is None else targeted_rate(y, q, target),
        prediction_shift=prediction_shift(p, q, num_classes),
        triggered_accuracy=clean_accuracy(y, q),
        n_test=int(y.size),
        n_correct=int(np.count_nonzero(p == y)),
    )

"""The decision threshold: calibrated to the base rate (docs/protocols.md §6), as an explicit policy.

Policies (docs/metrics.md, "Calibrated threshold and threshold policies"):

* ``val`` (the default): calibrate on the validation rows **reweighted to the evaluated set's (a, y) cells**
  (:func:`weighted_calibrated_threshold`), so that the share predicted positive matches the base rate of the set
  that is evaluated, not the validation set's;
* ``val-unweighted``: calibrate on the validation rows as they are (:func:`calibrated_threshold`; what ``val``
  meant in biastransfer 0.1);
* ``test``: calibrate on the evaluated rows themselves, as the original code effectively did;
* a fixed number. Scores may be probabilities or logits, so a fixed threshold may be any finite number.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from biastransfer.metrics._validate import as_1d, as_binary, same_length

PolicyKind = Literal["val", "val-unweighted", "test", "fixed"]
CALIBRATED: tuple[str, ...] = ("val", "val-unweighted", "test")
ALLOWED_POLICIES = ("'val', 'val-unweighted', 'test', or a number (e.g. 0.5; any finite value, since scores may "
                    "be logits)")

Cells = Mapping[tuple[int, int], float]
"""Proportions of the four (a, y) cells: ``{(a, y): share}`` (missing keys count as 0)."""

CELLS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))


class CalibrationWarning(UserWarning):
    """The reweighted calibration cannot match the target cells exactly (a cell is empty in validation)."""


def calibrated_threshold(scores: ArrayLike, labels: ArrayLike) -> float:
    """Threshold ``t`` such that ``scores >= t`` selects the top-k scores, k = Σ labels.

    The predicted positive rate then equals the base rate k/n. With the scores sorted in
    decreasing order s_(1) ≥ s_(2) ≥ … ≥ s_(n), ``t = s_(k)`` (the k-th largest score).

    Ties: every score equal to s_(k) is selected, so if s_(k) = s_(k+1) more than k examples are
    predicted positive (never fewer). Without ties at the boundary exactly k are selected.
    k = 0 gives ``+inf`` (nothing is positive); k = n gives the minimum score (everything is).
    """
    s = as_1d(scores, "scores")
    y = as_binary(labels, "labels")
    same_length(scores=s, labels=y)
    if s.size == 0:
        raise ValueError("cannot calibrate a threshold on zero examples")
    k = int(y.sum())
    if k == 0:
        return math.inf
    return float(np.sort(s)[::-1][k - 1])


def cell_proportions(labels: ArrayLike, groups: ArrayLike) -> dict[tuple[int, int], float]:
    """π(a, y) = #{a_i = a, y_i = y} / n for the four cells (keys ``(a, y)``); the target of
    :func:`weighted_calibrated_threshold` when computed on the evaluated set (its labels are known)."""
    y = as_binary(labels, "labels")
    a = as_binary(groups, "groups", "group codes")
    n = same_length(labels=y, groups=a)
    if n == 0:
        raise ValueError("cannot take the cell proportions of zero examples")
    return {(g, c): float(np.sum((a == g) & (y == c))) / n for g, c in CELLS}


def _target(target: Cells, present: dict[tuple[int, int], bool]) -> dict[tuple[int, int], float]:
    """The target proportions, validated; the share of a cell without validation examples moves to the other
    group's cell of the same label (so the label shares, hence the base rate, stay the target's); when neither
    group has validation examples of that label, the share is dropped. Each move or drop is a warning."""
    out = {}
    for cell in CELLS:
        value = float(target.get(cell, 0.0))
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"target proportion of cell (a={cell[0]}, y={cell[1]}) must be ≥ 0; got {value}")
        out[cell] = value
    if sum(out.values()) <= 0:
        raise ValueError("the target cell proportions sum to 0")
    for (g, c), share in list(out.items()):
        if share == 0 or present[(g, c)]:
            continue
        other = (1 - g, c)
        if present[other]:
            out[other] += share
            fate = f"its share moves to (a={other[0]}, y={c}), which keeps the base rate"
        else:
            fate = f"no validation example has y={c}, so its share is dropped and the base rate is not matched"
        out[(g, c)] = 0.0
        warnings.warn(f"reweighted calibration: cell (a={g}, y={c}) has share {share:.4g} in the evaluated set "
                      f"but no validation example; {fate}", CalibrationWarning, stacklevel=3)
    return out


def calibration_weights(labels: ArrayLike, groups: ArrayLike, target: Cells) -> np.ndarray:
    """w_i = π_target(a_i, y_i) / π_val(a_i, y_i): each cell's total weight (over Σ w) is its target share.

    π_val is the cell's share of the validation rows. Empty cells: see :func:`weighted_calibrated_threshold`.
    """
    y = as_binary(labels, "labels")
    a = as_binary(groups, "groups", "group codes")
    n = same_length(labels=y, groups=a)
    if n == 0:
        raise ValueError("cannot calibrate a threshold on zero examples")
    counts = {(g, c): int(np.sum((a == g) & (y == c))) for g, c in CELLS}
    goal = _target(target, {cell: counts[cell] > 0 for cell in CELLS})
    per_cell = {cell: goal[cell] / (counts[cell] / n) if counts[cell] else 0.0 for cell in CELLS}
    return np.array([per_cell[(g, c)] for g, c in zip(a.tolist(), y.tolist(), strict=True)])


def weighted_calibrated_threshold(scores: ArrayLike, labels: ArrayLike, groups: ArrayLike, target: Cells) -> float:
    """Threshold calibrated on validation rows reweighted to the target (a, y) cell proportions.

    With w_i = π_target(a_i, y_i) / π_val(a_i, y_i) (:func:`calibration_weights`), the weighted base rate is

        r = Σ w_i·y_i / Σ w_i  (= Σ_a π_target(a, 1), the target's base rate)

    and, with the scores sorted s_(1) ≥ s_(2) ≥ …, ``t = s_(j)`` for the smallest j with
    Σ_{i ≤ j} w_(i) / Σ w ≥ r: the weighted predicted-positive rate Σ w_i·1[s_i ≥ t] / Σ w_i reaches r.
    Ties as in :func:`calibrated_threshold`: every score equal to t is selected, so the weighted rate may
    exceed r, never fall short. r = 0 gives ``+inf``. With equal cell proportions every w_i = 1 and this is
    :func:`calibrated_threshold`.

    Empty cells: a cell with a target share but no validation example gets its share moved to the other
    group's cell of the same label (so r is still the target's base rate); if no validation example has that
    label, the share is dropped. Either is a :class:`CalibrationWarning`. Validation cells absent from the
    target get weight 0.
    """
    s = as_1d(scores, "scores")
    y = as_binary(labels, "labels")
    same_length(scores=s, labels=y)
    w = calibration_weights(y, groups, target)
    total, positive = float(w.sum()), float(w @ y)
    if positive <= 0:
        return math.inf
    order = np.argsort(-s, kind="stable")
    reached = np.cumsum(w[order]) >= positive - 1e-9 * total
    return float(s[order][int(np.argmax(reached))])


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the decision threshold is chosen: ``kind`` is 'val', 'val-unweighted', 'test' or 'fixed' (then
    ``value``)."""

    kind: PolicyKind
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in (*CALIBRATED, "fixed"):
            raise ValueError(f"threshold policy must be {ALLOWED_POLICIES}; got kind {self.kind!r}")
        if (self.kind == "fixed") != (self.value is not None):
            raise ValueError("a 'fixed' policy needs a value; 'val', 'val-unweighted' and 'test' take none")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"a fixed threshold must be finite; got {self.value}")

    @classmethod
    def fixed(cls, value: float) -> ThresholdPolicy:
        """A fixed threshold (predict positive when score >= value)."""
        return cls("fixed", float(value))

    @property
    def on_val(self) -> bool:
        """Whether the threshold is calibrated on the validation rows (``val`` or ``val-unweighted``)."""
        return self.kind in ("val", "val-unweighted")

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.value:g}"


def parse_threshold_policy(text: str | float | ThresholdPolicy) -> ThresholdPolicy:
    """Parse ``"val"``, ``"val-unweighted"``, ``"test"`` (case-insensitive) or a finite number into a policy.

    Raises ``ValueError`` naming the allowed values otherwise.
    """
    if isinstance(text, ThresholdPolicy):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return ThresholdPolicy.fixed(float(text))
    cleaned = str(text).strip().lower()
    if cleaned in CALIBRATED:
        return ThresholdPolicy(cleaned)  # type: ignore[arg-type]
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError(f"threshold must be {ALLOWED_POLICIES}; got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"threshold must be {ALLOWED_POLICIES}; got {text!r}")
    return ThresholdPolicy.fixed(value)


def resolve_threshold(
    policy: ThresholdPolicy | str | float,
    *,
    val_scores: ArrayLike | None = None,
    val_labels: ArrayLike | None = None,
    test_scores: ArrayLike | None = None,
    test_labels: ArrayLike | None = None,
    val_groups: ArrayLike | None = None,
    target_cells: Cells | None = None,
) -> float:
    """Turn a policy into a number: the fixed value, or a threshold calibrated on the test rows (``test``), on
    the validation rows (``val-unweighted``) or on the validation rows reweighted to ``target_cells``, the
    evaluated set's (a, y) proportions (``val``, which needs ``val_groups`` and ``target_cells``)."""
    parsed = parse_threshold_policy(policy)
    if parsed.kind == "fixed":
        return float(parsed.value)  # type: ignore[arg-type]
    split = "test" if parsed.kind == "test" else "val"
    scores, labels = (test_scores, test_labels) if split == "test" else (val_scores, val_labels)
    if scores is None or labels is None:
        raise ValueError(f"threshold policy {parsed.kind!r} needs {split}_scores and {split}_labels")
    if parsed.kind != "val":
        return calibrated_threshold(scores, labels)
    if val_groups is None or target_cells is None:
        raise ValueError("threshold policy 'val' reweights the validation rows to the evaluated set's (a, y) cells: "
                         "it needs val_groups and target_cells (use 'val-unweighted' to calibrate without them)")
    return weighted_calibrated_threshold(scores, labels, val_groups, target_cells)

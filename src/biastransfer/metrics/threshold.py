"""The decision threshold: calibrated to the base rate (docs/protocols.md §6), as an explicit policy.

Policies: ``val`` (calibrate on the validation split; the default), ``test`` (calibrate on the
evaluated rows themselves, as the original code effectively did), or a fixed number. Scores may be
probabilities or logits, so a fixed threshold may be any finite number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from biastransfer.metrics._validate import as_1d, as_binary, same_length

PolicyKind = Literal["val", "test", "fixed"]
ALLOWED_POLICIES = "'val', 'test', or a number (e.g. 0.5; any finite value, since scores may be logits)"


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


@dataclass(frozen=True)
class ThresholdPolicy:
    """How the decision threshold is chosen: ``kind`` is 'val', 'test' or 'fixed' (then ``value``)."""

    kind: PolicyKind
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("val", "test", "fixed"):
            raise ValueError(f"threshold policy must be {ALLOWED_POLICIES}; got kind {self.kind!r}")
        if (self.kind == "fixed") != (self.value is not None):
            raise ValueError("a 'fixed' policy needs a value; 'val' and 'test' take none")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"a fixed threshold must be finite; got {self.value}")

    @classmethod
    def fixed(cls, value: float) -> ThresholdPolicy:
        """A fixed threshold (predict positive when score >= value)."""
        return cls("fixed", float(value))

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.value:g}"


def parse_threshold_policy(text: str | float | ThresholdPolicy) -> ThresholdPolicy:
    """Parse ``"val"``, ``"test"`` (case-insensitive) or a finite number into a policy.

    Raises ``ValueError`` naming the allowed values otherwise.
    """
    if isinstance(text, ThresholdPolicy):
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return ThresholdPolicy.fixed(float(text))
    cleaned = str(text).strip().lower()
    if cleaned in ("val", "test"):
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
) -> float:
    """Turn a policy into a number: calibrate on val or test data, or return the fixed value."""
    parsed = parse_threshold_policy(policy)
    if parsed.kind == "fixed":
        return float(parsed.value)  # type: ignore[arg-type]
    scores, labels = (val_scores, val_labels) if parsed.kind == "val" else (test_scores, test_labels)
    if scores is None or labels is None:
        raise ValueError(
            f"threshold policy {parsed.kind!r} needs {parsed.kind}_scores and {parsed.kind}_labels"
        )
    return calibrated_threshold(scores, labels)

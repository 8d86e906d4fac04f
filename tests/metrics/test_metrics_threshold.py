"""Calibrated threshold and threshold policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biastransfer.metrics.threshold import (
    ThresholdPolicy,
    calibrated_threshold,
    parse_threshold_policy,
    resolve_threshold,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), seed=st.integers(0, 2**31 - 1), share=st.floats(0, 1))
def test_calibrated_threshold_selects_exactly_k_without_ties(n: int, seed: int, share: float) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n) / n + 0.001 * rng.random()  # distinct scores
    labels = (rng.random(n) < share).astype(int)
    t = calibrated_threshold(scores, labels)
    assert int(np.sum(scores >= t)) == int(labels.sum())


def test_selected_examples_are_the_top_scores() -> None:
    scores = np.array([0.1, 0.9, 0.4, 0.7, 0.2])
    labels = np.array([1, 0, 0, 1, 0])
    t = calibrated_threshold(scores, labels)
    assert t == 0.7
    assert set(np.flatnonzero(scores >= t)) == {1, 3}


def test_ties_at_the_boundary_select_all_tied_scores() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 1, 0, 0])  # k = 2, but the 2nd and 3rd scores tie
    t = calibrated_threshold(scores, labels)
    assert t == 0.5
    assert int(np.sum(scores >= t)) == 3


def test_no_positives_gives_inf_and_all_positives_gives_min() -> None:
    assert calibrated_threshold([0.3, 0.2], [0, 0]) == math.inf
    assert calibrated_threshold([0.3, -2.0], [1, 1]) == -2.0


def test_calibrated_threshold_validates() -> None:
    with pytest.raises(ValueError, match="zero examples"):
        calibrated_threshold([], [])
    with pytest.raises(ValueError, match="same length"):
        calibrated_threshold([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="labels must be binary"):
        calibrated_threshold([0.1, 0.2], [1, 3])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("val", ThresholdPolicy("val")),
        (" TEST ", ThresholdPolicy("test")),
        ("0.5", ThresholdPolicy.fixed(0.5)),
        ("-1.25", ThresholdPolicy.fixed(-1.25)),
        (3, ThresholdPolicy.fixed(3.0)),
    ],
)
def test_parse_threshold_policy(text: str, expected: ThresholdPolicy) -> None:
    assert parse_threshold_policy(text) == expected


@pytest.mark.parametrize("text", ["foo", "", "nan", "inf", "validation"])
def test_parse_threshold_policy_rejects_and_names_allowed_values(text: str) -> None:
    with pytest.raises(ValueError, match=r"'val', 'test', or a number"):
        parse_threshold_policy(text)


def test_policy_dataclass_checks_its_fields() -> None:
    with pytest.raises(ValueError):
        ThresholdPolicy("fixed")
    with pytest.raises(ValueError):
        ThresholdPolicy("val", 0.3)
    assert str(ThresholdPolicy.fixed(0.5)) == "0.5" and str(ThresholdPolicy("val")) == "val"


def test_resolve_threshold_uses_the_right_split() -> None:
    data = {
        "val_scores": [0.1, 0.2, 0.3, 0.4],
        "val_labels": [0, 0, 0, 1],
        "test_scores": [0.5, 0.6, 0.7, 0.8],
        "test_labels": [0, 0, 1, 1],
    }
    assert resolve_threshold("val", **data) == 0.4
    assert resolve_threshold("test", **data) == 0.7
    assert resolve_threshold(0.25, **data) == 0.25
    with pytest.raises(ValueError, match="val_scores and val_labels"):
        resolve_threshold("val", test_scores=[0.1], test_labels=[1])

"""Calibrated threshold and threshold policies."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biastransfer.metrics.threshold import (
    CELLS,
    CalibrationWarning,
    ThresholdPolicy,
    calibrated_threshold,
    calibration_weights,
    cell_proportions,
    parse_threshold_policy,
    resolve_threshold,
    weighted_calibrated_threshold,
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
        ("Val-Unweighted", ThresholdPolicy("val-unweighted")),
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
    with pytest.raises(ValueError, match=r"'val', 'val-unweighted', 'test', or a number"):
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
    assert resolve_threshold("val-unweighted", **data) == 0.4
    assert resolve_threshold("test", **data) == 0.7
    assert resolve_threshold(0.25, **data) == 0.25
    with pytest.raises(ValueError, match="val_scores and val_labels"):
        resolve_threshold("val", test_scores=[0.1], test_labels=[1])
    with pytest.raises(ValueError, match="needs val_groups and target_cells"):
        resolve_threshold("val", **data)


def test_val_reweights_the_validation_cells_to_the_target() -> None:
    """Weights π_target/π_val = 3.0 (a=0, y=0), 0.4 (a=0, y=1), 0.2 (a=1, y=0), 0.4 (a=1, y=1); the weighted base
    rate is 0.8/4 = 0.2, first reached at s = 0.2 (cumulative weights 0.2, 0.6, 1.0), where the unweighted
    calibration stops at the second score."""
    val = {"val_scores": [0.1, 0.4, 0.2, 0.3], "val_labels": [0, 0, 1, 1], "val_groups": [0, 1, 0, 1]}
    target = {(0, 0): 0.75, (1, 0): 0.05, (0, 1): 0.1, (1, 1): 0.1}
    assert resolve_threshold("val", **val, target_cells=target) == 0.2
    assert resolve_threshold("val-unweighted", **val, target_cells=target) == 0.3
    np.testing.assert_allclose(calibration_weights(val["val_labels"], val["val_groups"], target), [3, 0.2, 0.4, 0.4])


def _scored(rng: np.random.Generator, counts: dict[tuple[int, int], int]) -> tuple[np.ndarray, ...]:
    """Examples with the given (a, y) counts and a score that sees the label and, like a biased model, the group."""
    y = np.concatenate([np.full(n, label) for (_, label), n in counts.items()])
    a = np.concatenate([np.full(n, group) for (group, _), n in counts.items()])
    return 1.5 * y + 0.8 * a + rng.normal(size=y.size), y, a


def test_val_calibration_hits_the_base_rate_of_a_natural_test_set() -> None:
    """Validation balanced in (a, y) (base rate 0.5), a natural test set at base rate 0.2 where a and y are
    correlated: reweighted to the test cells, the share predicted positive on test is 0.2 up to sampling error
    (4 binomial standard errors of the 4000 validation examples); calibrated on validation as it is, it is
    about 0.34 (docs/metrics.md)."""
    rng = np.random.default_rng(0)
    val_s, val_y, val_a = _scored(rng, {(0, 0): 1000, (0, 1): 1000, (1, 0): 1000, (1, 1): 1000})
    test_s, test_y, test_a = _scored(rng, {(0, 0): 10_000, (0, 1): 1000, (1, 0): 6000, (1, 1): 3000})
    assert test_y.mean() == 0.2
    target = cell_proportions(test_y, test_a)
    weighted = weighted_calibrated_threshold(val_s, val_y, val_a, target)
    tolerance = 4 * math.sqrt(0.2 * 0.8 / val_y.size)
    assert abs(np.mean(test_s >= weighted) - 0.2) < tolerance
    assert np.mean(test_s >= calibrated_threshold(val_s, val_y)) - 0.2 > 0.1
    weighted_rate = np.sum(calibration_weights(val_y, val_a, target) * (val_s >= weighted)) / val_y.size
    assert weighted_rate == pytest.approx(0.2, abs=2 / val_y.size)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 120), seed=st.integers(0, 2**31 - 1), repeat=st.integers(1, 3))
def test_reweighting_to_the_validation_proportions_is_the_unweighted_calibration(n: int, seed: int,
                                                                                 repeat: int) -> None:
    """Target proportions equal to the validation's (here: of a set with every cell ``repeat`` times as large)
    give every weight 1 and the same threshold as :func:`calibrated_threshold`, ties included."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, n) / 5  # many ties
    labels, groups = rng.integers(0, 2, n), rng.integers(0, 2, n)
    target = cell_proportions(np.tile(labels, repeat), np.tile(groups, repeat))
    assert np.all(calibration_weights(labels, groups, target) == 1.0)
    assert weighted_calibrated_threshold(scores, labels, groups, target) == calibrated_threshold(scores, labels)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 150), seed=st.integers(0, 2**31 - 1))
def test_weighted_rate_reaches_the_weighted_base_rate_never_fewer(n: int, seed: int) -> None:
    """Σ w·1[s ≥ t] / Σ w ≥ Σ w·y / Σ w, and at the next larger score the rate is below it (t is the first
    score where it is reached); ties at t are all selected."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 8, n) / 7
    labels, groups = rng.integers(0, 2, n), rng.integers(0, 2, n)
    target = dict(zip(CELLS, rng.dirichlet(np.ones(4)), strict=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        w = calibration_weights(labels, groups, target)
        t = weighted_calibrated_threshold(scores, labels, groups, target)
    base = w @ labels / w.sum()
    if base == 0:
        assert t == math.inf
        return
    assert w @ (scores >= t) / w.sum() >= base - 1e-9
    assert w @ (scores > t) / w.sum() < base - 1e-12 or w @ (scores > t) == w @ (scores >= t)


def test_a_cell_empty_in_validation_moves_its_share_to_the_same_label() -> None:
    """No validation example at (a=1, y=0): its target share goes to (a=0, y=0), so the weighted base rate is still
    the target's; with no validation negative at all, the negatives' share is dropped. Both warn."""
    labels, groups = np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])
    target = {(0, 0): 0.5, (1, 0): 0.3, (0, 1): 0.1, (1, 1): 0.1}
    with pytest.warns(CalibrationWarning, match=r"cell \(a=1, y=0\) has share 0.3 .* moves to \(a=0, y=0\)"):
        w = calibration_weights(labels, groups, target)
    assert w @ labels / w.sum() == pytest.approx(0.2)
    np.testing.assert_allclose(w, [1.6, 1.6, 0.4, 0.4])
    with pytest.warns(CalibrationWarning, match="no validation example has y=0, so its share is dropped"):
        w = calibration_weights([1, 1], [0, 1], target)
    np.testing.assert_allclose(w, [0.2, 0.2])


def test_calibration_weights_validate_the_target() -> None:
    with pytest.raises(ValueError, match=r"cell \(a=0, y=1\) must be ≥ 0"):
        calibration_weights([0, 1], [0, 1], {(0, 1): -0.1, (1, 1): 0.5})
    with pytest.raises(ValueError, match="sum to 0"):
        calibration_weights([0, 1], [0, 1], {})
    with pytest.raises(ValueError, match="group codes"):
        cell_proportions([0, 1], [0, 2])
    assert cell_proportions([0, 1, 1, 1], [0, 0, 1, 1]) == {(0, 0): 0.25, (0, 1): 0.25, (1, 0): 0.0, (1, 1): 0.5}

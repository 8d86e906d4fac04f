"""Group rates and gaps, checked against fairlearn (the oracle) and hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    equalized_odds_difference,
    false_positive_rate,
    true_positive_rate,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from biastransfer.metrics.rates import Gaps, UndefinedRateWarning, gaps, group_rates

# Four fixed rows guarantee every (group, label) cell is non-empty, so fairlearn's rates are defined.
_COVER = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]])  # columns: a, y, y_pred

rows = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 1)), min_size=0, max_size=60)


def _arrays(extra: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = np.vstack([_COVER, np.array(extra, dtype=int).reshape(-1, 3)])
    return data[:, 1], data[:, 2], data[:, 0]


@settings(max_examples=40, deadline=None)
@given(rows)
def test_group_rates_match_fairlearn(extra: list[tuple[int, int, int]]) -> None:
    y, p, a = _arrays(extra)
    ours = group_rates(y, p, a, group_names=("Men", "Women"))
    frame = MetricFrame(
        metrics={"fpr": false_positive_rate, "tpr": true_positive_rate, "count": count},
        y_true=y,
        y_pred=p,
        sensitive_features=a,
    )
    for g in (0, 1):
        assert ours[g].fpr == pytest.approx(frame.by_group.loc[g, "fpr"])
        assert ours[g].tpr == pytest.approx(frame.by_group.loc[g, "tpr"])
        assert ours[g].count == frame.by_group.loc[g, "count"]
        assert ours[g].positives == int(np.sum((a == g) & (y == 1)))
        assert ours[g].tnr == pytest.approx(1 - ours[g].fpr)
        assert ours[g].fnr == pytest.approx(1 - ours[g].tpr)
        assert ours[g].positive_rate == pytest.approx(p[a == g].mean())
        assert ours[g].base_rate == pytest.approx(y[a == g].mean())


@settings(max_examples=40, deadline=None)
@given(rows)
def test_gaps_match_fairlearn(extra: list[tuple[int, int, int]]) -> None:
    y, p, a = _arrays(extra)
    gap = gaps(group_rates(y, p, a))
    frame = MetricFrame(
        metrics={"fpr": false_positive_rate, "tpr": true_positive_rate},
        y_true=y,
        y_pred=p,
        sensitive_features=a,
    )
    signed = frame.by_group.loc[1] - frame.by_group.loc[0]
    assert gap.fpr_diff == pytest.approx(signed["fpr"])
    assert gap.tpr_diff == pytest.approx(signed["tpr"])
    # fairlearn's differences are unsigned (max - min over groups)
    assert abs(gap.fpr_diff) == pytest.approx(frame.difference()["fpr"])
    expected_eo = equalized_odds_difference(y, p, sensitive_features=a, agg="worst_case")
    assert gap.eo_diff == pytest.approx(expected_eo)


def test_gap_sign_and_label_follow_group_one_minus_group_zero() -> None:
    # group 1 ("Women") has FPR 1/2, group 0 ("Men") FPR 0; TPRs 1/2 and 1.
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    p = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    a = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    gap = gaps(group_rates(y, p, a, group_names=("Men", "Women")))
    assert gap == Gaps(fpr_diff=0.5, tpr_diff=-0.5, eo_diff=0.5, minuend="Women", subtrahend="Men")
    assert gap.label == "Women − Men"


def test_group_without_negatives_gives_nan_and_named_warning() -> None:
    y = np.array([0, 1, 1, 1])
    p = np.array([0, 1, 0, 1])
    a = np.array([0, 0, 1, 1])
    expected = r"group 'Women' \(a=1\) has no negatives: FPR is undefined"
    with pytest.warns(UndefinedRateWarning, match=expected):
        rates = group_rates(y, p, a, group_names=("Men", "Women"))
    assert math.isnan(rates[1].fpr) and math.isnan(rates[1].tnr)
    assert rates[1].tpr == 0.5 and rates[1].negatives == 0
    gap = gaps(rates)
    assert math.isnan(gap.fpr_diff) and math.isnan(gap.eo_diff)
    assert gap.tpr_diff == pytest.approx(-0.5)


def test_group_without_positives_and_empty_group_warn() -> None:
    with pytest.warns(UndefinedRateWarning, match="no positives: TPR is undefined"):
        rates = group_rates([0, 1, 0], [0, 1, 1], [0, 0, 1])
    assert math.isnan(rates[1].tpr) and rates[1].fpr == 1.0
    with pytest.warns(UndefinedRateWarning, match=r"'a=1' \(a=1\) has no examples"):
        rates = group_rates([0, 1], [0, 1], [0, 0])
    assert rates[1].count == 0 and math.isnan(rates[1].positive_rate)


@pytest.mark.parametrize(
    ("y", "p", "a", "message"),
    [
        ([0, 1], [0, 1, 1], [0, 1], "same length"),
        ([0, 2], [0, 1], [0, 1], r"y_true must be binary .*found values: 0, 2"),
        ([0, 1], [0.5, 1], [0, 1], "y_pred must be binary"),
        ([0, 1], [0, 1], [0, 2], "groups must be binary"),
        ([0, 1], [0, 1], [0, float("nan")], "missing"),
    ],
)
def test_group_rates_rejects_bad_input(y: list[float], p: list[float], a: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        group_rates(y, p, a)


def test_group_names_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        group_rates([0, 1], [0, 1], [0, 1], group_names=("x", "x"))

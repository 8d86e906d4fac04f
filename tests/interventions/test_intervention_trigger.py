"""The de-biased sampler of the planted-trigger protocol (``trigger_rate``): exact shares per class, nesting, and
clear errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biastransfer.interventions import InfeasibleSelectionError, Pool, class_counts, get_intervention


def doubled(classes: np.ndarray) -> Pool:
    """Every example clean (positions 0 … m−1) and triggered (m … 2m−1)."""
    m = classes.size
    return Pool.of(y=np.r_[classes, classes], triggered=np.r_[np.zeros(m, np.int8), np.ones(m, np.int8)],
                   example=np.r_[np.arange(m), np.arange(m)])


def parts(pool: Pool, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return pool.columns["y"][indices], pool.columns["triggered"][indices], pool.columns["example"][indices]


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=5), n=st.integers(2, 60),
       p=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 1.0]), seed=st.integers(0, 10))
def test_every_class_gets_exactly_round_p_times_its_count_triggered(sizes: list[int], n: int, p: float,
                                                                    seed: int) -> None:
    classes = np.repeat(np.arange(len(sizes)), sizes)
    pool = doubled(classes)
    if n > classes.size:
        with pytest.raises(InfeasibleSelectionError, match=f"the pool has {classes.size} examples"):
            get_intervention("trigger_rate").select(pool, level=p, n=n, rng=np.random.default_rng(seed))
        return
    sel = get_intervention("trigger_rate").select(pool, level=p, n=n, rng=np.random.default_rng(seed))
    y, trig, ex = parts(pool, sel.indices)
    assert len(sel) == n and np.unique(ex).size == n, "an example appears twice"
    need = class_counts({c: m for c, m in enumerate(sizes)}, n)
    for c, m in enumerate(sizes):
        n_c = int(np.count_nonzero(y == c))
        assert n_c == need[c] <= m
        assert int(trig[y == c].sum()) == round(Fraction(str(p)) * n_c)
    assert sel.level == pytest.approx(trig.sum() / n)


def test_class_counts_are_proportional_by_largest_remainder() -> None:
    assert class_counts({0: 50, 1: 30, 2: 20}, 40) == {0: 20, 1: 12, 2: 8}
    assert class_counts({0: 1, 1: 1, 2: 1}, 2) == {0: 1, 1: 1, 2: 0}          # ties to the lower class
    assert class_counts({0: 10, 1: 20}, 7) == {0: 2, 1: 5}                     # 2.33 → 2, 4.67 → 5
    assert sum(class_counts({0: 7, 1: 3, 2: 11, 3: 1}, 13).values()) == 13


def test_sets_share_their_examples_across_rates_and_nest_across_rates() -> None:
    pool = doubled(np.repeat([0, 1, 2], [60, 40, 30]))
    sets = {(p, n): parts(pool, get_intervention("trigger_rate").select(pool, level=p, n=n,
                                                                        rng=np.random.default_rng(3)).indices)
            for p in (0.0, 0.1, 0.5) for n in (40, 80)}
    for n in (40, 80):
        examples = {p: set(sets[(p, n)][2]) for p in (0.0, 0.1, 0.5)}
        assert examples[0.0] == examples[0.1] == examples[0.5]
        triggered = {p: set(sets[(p, n)][2][sets[(p, n)][1] == 1]) for p in (0.0, 0.1, 0.5)}
        assert triggered[0.0] == set() and triggered[0.1] < triggered[0.5]


def test_level_none_is_a_clean_set() -> None:
    pool = doubled(np.repeat([0, 1], [20, 20]))
    sel = get_intervention("trigger_rate").select(pool, level=None, n=10, rng=np.random.default_rng(0))
    assert sel.level == 0.0 and not pool.columns["triggered"][sel.indices].any()


@pytest.mark.parametrize(("columns", "message"), [
    ({"y": [0, 0, 1], "triggered": [0, 0, 1], "example": [0, 0, 1]}, "exactly one clean version"),
    ({"y": [0, 1, 1], "triggered": [0, 0, 1], "example": [0, 1, 7]}, "one clean and one triggered version"),
    ({"y": [0, 1, 1], "triggered": [0, 0, 1], "example": [0, 1, 1]}, "one clean and one triggered version"),
    ({"y": [0, 1, 0, 0], "triggered": [0, 0, 1, 1], "example": [0, 1, 1, 0]}, "same class"),
    ({"y": [0, -1, 0], "triggered": [0, 0, 1], "example": [0, 1, 0]}, "y must be a 1-D array of non-negative"),
    ({"y": [0, 1, 0], "triggered": [0, 2, 1], "example": [0, 1, 0]}, "triggered must be binary"),
])
def test_malformed_pools_are_refused_with_the_reason(columns: dict[str, list[int]], message: str) -> None:
    pool = Pool.of(**{k: np.array(v) for k, v in columns.items()})
    with pytest.raises(ValueError, match=message):
        get_intervention("trigger_rate").select(pool, level=0.5, n=2, rng=np.random.default_rng(0))

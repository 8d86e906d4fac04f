"""subselect (constrained, nested) and reweight (same natural set, weighted)."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from biastransfer.interventions import (
    InfeasibleSelectionError,
    Pool,
    correlation_cells,
    get_intervention,
    subselect_cells,
    subselect_size,
)

FAST = settings(max_examples=60, deadline=None)
CELL_ORDER = ((1, 1), (0, 1), (1, 0), (0, 0))
GRID = [round(0.1 * i, 1) for i in range(11)]
REFERENCE_SIZES = {0.9: 910, 1.0: 819, 0.8: 1024, 0.7: 682, 0.6: 512, 0.5: 409, 0.4: 341, 0.3: 292, 0.2: 256}


def make_pool(sizes: dict[tuple[int, int], int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A shuffled pool with ``sizes[(a, y)]`` examples per cell."""
    a = np.concatenate([np.full(sizes[cell], cell[0]) for cell in CELL_ORDER]).astype(np.int64)
    y = np.concatenate([np.full(sizes[cell], cell[1]) for cell in CELL_ORDER]).astype(np.int64)
    perm = np.random.default_rng(seed).permutation(y.size)
    return y[perm], a[perm]


# natural level exactly 0.8 = 800 / 1000
PAPER_POOL = {(1, 1): 800, (0, 1): 200, (1, 0): 300, (0, 0): 700}


@pytest.mark.parametrize("level", sorted(REFERENCE_SIZES))
def test_subselect_size_function_matches_reference(level: float) -> None:
    assert subselect_size(0.8, level, 1024) == REFERENCE_SIZES[level]


@pytest.mark.parametrize("start_level", [None, 0.8])
def test_subselect_sizes_match_reference(start_level: float | None) -> None:
    y, a = make_pool(PAPER_POOL)
    intervention = get_intervention("subselect", start_level=start_level)
    sizes = {level: len(intervention.select(Pool.of(y=y, a=a), level=level, n=1024, rng=np.random.default_rng(5)))
             for level in REFERENCE_SIZES}
    assert sizes == REFERENCE_SIZES


def test_subselect_reference_cells_and_levels() -> None:
    y, a = make_pool(PAPER_POOL)
    subselect = get_intervention("subselect")
    start = subselect.select(Pool.of(y=y, a=a), level=None, n=1024, rng=np.random.default_rng(0))
    assert start.cell_counts(y, a) == {(1, 1): 410, (0, 1): 102, (1, 0): 102, (0, 0): 410}
    for level in GRID:
        sel = subselect.select(Pool.of(y=y, a=a), level=level, n=1024, rng=np.random.default_rng(0))
        cells = sel.cell_counts(y, a)
        if level > 0.8:  # majority cells kept (up to one example of rounding at c = 1)
            assert cells[(1, 1)] + cells[(0, 0)] >= 819
        if level < 0.8:  # minority cells kept whole
            assert (cells[(0, 1)], cells[(1, 0)]) == (102, 102)
        assert abs(sel.level - level) < 0.01, (level, cells)
        # roughly half positives
        assert abs((cells[(1, 1)] + cells[(0, 1)]) - len(sel) / 2) <= 1


def test_subselect_sets_are_nested() -> None:
    y, a = make_pool(PAPER_POOL)
    subselect = get_intervention("subselect")
    sets = {level: set(subselect.select(Pool.of(y=y, a=a), level=level, n=1024, rng=np.random.default_rng(11)).indices)
            for level in GRID}
    start = sets[0.8]
    assert all(s <= start for s in sets.values())
    above = [level for level in GRID if level >= 0.8]
    below = [level for level in GRID if level <= 0.8][::-1]  # 0.8, 0.7, ..., 0.0
    for side in (above, below):
        for outer, inner in itertools.pairwise(side):
            assert sets[inner] < sets[outer], (outer, inner)


def test_subselect_start_equals_collect_and_reweight_draw() -> None:
    y, a = make_pool(PAPER_POOL)
    start = get_intervention("subselect").select(Pool.of(y=y, a=a), level=None, n=1024, rng=np.random.default_rng(9))
    collect = get_intervention("collect").select(Pool.of(y=y, a=a), level=0.8, n=1024, rng=np.random.default_rng(9))
    reweight = get_intervention("reweight").select(Pool.of(y=y, a=a), level=0.3, n=1024, rng=np.random.default_rng(9))
    assert np.array_equal(start.indices, collect.indices)
    assert np.array_equal(start.indices, reweight.indices)


def test_subselect_determinism() -> None:
    y, a = make_pool(PAPER_POOL)
    subselect = get_intervention("subselect")
    one = subselect.select(Pool.of(y=y, a=a), level=0.4, n=256, rng=np.random.default_rng(1))
    two = subselect.select(Pool.of(y=y, a=a), level=0.4, n=256, rng=np.random.default_rng(1))
    three = subselect.select(Pool.of(y=y, a=a), level=0.4, n=256, rng=np.random.default_rng(2))
    assert one == two
    assert not np.array_equal(one.indices, three.indices)


@FAST
@given(
    start_level=st.one_of(st.sampled_from(GRID), st.floats(0, 1)),
    levels=st.lists(st.one_of(st.sampled_from(GRID), st.floats(0, 1)), min_size=1, max_size=6),
    n=st.integers(2, 150),
    seed=st.integers(0, 2**32 - 1),
)
def test_subselect_properties(start_level: float, levels: list[float], n: int, seed: int) -> None:
    y, a = make_pool({cell: 80 for cell in CELL_ORDER}, seed)
    subselect = get_intervention("subselect", start_level=start_level)
    start = subselect.select(Pool.of(y=y, a=a), level=None, n=n, rng=np.random.default_rng(seed))
    assert start.cell_counts(y, a) == correlation_cells(start_level, n)
    c0 = Fraction(str(start_level))
    chosen: dict[float, set[int]] = {}
    for level in levels:
        c = Fraction(str(level))
        try:
            sel = subselect.select(Pool.of(y=y, a=a), level=level, n=n, rng=np.random.default_rng(seed))
        except InfeasibleSelectionError as exc:
            event("infeasible level")
            # only when fewer than 2 examples remain or the start set has no positive in the kept pair
            assert "cannot reach level" in str(exc)
            kept_positive = (1, 1) if c > c0 else (0, 1)
            assert subselect_size(start_level, level, n) < 2 or start.cell_counts(y, a)[kept_positive] == 0
            continue
        cells, start_cells = sel.cell_counts(y, a), start.cell_counts(y, a)
        assert all(cells[k] <= start_cells[k] for k in CELL_ORDER)
        assert len(sel) == subselect_size(start_level, level, n)
        real = c0 * n / c if c > c0 else ((1 - c0) * n / (1 - c) if c < c0 else n)
        assert real - 1 < len(sel) <= real
        assert np.unique(sel.indices).size == len(sel) and np.all(np.diff(sel.indices) > 0)
        chosen[level] = set(sel.indices)
    start_set = set(start.indices)
    for level, s in chosen.items():
        assert s <= start_set
        for other, t in chosen.items():
            same_side = (level - start_level) * (other - start_level) > 0
            if same_side and abs(other - start_level) >= abs(level - start_level):
                assert t <= s, (start_level, level, other)


def test_subselect_cells_grid_nested_and_within_start() -> None:
    """Pure cell arithmetic on a grid including small odd n, where the clamp to the start counts matters."""
    fine = [Fraction(i, 20) for i in range(21)]
    for n in range(2, 31):
        for c0 in (Fraction(i, 10) for i in range(11)):
            start = correlation_cells(c0, n)
            previous = {"above": dict(start), "below": dict(start)}
            for c in [c for c in fine if c >= c0] + [c for c in reversed(fine) if c < c0]:
                cells = subselect_cells(start, c0, c, n)
                assert sum(cells.values()) == subselect_size(c0, c, n), (n, c0, c)
                side = "above" if c >= c0 else "below"
                # nested: never more than the start set nor than the previous level on the same side
                assert all(cells[k] <= previous[side][k] for k in CELL_ORDER), (n, c0, c, cells)
                previous[side] = cells


def test_subselect_cannot_reach_positive_level_from_zero() -> None:
    y, a = make_pool({cell: 50 for cell in CELL_ORDER})
    subselect = get_intervention("subselect", start_level=0.0)
    message = r"cannot reach level 0\.5 from a start set at level 0"
    with pytest.raises(InfeasibleSelectionError, match=message):
        subselect.select(Pool.of(y=y, a=a), level=0.5, n=40, rng=np.random.default_rng(0))


def test_subselect_start_set_infeasible_names_cell() -> None:
    y, a = make_pool({(1, 1): 800, (0, 1): 50, (1, 0): 300, (0, 0): 700})  # natural 800/850
    subselect = get_intervention("subselect", start_level=0.8)
    message = r"cell \(a=0, y=1\) needs 102 examples but the pool has 50"
    with pytest.raises(InfeasibleSelectionError, match=message):
        subselect.select(Pool.of(y=y, a=a), level=0.5, n=1024, rng=np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------- reweight
@FAST
@given(
    sizes=st.fixed_dictionaries({cell: st.integers(1, 60) for cell in CELL_ORDER}),
    level=st.one_of(st.sampled_from(GRID), st.floats(0, 1)),
    n=st.integers(8, 100),
    seed=st.integers(0, 2**32 - 1),
)
def test_reweight_masses_equal_target(sizes, level, n, seed) -> None:
    y, a = make_pool(sizes, seed)
    reweight = get_intervention("reweight", start_level=0.5)
    need = correlation_cells(0.5, n)
    if any(need[k] > sizes[k] for k in CELL_ORDER):
        with pytest.raises(InfeasibleSelectionError, match="start set"):
            reweight.select(Pool.of(y=y, a=a), level=level, n=n, rng=np.random.default_rng(seed))
        return
    sel = reweight.select(Pool.of(y=y, a=a), level=level, n=n, rng=np.random.default_rng(seed))
    assert sel.weights is not None and sel.weights.shape == sel.indices.shape
    assert np.isclose(sel.weights.mean(), 1.0)
    assert sel.cell_counts(y, a) == need  # the natural set itself is unchanged
    masses = sel.cell_masses(y, a)
    total = sum(masses.values())
    assert np.isclose(total, n)
    target = {(1, 1): level / 2, (0, 1): (1 - level) / 2, (1, 0): (1 - level) / 2, (0, 0): level / 2}
    for cell in CELL_ORDER:
        assert np.isclose(masses[cell] / total, target[cell], atol=1e-12), (cell, masses, target)
    assert np.isclose(sel.level, level, atol=1e-12)
    # the weight is constant within a cell
    ys, as_ = y[sel.indices], a[sel.indices]
    for cell in CELL_ORDER:
        w = sel.weights[(as_ == cell[0]) & (ys == cell[1])]
        assert np.ptp(w) < 1e-12


def test_reweight_natural_level_gives_unit_weights_up_to_rounding() -> None:
    y, a = make_pool(PAPER_POOL)
    sel = get_intervention("reweight").select(Pool.of(y=y, a=a), level=None, n=1000, rng=np.random.default_rng(0))
    assert sel.weights is not None
    # cells 400/100/100/400 are exactly 0.8·500 etc.
    assert np.allclose(sel.weights, 1.0)


def test_reweight_missing_cell_is_named() -> None:
    y, a = make_pool({(1, 1): 100, (0, 1): 0, (1, 0): 0, (0, 0): 100})  # natural level 1
    reweight = get_intervention("reweight")
    with pytest.raises(InfeasibleSelectionError) as info:
        reweight.select(Pool.of(y=y, a=a), level=0.5, n=100, rng=np.random.default_rng(0))
    message = str(info.value)
    assert "cell (a=0, y=1) needs mass 25 but the natural set has no example" in message
    assert "cell (a=1, y=0) needs mass 25" in message
    # level 1 is fine: all mass on existing cells
    sel = reweight.select(Pool.of(y=y, a=a), level=1.0, n=100, rng=np.random.default_rng(0))
    assert np.allclose(sel.weights, 1.0)


def test_reweight_zero_target_gets_zero_weight() -> None:
    y, a = make_pool(PAPER_POOL)
    sel = get_intervention("reweight").select(Pool.of(y=y, a=a), level=1.0, n=100, rng=np.random.default_rng(0))
    assert sel.weights is not None
    minority = (y[sel.indices] != a[sel.indices])
    assert np.all(sel.weights[minority] == 0) and np.all(sel.weights[~minority] > 0)
    assert sel.level == 1.0

"""collect (constant N) and natural: exact cells, feasibility errors, determinism."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from biastransfer.interventions import (
    InfeasibleSelectionError,
    Pool,
    correlation_cells,
    get_intervention,
    natural_level,
)

FAST = settings(max_examples=120, deadline=None)
CELL_ORDER = ((1, 1), (0, 1), (1, 0), (0, 0))


def make_pool(sizes: dict[tuple[int, int], int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A shuffled pool with ``sizes[(a, y)]`` examples per cell."""
    a = np.concatenate([np.full(sizes[cell], cell[0]) for cell in CELL_ORDER]).astype(np.int64)
    y = np.concatenate([np.full(sizes[cell], cell[1]) for cell in CELL_ORDER]).astype(np.int64)
    perm = np.random.default_rng(seed).permutation(y.size)
    return y[perm], a[perm]


pools = st.fixed_dictionaries({cell: st.integers(0, 120) for cell in CELL_ORDER})
levels = st.one_of(st.sampled_from([round(0.1 * i, 1) for i in range(11)]), st.floats(0, 1))


@FAST
@given(sizes=pools, level=levels, n=st.integers(2, 300), seed=st.integers(0, 2**32 - 1))
def test_collect_exact_cells_or_named_infeasibility(sizes, level, n, seed) -> None:
    y, a = make_pool(sizes, seed)
    need = correlation_cells(level, n)
    feasible = all(need[cell] <= sizes[cell] for cell in CELL_ORDER)
    collect = get_intervention("collect")
    event("feasible" if feasible else "infeasible")
    if not feasible:
        with pytest.raises(InfeasibleSelectionError) as info:
            collect.select(Pool.of(y=y, a=a), level=level, n=n, rng=np.random.default_rng(seed))
        message = str(info.value)
        for cell in CELL_ORDER:
            name = f"(a={cell[0]}, y={cell[1]})"
            if need[cell] > sizes[cell]:
                assert f"cell {name} needs {need[cell]} examples but the pool has {sizes[cell]}" in message
            assert f"cell {name}: {sizes[cell]}" in message  # every available count is listed
        return
    sel = collect.select(Pool.of(y=y, a=a), level=level, n=n, rng=np.random.default_rng(seed))
    assert sel.cell_counts(y, a) == need
    assert len(sel) == n == sum(need.values())
    assert np.unique(sel.indices).size == n
    assert sel.indices.min() >= 0 and sel.indices.max() < y.size
    assert np.all(np.diff(sel.indices) > 0)  # sorted ascending
    assert sel.weights is None
    assert sel.level == pytest.approx(natural_level(y[sel.indices], a[sel.indices]))
    assert abs(sel.level - level) <= 0.5 / (n // 2) + 1e-12


def test_collect_infeasible_message_example() -> None:
    y, a = make_pool({(1, 1): 500, (0, 1): 500, (1, 0): 120, (0, 0): 500})
    with pytest.raises(InfeasibleSelectionError) as info:
        get_intervention("collect").select(Pool.of(y=y, a=a), level=0.2, n=1024, rng=np.random.default_rng(0))
    assert "cell (a=1, y=0) needs 410 examples but the pool has 120" in str(info.value)
    assert re.search(r"available: cell \(a=1, y=1\): 500, .*cell \(a=1, y=0\): 120", str(info.value))


def test_collect_level_none_uses_natural_level() -> None:
    y, a = make_pool({(1, 1): 300, (0, 1): 100, (1, 0): 200, (0, 0): 200})  # natural 0.75
    sel = get_intervention("collect").select(Pool.of(y=y, a=a), level=None, n=100, rng=np.random.default_rng(1))
    assert sel.cell_counts(y, a) == correlation_cells(0.75, 100)


def test_collect_is_deterministic_and_seed_dependent() -> None:
    y, a = make_pool({(1, 1): 300, (0, 1): 300, (1, 0): 300, (0, 0): 300})
    collect = get_intervention("collect")
    first = collect.select(Pool.of(y=y, a=a), level=0.3, n=200, rng=np.random.default_rng(42))
    again = collect.select(Pool.of(y=y, a=a), level=0.3, n=200, rng=np.random.default_rng(42))
    other = collect.select(Pool.of(y=y, a=a), level=0.3, n=200, rng=np.random.default_rng(43))
    assert np.array_equal(first.indices, again.indices)
    assert not np.array_equal(first.indices, other.indices)


def test_collect_draws_each_cell_uniformly() -> None:
    # each of 10 examples of cell (1,1) should be picked about half the time when 5 of 10 are needed
    y, a = make_pool({(1, 1): 10, (0, 1): 10, (1, 0): 10, (0, 0): 10})
    cell = np.flatnonzero((a == 1) & (y == 1))
    hits = np.zeros(y.size)
    for seed in range(400):
        sel = get_intervention("collect").select(Pool.of(y=y, a=a), level=0.5, n=20, rng=np.random.default_rng(seed))
        hits[sel.indices] += 1
    freq = hits[cell] / 400
    assert np.all(np.abs(freq - 0.5) < 0.12), freq


def test_collect_same_seed_shares_examples_across_levels() -> None:
    y, a = make_pool({(1, 1): 200, (0, 1): 200, (1, 0): 200, (0, 0): 200})
    collect = get_intervention("collect")
    low = collect.select(Pool.of(y=y, a=a), level=0.2, n=200, rng=np.random.default_rng(7))
    high = collect.select(Pool.of(y=y, a=a), level=0.8, n=200, rng=np.random.default_rng(7))
    pos11 = (y == 1) & (a == 1)
    # cell (a=1, y=1) at 0.2 (20 examples) is a prefix of the same order as at 0.8 (80 examples)
    assert set(low.indices[pos11[low.indices]]) <= set(high.indices[pos11[high.indices]])


# ------------------------------------------------------------------------------------------------ natural
def test_natural_samples_without_balancing() -> None:
    y, a = make_pool({(1, 1): 90, (0, 1): 10, (1, 0): 50, (0, 0): 350})
    natural = get_intervention("natural")
    sel = natural.select(Pool.of(y=y, a=a), level=None, n=100, rng=np.random.default_rng(3))
    assert len(sel) == 100 and np.unique(sel.indices).size == 100 and np.all(np.diff(sel.indices) > 0)
    assert sel.level == natural_level(y[sel.indices], a[sel.indices])
    # unbalanced on average: about 20% positives, not 50%
    counts = [natural.select(Pool.of(y=y, a=a), level=None, n=100, rng=np.random.default_rng(s)).cell_counts(y, a)
              for s in range(30)]
    mean_pos = np.mean([c[(1, 1)] + c[(0, 1)] for c in counts])
    assert 14 < mean_pos < 26


@pytest.mark.parametrize("n", [None, 500, 10_000])
def test_natural_whole_pool(n: int | None) -> None:
    y, a = make_pool({(1, 1): 90, (0, 1): 10, (1, 0): 50, (0, 0): 350})
    sel = get_intervention("natural").select(Pool.of(y=y, a=a), level=None, n=n, rng=np.random.default_rng(0))
    assert np.array_equal(sel.indices, np.arange(500))
    assert sel.level == 0.9


def test_natural_rejects_a_level() -> None:
    y, a = make_pool({(1, 1): 9, (0, 1): 1, (1, 0): 5, (0, 0): 5})
    with pytest.raises(ValueError, match="level must be None"):
        get_intervention("natural").select(Pool.of(y=y, a=a), level=0.5, n=10, rng=np.random.default_rng(0))


def test_natural_without_positives_has_nan_level() -> None:
    y, a = make_pool({(1, 1): 0, (0, 1): 0, (1, 0): 5, (0, 0): 5})
    sel = get_intervention("natural").select(Pool.of(y=y, a=a), level=None, n=4, rng=np.random.default_rng(0))
    assert np.isnan(sel.level)
    assert sel.to_dict()["level"] is None

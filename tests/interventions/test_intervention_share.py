"""Subgroup share sampler (underrepresentation protocol)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from biastransfer.interventions import (
    INTERVENTIONS,
    InfeasibleSelectionError,
    Pool,
    get_intervention,
    select_share,
    share_cells,
)

FAST = settings(max_examples=100, deadline=None)


def make_share_pool(t1_only: int, t2_only: int, both: int, neither: int, seed: int = 0):
    """``(y, subgroup)`` of a shuffled pool: y = T1 ∨ T2, subgroup = T2 among positives. Examples with both T1
    and T2 are left out, as the underrepresentation experiment leaves them out of its pools (``both`` only
    shifts the shuffle)."""
    t1 = np.concatenate([np.ones(t1_only), np.zeros(t2_only), np.ones(both), np.zeros(neither)]).astype(int)
    t2 = np.concatenate([np.zeros(t1_only), np.ones(t2_only), np.ones(both), np.zeros(neither)]).astype(int)
    perm = np.random.default_rng(seed).permutation(t1.size)
    t1, t2 = t1[perm], t2[perm]
    keep = ~((t1 == 1) & (t2 == 1))
    return (t1 | t2)[keep], t2[keep]


def test_share_cells_examples() -> None:
    assert share_cells(0.5, 128) == {(1, 1): 32, (0, 1): 32, (0, 0): 64}
    assert share_cells(0.1, 128) == {(1, 1): 6, (0, 1): 58, (0, 0): 64}  # 6.4 → 6
    assert share_cells(0.3, 1025) == {(1, 1): 154, (0, 1): 358, (0, 0): 513}  # 153.6 → 154


@FAST
@given(
    counts=st.tuples(*(st.integers(0, 100) for _ in range(4))),
    share=st.one_of(st.sampled_from([0.0, 0.1, 0.3, 0.5, 1.0]), st.floats(0, 1)),
    n=st.integers(2, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_select_share_exact_counts(counts, share, n, seed) -> None:
    t1_only, t2_only, _both, neither = counts
    y, sub = make_share_pool(*counts, seed=seed)
    need = share_cells(share, n)
    available = {(1, 1): t2_only, (0, 1): t1_only, (0, 0): neither}
    if any(need[k] > available[k] for k in need):
        event("infeasible")
        with pytest.raises(InfeasibleSelectionError) as info:
            select_share(y, sub, share=share, n=n, rng=np.random.default_rng(seed))
        message = str(info.value)
        assert f"T2 positives: {t2_only}" in message and f"T1 positives: {t1_only}" in message
        assert f"negatives (neither T1 nor T2): {neither}" in message
        return
    event("feasible")
    sel = select_share(y, sub, share=share, n=n, rng=np.random.default_rng(seed))
    ys, subs = y[sel.indices], sub[sel.indices]
    assert len(sel) == n and np.unique(sel.indices).size == n and np.all(np.diff(sel.indices) > 0)
    assert int(np.sum((ys == 1) & (subs == 1))) == need[(1, 1)]
    assert int(np.sum((ys == 1) & (subs == 0))) == need[(0, 1)]
    assert int(np.sum(ys == 0)) == n - n // 2  # negatives are half (the rest)
    assert sel.level == pytest.approx(need[(1, 1)] / (n // 2))
    assert abs(sel.level - share) <= 0.5 / (n // 2) + 1e-12
    assert sel.cell_counts(y, sub)[(1, 1)] == need[(1, 1)] and sel.cell_counts(y, sub)[(0, 1)] == need[(0, 1)]


def test_share_infeasible_message_names_cell() -> None:
    y, sub = make_share_pool(t1_only=500, t2_only=20, both=50, neither=500)
    with pytest.raises(InfeasibleSelectionError, match="T2 positives needs 154 examples but the pool has 20"):
        select_share(y, sub, share=0.3, n=1024, rng=np.random.default_rng(0))


def test_share_validation() -> None:
    y, sub = make_share_pool(50, 50, 5, 100)
    with pytest.raises(ValueError, match=r"^share must be in \[0, 1\], got 1.5"):
        select_share(y, sub, share=1.5, n=10, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^level must be in \[0, 1\], got 1.5"):
        get_intervention("subgroup_share").select(Pool.of(y=y, subgroup=sub), level=1.5, n=10,
                                                  rng=np.random.default_rng(0))
    bad = sub.copy()
    bad[0] = 3
    with pytest.raises(ValueError, match=r"^subgroup must be binary"):
        select_share(y, bad, share=0.5, n=10, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be an integer ≥ 2"):
        select_share(y, sub, share=0.5, n=1, rng=np.random.default_rng(0))


def test_share_registry_matches_function_and_natural_share() -> None:
    assert "subgroup_share" in INTERVENTIONS
    y, sub = make_share_pool(t1_only=300, t2_only=100, both=40, neither=400)  # natural share 0.25
    sampler = get_intervention("subgroup_share")
    via_registry = sampler.select(Pool.of(y=y, subgroup=sub), level=0.1, n=100, rng=np.random.default_rng(4))
    direct = select_share(y, sub, share=0.1, n=100, rng=np.random.default_rng(4))
    assert via_registry == direct
    natural = sampler.select(Pool.of(y=y, subgroup=sub), level=None, n=200, rng=np.random.default_rng(4))
    assert natural.level == 0.25


def test_share_determinism_and_nesting_across_shares() -> None:
    y, sub = make_share_pool(t1_only=300, t2_only=300, both=10, neither=400)
    one = select_share(y, sub, share=0.1, n=128, rng=np.random.default_rng(8))
    same = select_share(y, sub, share=0.1, n=128, rng=np.random.default_rng(8))
    other = select_share(y, sub, share=0.1, n=128, rng=np.random.default_rng(9))
    more = select_share(y, sub, share=0.3, n=128, rng=np.random.default_rng(8))
    assert one == same
    assert not np.array_equal(one.indices, other.indices)
    t2_one = set(one.indices[(y[one.indices] == 1) & (sub[one.indices] == 1)])
    t2_more = set(more.indices[(y[more.indices] == 1) & (sub[more.indices] == 1)])
    assert t2_one < t2_more  # 6 T2 positives are a prefix of the 19

"""domain_share (the domain-mixture protocol): exact counts per domain for every share and size, the realised
share, sets that overlap as much as possible across shares at one seed, and infeasible requests that name the
short domain with the counts."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from biastransfer.interventions import InfeasibleSelectionError, Pool, domain_cells, get_intervention
from biastransfer.interventions.domain import DOMAIN_CELL, OTHER_CELL

DOMAIN = np.repeat([1, 0, 1, 0], [100, 300, 50, 150])  # 150 of domain 1, 450 of domain 0, interleaved


def _select(q: float | None, n: int, seed: int = 0):
    return get_intervention("domain_share").select(Pool.of(domain=DOMAIN), level=q, n=n,
                                                   rng=np.random.default_rng(seed))


@pytest.mark.parametrize("n", [2, 7, 64, 128, 200])
@pytest.mark.parametrize("q", [0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75])
def test_exact_counts_for_every_share_and_size(q: float, n: int) -> None:
    if round(q * n) > 150:
        pytest.skip("more domain-1 examples than the pool has")
    sel = _select(q, n)
    expected_1 = round(Fraction(q) * n) if (Fraction(q) * n) % 1 != Fraction(1, 2) else None
    got_1 = int((DOMAIN[sel.indices] == 1).sum())
    assert len(sel) == n and len(np.unique(sel.indices)) == n
    assert got_1 == domain_cells(q, n)[DOMAIN_CELL] and n - got_1 == domain_cells(q, n)[OTHER_CELL]
    if expected_1 is not None:
        assert got_1 == expected_1
    assert sel.level == pytest.approx(got_1 / n) and sel.weights is None


def test_half_rounds_to_even() -> None:
    assert domain_cells(0.5, 5) == {DOMAIN_CELL: 2, OTHER_CELL: 3}  # 2.5 → 2
    assert domain_cells(Fraction(3, 10), 5) == {DOMAIN_CELL: 2, OTHER_CELL: 3}  # 1.5 → 2


def test_natural_share_is_the_pool_share() -> None:
    sel = _select(None, 100)
    assert sel.level == pytest.approx(0.25) and int((DOMAIN[sel.indices] == 1).sum()) == 25


def test_sets_at_one_seed_overlap_as_much_as_possible_across_shares() -> None:
    low, high = _select(0.1, 128), _select(0.3, 128)
    d1_low = set(low.indices[DOMAIN[low.indices] == 1])
    d1_high = set(high.indices[DOMAIN[high.indices] == 1])
    d0_low = set(low.indices[DOMAIN[low.indices] == 0])
    d0_high = set(high.indices[DOMAIN[high.indices] == 0])
    assert d1_low <= d1_high and d0_high <= d0_low  # prefixes of one order per domain
    assert _select(0.3, 128, seed=1) != high


def test_infeasible_share_names_the_short_domain_and_the_counts() -> None:
    with pytest.raises(InfeasibleSelectionError) as info:
        _select(0.5, 400)
    assert str(info.value) == ("domain share 0.5 with n=400: domain 1 (the shared domain) needs 200 examples but "
                               "the pool has 150 (available: domain 1 (the shared domain): 150, domain 0 (the "
                               "rest): 450)")

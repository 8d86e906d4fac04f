"""Domain share for the domain-mixture protocol (paper §5.2, Fig. 6; docs/protocols.md §5).

A finetuning set of fixed size ``n`` takes a share ``q`` of its examples from one domain (the pool column
``domain`` = 1, e.g. a geographically diverse source) and the rest from the other (``domain`` = 0, e.g. a
plentiful, uniform source), each uniformly without replacement; the classes come as the domains have them.
Counts are exact: ``n_1 = round(q · n)`` (exact arithmetic, half to even) and ``n_0 = n − n_1``. The draw takes a
prefix of one random order per domain (domain 1 first), so identically seeded generators give sets that share as
many examples as possible across shares. ``level`` of the selection is the realised share ``n_1 / n``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

import numpy as np

from biastransfer.data.table import DataError
from biastransfer.interventions.base import (
    INTERVENTIONS,
    Cell,
    Intervention,
    Pool,
    Selection,
    check_feasible,
    check_level,
    check_n,
    draw_orders,
    round_half_even,
    take_prefixes,
)

#: The two cells of a domain-share set (keyed like correlation cells so the shared helpers apply).
DOMAIN_CELL: Cell = (1, 1)
OTHER_CELL: Cell = (0, 1)
_CELL_NAMES = {DOMAIN_CELL: "domain 1 (the shared domain)", OTHER_CELL: "domain 0 (the rest)"}


def domain_cells(share: float | Fraction, n: int) -> dict[Cell, int]:
    """Exact counts: ``n_1 = round(q · n)`` (half to even), ``n_0 = n − n_1``."""
    q = check_level(share, "share")
    n = check_n(n)
    n1 = round_half_even(q * n)
    return {DOMAIN_CELL: n1, OTHER_CELL: n - n1}


def natural_domain_share(domain: np.ndarray) -> Fraction:
    """Exact share of domain 1 in the pool (DataError for an empty pool)."""
    if domain.size == 0:
        raise DataError("the pool is empty: its domain share is undefined")
    return Fraction(int((domain == 1).sum()), int(domain.size))


@INTERVENTIONS.register("domain_share")
class DomainShare(Intervention):
    """A set of exactly ``n`` examples, a share q (``level``) of them from domain 1 and the rest from domain 0.
    Infeasible requests name the short domain and the counts available."""

    description: ClassVar[str] = "fixed size n with a share q from domain 1 and the rest from domain 0"
    columns: ClassVar[tuple[str, ...]] = ("domain",)
    level_meaning: ClassVar[str] = "share q = N(domain=1) / N of the set taken from domain 1"

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        (domain,) = pool.binary("domain")
        q = natural_domain_share(domain) if level is None else check_level(level)
        n = check_n(n)  # type: ignore[arg-type]
        cells = {DOMAIN_CELL: np.flatnonzero(domain == 1), OTHER_CELL: np.flatnonzero(domain == 0)}
        need = domain_cells(q, n)
        check_feasible(f"domain share {float(q):g} with n={n}", need,
                       {cell: int(pos.size) for cell, pos in cells.items()}, _CELL_NAMES)
        indices = take_prefixes(draw_orders(cells, rng), need)
        return Selection(indices=indices, weights=None, level=need[DOMAIN_CELL] / n)

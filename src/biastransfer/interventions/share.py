"""Subgroup share for the underrepresentation protocol (docs/protocols.md §5).

The task label is ``T1 ∨ T2`` (two appearances of one object). The pool has the columns ``y`` (1 for T1 or T2
positives, 0 for negatives) and ``subgroup`` (among the positives: 1 for T2, 0 for T1; ignored for negatives);
examples that are both T1 and T2 are left out of the pool by the experiment. A set of size ``n`` has ``⌊n/2⌋``
positives, of which a share ``p`` are T2 and the rest T1; the other ``n − ⌊n/2⌋`` examples are negatives.

This is the correlation-level cell algebra with ``a`` replaced by ``subgroup`` and the two negative cells
merged, so ``subgroup_share`` is one more entry of :data:`~biastransfer.interventions.base.INTERVENTIONS`,
selected through the same :class:`~biastransfer.interventions.base.Pool` protocol as ``collect``. The returned
:class:`~biastransfer.interventions.base.Selection` has ``level`` = the realised share of T2 among positives;
``selection.cell_counts(y, subgroup)`` gives (a=1,y=1) = T2, (a=0,y=1) = T1 and the negatives in (·, y=0).
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
    check_binary,
    check_feasible,
    check_level,
    check_n,
    draw_orders,
    round_half_even,
    take_prefixes,
)

# Cells of a share set, keyed like correlation cells (a = T2, y = positive) so the shared helpers apply.
T2_CELL: Cell = (1, 1)
T1_CELL: Cell = (0, 1)
NEG_CELL: Cell = (0, 0)
_CELL_NAMES = {T2_CELL: "T2 positives", T1_CELL: "T1 positives", NEG_CELL: "negatives (neither T1 nor T2)"}


def share_cells(share: float | Fraction, n: int) -> dict[Cell, int]:
    """Exact integer cells of a share set: ``n_pos = n // 2``, ``n_T2 = round(p · n_pos)`` (exact
    arithmetic, half to even), ``n_T1 = n_pos − n_T2``, ``n_neg = n − n_pos``. Keys: (1,1) = T2, (0,1) = T1,
    (0,0) = negatives.
    """
    p = check_level(share, "share")
    n = check_n(n)
    n_pos = n // 2
    n_t2 = round_half_even(p * n_pos)
    return {T2_CELL: n_t2, T1_CELL: n_pos - n_t2, NEG_CELL: n - n_pos}


def _share_pool(y: np.ndarray, subgroup: np.ndarray) -> dict[Cell, np.ndarray]:
    """Pool positions of T2 positives, T1 positives and negatives, in the order the rng draws them."""
    return {
        T2_CELL: np.flatnonzero((y == 1) & (subgroup == 1)),
        T1_CELL: np.flatnonzero((y == 1) & (subgroup == 0)),
        NEG_CELL: np.flatnonzero(y == 0),
    }


def natural_share(y: np.ndarray, subgroup: np.ndarray) -> Fraction:
    """Exact ``N(y=1, subgroup=1) / N(y=1)`` of the pool (DataError if it has no positive)."""
    y, subgroup = check_binary(y=y, subgroup=subgroup)
    cells = _share_pool(y, subgroup)
    pos = cells[T1_CELL].size + cells[T2_CELL].size
    if pos == 0:
        raise DataError("the pool has no T1 or T2 positive: its subgroup share is undefined")
    return Fraction(int(cells[T2_CELL].size), pos)


def select_share(y: np.ndarray, subgroup: np.ndarray, *, share: float | Fraction, n: int,
                 rng: np.random.Generator) -> Selection:
    """A set of ``n`` examples whose positives (``⌊n/2⌋``) are a share ``share`` of T2 (subgroup 1) and the
    rest T1 (subgroup 0); the rest are negatives (y = 0).

    Cells from :func:`share_cells`; each drawn uniformly without replacement as a prefix of one random order
    per cell (T2, T1, negatives, in that order), so identically seeded generators give sets that share as many
    examples as possible across shares. Indices are sorted ascending. Raises
    :class:`~biastransfer.interventions.base.InfeasibleSelectionError` naming the short cell(s).
    """
    y, subgroup = check_binary(y=y, subgroup=subgroup)
    p = check_level(share, "share")
    n = check_n(n)
    pool = _share_pool(y, subgroup)
    need = share_cells(p, n)
    check_feasible(f"subgroup share {float(p):g} with n={n}", need,
                   {cell: int(pos.size) for cell, pos in pool.items()}, _CELL_NAMES)
    indices = take_prefixes(draw_orders(pool, rng), need)
    n_pos = need[T1_CELL] + need[T2_CELL]
    return Selection(indices=indices, weights=None, level=need[T2_CELL] / n_pos)


@INTERVENTIONS.register("subgroup_share")
class SubgroupShare(Intervention):
    """Positives are half the set; a share p (``level``) of them are T2 (``subgroup`` 1), the rest T1; the
    other half are negatives. See :func:`select_share`."""

    description: ClassVar[str] = "balanced positives/negatives with a share p of subgroup T2 among positives"
    columns: ClassVar[tuple[str, ...]] = ("y", "subgroup")
    level_meaning: ClassVar[str] = "share p = N(y=1, subgroup=1) / N(y=1) of T2 among the positives"

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        y, subgroup = pool.binary("y", "subgroup")
        share = natural_share(y, subgroup) if level is None else check_level(level)  # errors name "level"
        return select_share(y, subgroup, share=share, n=n, rng=rng)  # type: ignore[arg-type]

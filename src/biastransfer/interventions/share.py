"""Subgroup share for the underrepresentation protocol (REFERENCE §5).

The task label is ``T1 ∨ T2`` (two appearances of one object). A set of size ``n`` has ``⌊n/2⌋`` positives,
of which a share ``p`` are T2 and the rest T1; the other ``n − ⌊n/2⌋`` examples are negatives (neither T1
nor T2). Examples with both T1 and T2 are excluded from every cell.

Because the pool is described by two subgroup indicators (``t1``, ``t2``) rather than ``(y, a)``, share
samplers live in their own registry, :data:`SHARE_INTERVENTIONS`, whose classes have the same ``select``
signature with ``(t1, t2)`` in place of ``(y, a)`` and the share ``p`` passed as ``level``. The returned
:class:`~biastransfer.interventions.base.Selection` has ``level`` = the realised share of T2 among positives;
``selection.cell_counts(y=t1 | t2, a=t2)`` gives (a=1,y=1) = T2, (a=0,y=1) = T1, (a=0,y=0) = negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from biastransfer.data.table import DataError
from biastransfer.interventions.base import (
    Cell,
    Selection,
    check_binary,
    check_feasible,
    check_level,
    check_n,
    draw_orders,
    make_registered,
    round_half_even,
    take_prefixes,
)
from biastransfer.registry import Registry

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


def _share_pool(t1: np.ndarray, t2: np.ndarray) -> dict[Cell, np.ndarray]:
    """Pool positions of T2-only, T1-only and neither (examples with both are left out)."""
    return {
        T2_CELL: np.flatnonzero((t2 == 1) & (t1 == 0)),
        T1_CELL: np.flatnonzero((t1 == 1) & (t2 == 0)),
        NEG_CELL: np.flatnonzero((t1 == 0) & (t2 == 0)),
    }


def natural_share(t1: np.ndarray, t2: np.ndarray) -> Fraction:
    """Exact ``N(T2 only) / (N(T1 only) + N(T2 only))`` of the pool (DataError if it has neither)."""
    t1, t2 = check_binary(t1=t1, t2=t2)
    cells = _share_pool(t1, t2)
    pos = cells[T1_CELL].size + cells[T2_CELL].size
    if pos == 0:
        raise DataError("the pool has no T1-only or T2-only example: its subgroup share is undefined")
    return Fraction(int(cells[T2_CELL].size), pos)


def select_share(t1: np.ndarray, t2: np.ndarray, *, share: float | Fraction, n: int,
                 rng: np.random.Generator) -> Selection:
    """A set of ``n`` examples whose positives (``⌊n/2⌋``) are a share ``share`` of T2 and the rest T1.

    Cells from :func:`share_cells`; each drawn uniformly without replacement as a prefix of one random order
    per cell (T2, T1, negatives, in that order), so identically seeded generators give sets that share as many
    examples as possible across shares. Indices are sorted ascending. Raises
    :class:`~biastransfer.interventions.base.InfeasibleSelectionError` naming the short cell(s).
    """
    t1, t2 = check_binary(t1=t1, t2=t2)
    p = check_level(share, "share")
    n = check_n(n)
    pool = _share_pool(t1, t2)
    need = share_cells(p, n)
    check_feasible(f"subgroup share {float(p):g} with n={n}", need,
                   {cell: int(pos.size) for cell, pos in pool.items()}, _CELL_NAMES)
    indices = take_prefixes(draw_orders(pool, rng), need)
    n_pos = need[T1_CELL] + need[T2_CELL]
    return Selection(indices=indices, weights=None, level=need[T2_CELL] / n_pos)


class ShareIntervention:
    """Base class of registered subgroup-share samplers.

    Same shape as :class:`~biastransfer.interventions.base.Intervention`, with subgroup indicators
    ``(t1, t2)`` instead of ``(y, a)``.
    """

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""

    def select(self, t1: np.ndarray, t2: np.ndarray, *, level: float | None, n: int | None,
               rng: np.random.Generator) -> Selection:
        """``level`` is the share p of T2 among positives (None: the pool's natural share)."""
        raise NotImplementedError


SHARE_INTERVENTIONS: Registry[type[ShareIntervention]] = Registry("share intervention")


@SHARE_INTERVENTIONS.register("subgroup_share")
@dataclass(frozen=True)
class SubgroupShare(ShareIntervention):
    """Positives are half the set; a share p (``level``) of them are T2, the rest T1; negatives have neither;
    examples with both are excluded. See :func:`select_share`."""

    description: ClassVar[str] = "balanced positives/negatives with a share p of subgroup T2 among positives"

    def select(self, t1: np.ndarray, t2: np.ndarray, *, level: float | None, n: int | None,
               rng: np.random.Generator) -> Selection:
        share = natural_share(t1, t2) if level is None else check_level(level)  # errors name "level"
        return select_share(t1, t2, share=share, n=n, rng=rng)  # type: ignore[arg-type]


def get_share_intervention(name: str, **options: Any) -> ShareIntervention:
    """An instance of the registered share intervention ``name``."""
    return make_registered(SHARE_INTERVENTIONS, name, options)

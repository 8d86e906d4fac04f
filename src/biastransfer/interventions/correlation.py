"""Correlation-level interventions (docs/protocols.md §2): ``collect``, ``subselect``, ``reweight`` and ``natural``.

All draws go through :func:`~biastransfer.interventions.base.draw_orders`: each pool cell ``(a, y)`` is put in
one uniformly random order (cells in the fixed order (1,1), (0,1), (1,0), (0,0)), and a set takes a prefix of
each cell's order. The rng is therefore consumed identically whatever the level, so callers that pass a fresh
generator seeded identically for every level (e.g. ``seeding.rng(seed, "train-set", task, n)``) get sets that
share as many examples as possible, and ``subselect`` sets are nested.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import ClassVar

import numpy as np
from pydantic import Field

from biastransfer.interventions.base import (
    INTERVENTIONS,
    Cell,
    InfeasibleSelectionError,
    Intervention,
    Pool,
    Selection,
    cell_name,
    check_feasible,
    check_level,
    check_n,
    correlation_cells,
    draw_orders,
    natural_level_fraction,
    pool_cells,
    realised_level,
    round_half_even,
    take_prefixes,
)


def _counts(cells: dict[Cell, np.ndarray]) -> dict[Cell, int]:
    return {cell: int(pos.size) for cell, pos in cells.items()}


def _weighted_level(ys: np.ndarray, as_: np.ndarray, weights: np.ndarray) -> float:
    """Σw over (a=1,y=1) / Σw over y=1 of the selected examples; nan without positive mass."""
    pos = float(weights[ys == 1].sum())
    return float(weights[(ys == 1) & (as_ == 1)].sum()) / pos if pos > 0 else math.nan


def _fmt(level: Fraction | float) -> str:
    return f"{float(level):g}"


# ------------------------------------------------------------------------------------------------- collect
@INTERVENTIONS.register("collect")
class Collect(Intervention):
    """Constant N: a balanced set of exactly ``n`` examples at level ``c``, drawn afresh from the pool.

    Cells (a=1,y=1) = c·n/2, (a=0,y=1) = (1−c)·n/2, (a=1,y=0) = (1−c)·n/2, (a=0,y=0) = c·n/2, made integer by
    :func:`~biastransfer.interventions.base.correlation_cells` (n_pos = n//2, n11 = round(c·n_pos),
    n00 = round(c·(n − n_pos)), half to even). Each cell is drawn uniformly without replacement.
    """

    description: ClassVar[str] = "balanced set of constant size n at correlation level c, drawn from the pool"
    balances = True
    reference = True
    plot_order = 0

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        y, a = pool.binary("y", "a")
        n = check_n(n)  # type: ignore[arg-type]
        c = natural_level_fraction(y, a) if level is None else check_level(level)
        cells = pool_cells(y, a)
        need = correlation_cells(c, n)
        check_feasible(f"collect at level {_fmt(c)} with n={n}", need, _counts(cells))
        indices = take_prefixes(draw_orders(cells, rng), need)
        return Selection(indices=indices, weights=None, level=realised_level(need))


# -------------------------------------------------------------------------------------- the natural start set
class _FromStartSet(Intervention):
    """Shared part of ``subselect`` and ``reweight``: the start set is ``collect`` at ``start_level``
    (default: the pool's natural level c0) with size ``n``, drawn exactly as ``collect`` draws it."""

    start_level: float | None = Field(None, ge=0.0, le=1.0, description="level of the start set (default: the "
                                      "pool's natural level)")

    def _start(self, y: np.ndarray, a: np.ndarray, n: int | None, level: float | None, rng: np.random.Generator,
               ) -> tuple[Fraction, Fraction, dict[Cell, int], dict[Cell, np.ndarray]]:
        """Draw the natural start set of validated ``y``, ``a``: (c0, target level c, start cell counts, orders)."""
        n = check_n(n)  # type: ignore[arg-type]
        c0 = natural_level_fraction(y, a) if self.start_level is None else check_level(self.start_level, "start_level")
        cells = pool_cells(y, a)
        start = correlation_cells(c0, n)
        what = f"{self.registry_name} start set at level {_fmt(c0)} with n={n}"
        check_feasible(what, start, _counts(cells))
        c = c0 if level is None else check_level(level)
        return c0, c, start, draw_orders(cells, rng)


def _split(total: int, caps: tuple[int, int], weights: tuple[int, int]) -> tuple[int, int]:
    """Split ``total`` into two parts proportional to ``weights`` (round half to even), clamped to ``caps``.

    Both parts are non-decreasing in ``total`` (this is what makes subselect's sets nested); requires
    ``0 ≤ total ≤ caps[0] + caps[1]``.
    """
    w1, w2 = weights
    if w1 + w2 == 0:
        w1 = w2 = 1
    x1 = round_half_even(Fraction(total * w1, w1 + w2))
    x1 = max(total - caps[1], min(caps[0], x1))
    return x1, total - x1


def subselect_size(c0: Fraction | float, level: Fraction | float, n: int) -> int:
    """The size of the subselected set (docs/protocols.md §2), exact arithmetic, rounded down:

    * ``c > c0``: ``⌊c0·n / c⌋`` (keep (a=1,y=1) and (a=0,y=0), c0·n/2 each; shrink the other two to
      c0·n/2·(1−c)/c each);
    * ``c < c0``: ``⌊(1−c0)·n / (1−c)⌋`` (keep (a=0,y=1) and (a=1,y=0), (1−c0)·n/2 each; shrink the majority
      to (1−c0)·n/2·c/(1−c) each);
    * ``c = c0``: ``n``.

    From n=1024 at c0=0.8: 0.9→910, 1.0→819, 0.7→682, 0.6→512, 0.5→409, 0.4→341, 0.3→292, 0.2→256.
    """
    c0 = check_level(c0, "start_level")
    c = check_level(level)
    if c == c0:
        return n
    size = math.floor(c0 * n / c) if c > c0 else math.floor((1 - c0) * n / (1 - c))
    return min(size, n)


def subselect_cells(start: dict[Cell, int], c0: Fraction | float, level: Fraction | float,
                    n: int) -> dict[Cell, int]:
    """Integer cells of the subselected set, each ≤ the start set's cell and non-increasing as ``level`` moves
    away from ``c0`` on either side (hence nested prefixes).

    With S = :func:`subselect_size`, kept cells K (c > c0: (1,1), (0,0); c < c0: (0,1), (1,0)) and the
    other two "shrunk" cells: if S ≥ ΣK the kept cells stay whole and the S − ΣK remaining examples are split
    between the shrunk cells in proportion to their kept partner on the same label side ((0,1)↔(1,1),
    (1,0)↔(0,0) for c > c0; (1,1)↔(0,1), (0,0)↔(1,0) for c < c0), rounded half to even and clamped to the
    start counts. If S < ΣK (rounding of the start set, e.g. c=1.0: S=819 < 410+410) the shrunk cells are
    empty and S is split between the kept cells the same way.
    """
    c0 = check_level(c0, "start_level")
    c = check_level(level)
    if c == c0:
        return dict(start)
    if c > c0:
        kept, shrunk = ((1, 1), (0, 0)), ((0, 1), (1, 0))
    else:
        kept, shrunk = ((0, 1), (1, 0)), ((1, 1), (0, 0))
    size = subselect_size(c0, c, n)
    kept_caps = (start[kept[0]], start[kept[1]])
    out: dict[Cell, int] = {}
    if size >= sum(kept_caps):
        out[kept[0]], out[kept[1]] = kept_caps
        out[shrunk[0]], out[shrunk[1]] = _split(size - sum(kept_caps), (start[shrunk[0]], start[shrunk[1]]),
                                                kept_caps)
    else:
        out[kept[0]], out[kept[1]] = _split(size, kept_caps, kept_caps)
        out[shrunk[0]] = out[shrunk[1]] = 0
    return {cell: out[cell] for cell in start}


@INTERVENTIONS.register("subselect")
class Subselect(_FromStartSet):
    """Constrained, nested: start from one natural set of size ``n`` and only remove images.

    The start set is ``collect`` at ``start_level`` (option; default the pool's natural level c0) with size
    ``n``. For c > c0 the cells (a=1,y=1) and (a=0,y=0) (c0·n/2 each) are kept and (a=0,y=1), (a=1,y=0) shrink
    to c0·n/2·(1−c)/c each (size ⌊c0·n/c⌋); for c < c0 the cells (a=0,y=1) and (a=1,y=0) ((1−c0)·n/2 each)
    are kept and the majority shrinks to (1−c0)·n/2·c/(1−c) each (size ⌊(1−c0)·n/(1−c)⌋). Integer cells:
    :func:`subselect_cells`.

    **Determinism and nesting**: the start set and one random order within each of its cells are drawn from
    ``rng`` (identically for every level), and each level takes prefixes. Pass a *fresh* generator seeded
    identically for every level of a sweep: then every set is a subset of the start set, and sets on the same
    side of c0 are nested in each other.
    """

    description: ClassVar[str] = "remove images from one natural set of size n until it has level c (nested)"
    balances = True
    plot_order = 1

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        y, a = pool.binary("y", "a")
        c0, c, start, orders = self._start(y, a, n, level, rng)
        n = sum(start.values())
        cells = subselect_cells(start, c0, c, n)
        if cells[(1, 1)] + cells[(0, 1)] == 0 or sum(cells.values()) < 2:
            raise InfeasibleSelectionError(
                f"subselect cannot reach level {_fmt(c)} from a start set at level {_fmt(c0)} with n={n}: "
                f"the set would keep {sum(cells.values())} examples "
                f"({', '.join(f'{cell_name(k)}: {v}' for k, v in cells.items())})")
        return Selection(indices=take_prefixes(orders, cells), weights=None, level=realised_level(cells))


@INTERVENTIONS.register("reweight")
class Reweight(_FromStartSet):
    """Keep the natural set (the same draw as ``subselect``'s start set) and weight each example so that the
    weighted cell masses equal the target level's cells.

    Target masses (real, exact): (a=1,y=1) = c·n/2, (a=0,y=1) = (1−c)·n/2, (a=1,y=0) = (1−c)·n/2,
    (a=0,y=0) = c·n/2. Each example of cell k gets ``w_k = target_k / count_k``, then weights are normalised
    to mean 1 (they already sum to n). The weighted level is therefore exactly c and the weighted positives
    are exactly half. A cell with target mass > 0 but no example in the natural set raises
    :class:`InfeasibleSelectionError`; a cell with target 0 gets weight 0.
    """

    description: ClassVar[str] = "keep the natural set of size n and weight examples to reach level c"
    balances = True
    plot_order = 2

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        y, a = pool.binary("y", "a")
        c0, c, start, orders = self._start(y, a, n, level, rng)
        n = sum(start.values())
        half = Fraction(n, 2)
        target = {(1, 1): c * half, (0, 1): (1 - c) * half, (1, 0): (1 - c) * half, (0, 0): c * half}
        empty = [cell for cell in start if start[cell] == 0 and target[cell] > 0]
        if empty:
            counts = ", ".join(f"{cell_name(k)}: {v}" for k, v in start.items())
            raise InfeasibleSelectionError(
                f"reweight to level {_fmt(c)} with n={n}: "
                + "; ".join(f"cell {cell_name(k)} needs mass {float(target[k]):g} but the natural set has no "
                            f"example of it" for k in empty)
                + f" (natural set at level {_fmt(c0)}: {counts})")
        indices = take_prefixes(orders, start)
        ys, as_ = y[indices], a[indices]
        weights = np.zeros(indices.size, dtype=np.float64)
        for cell in start:
            if start[cell]:
                weights[(as_ == cell[0]) & (ys == cell[1])] = float(target[cell] / start[cell])
        weights /= weights.mean()
        return Selection(indices=indices, weights=weights, level=_weighted_level(ys, as_, weights))


# ------------------------------------------------------------------------------------------------- natural
@INTERVENTIONS.register("natural")
class Natural(Intervention):
    """A uniform random sample of ``n`` examples of the pool, with no balancing (``n`` None or ≥ the pool
    size: the whole pool). ``level`` must be None; the Selection's level is the realised one (nan if the
    sample has no positive)."""

    description: ClassVar[str] = "uniform random sample of n pool examples, or the whole pool (no balancing)"
    takes_level = False
    plot_order = 3

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        y, a = pool.binary("y", "a")
        if level is not None:
            raise ValueError(f"intervention 'natural' keeps the pool's own level; level must be None, "
                             f"got {level}")
        size = y.size
        if n is None or check_n(n) >= size:
            indices = np.arange(size, dtype=np.int64)
        else:
            indices = np.sort(rng.choice(size, size=n, replace=False).astype(np.int64))
        return Selection(indices=indices, weights=None,
                         level=_weighted_level(y[indices], a[indices], np.ones(indices.size)))

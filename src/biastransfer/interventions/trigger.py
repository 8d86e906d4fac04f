"""The de-biased target of the planted-trigger protocol (Salman et al.; docs/protocols.md §7, docs/interventions.md).

A finetuning set of ``n`` examples in which a share ``p`` of **every class's** examples carries the trigger, so the
trigger says nothing about the target label. The pool lists candidate *images*: each example appears once clean
(``triggered`` = 0) and once with the trigger pasted on (``triggered`` = 1); column ``example`` ties the
two versions of one example together and column ``y`` holds its class (an integer index). A set never holds both
versions of an example.

Counts are exact:

- the classes share ``n`` in proportion to their number of examples in the pool, ``n_c = ⌊n·m_c/M⌋`` plus one
  for the classes with the largest remainders (ties to the lower class index), so ``Σ_c n_c = n``;
- ``k_c = round(p · n_c)`` (exact arithmetic, half to even) of class ``c``'s examples carry the trigger, the other
  ``n_c − k_c`` are clean.

The draw takes, per class (ascending), one random order of its examples: the set is its first ``n_c`` examples,
and the first ``k_c`` of them are triggered. The generator is consumed the same way whatever ``p`` and ``n``, so at
one seed the sets of every ``p`` hold the same examples and the triggered examples of a smaller ``p`` are triggered
at a larger one. (Sets of different ``n`` share most examples but need not nest: largest-remainder counts are not
monotone in ``n``.) ``level`` of the selection is the realised share
``Σ_c k_c / n``; ``level=None`` (the pool's own) means ``p = 0``: a target that never saw the trigger.
"""

from __future__ import annotations

from fractions import Fraction
from typing import ClassVar

import numpy as np

from biastransfer.interventions.base import (
    INTERVENTIONS,
    InfeasibleSelectionError,
    Intervention,
    Pool,
    Selection,
    check_level,
    check_n,
    round_half_even,
)


def _integers(pool: Pool, name: str) -> np.ndarray:
    if name not in pool.columns:
        raise ValueError(f"the pool has no column {name!r}; it has {', '.join(map(repr, pool.columns)) or 'none'}")
    x = np.asarray(pool.columns[name])
    if x.ndim != 1 or (x.size and not np.issubdtype(x.dtype, np.integer)) or (x.size and x.min() < 0):
        raise ValueError(f"{name} must be a 1-D array of non-negative integers")
    return x.astype(np.int64)


def class_counts(sizes: dict[int, int], n: int) -> dict[int, int]:
    """``n`` shared among classes in proportion to ``sizes`` (examples per class) by largest remainder, ties to the
    lower class index; every ``n_c ≤ m_c`` because ``n ≤ Σ m_c``."""
    total = sum(sizes.values())
    exact = {c: Fraction(n * m, total) for c, m in sizes.items()}
    counts = {c: int(q) for c, q in exact.items()}
    order = sorted(sizes, key=lambda c: (-(exact[c] - counts[c]), c))
    for c in order[: n - sum(counts.values())]:
        counts[c] += 1
    return counts


@INTERVENTIONS.register("trigger_rate")
class TriggerRate(Intervention):
    """``n`` examples in proportion to the classes, a share ``p`` of every class's examples triggered."""

    description: ClassVar[str] = "fixed size n; a share p of every class's examples carries the trigger (de-biased)"
    columns: ClassVar[tuple[str, ...]] = ("y", "triggered", "example")
    level_meaning: ClassVar[str] = "share p of every class's examples that carry the trigger"

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        y = _integers(pool, "y")
        (triggered,) = pool.binary("triggered")
        example = _integers(pool, "example")
        if not y.size == triggered.size == example.size:
            raise ValueError(f"pool columns must have the same length, got {y.size}, {triggered.size}, "
                             f"{example.size}")
        p = Fraction(0) if level is None else check_level(level)
        n = check_n(n)  # type: ignore[arg-type]
        clean_pos = np.flatnonzero(triggered == 0)
        trig_pos = np.flatnonzero(triggered == 1)
        examples, first = np.unique(example[clean_pos], return_index=True)
        if examples.size != clean_pos.size:
            raise ValueError("every example must have exactly one clean version (column 'example' repeats among "
                             "the rows with triggered = 0)")
        clean_of = clean_pos[first]
        trig_of = np.full(examples.size, -1, dtype=np.int64)
        where = np.searchsorted(examples, example[trig_pos])
        known = (where < examples.size) & (examples[np.minimum(where, examples.size - 1)] == example[trig_pos])
        if not known.all() or np.unique(example[trig_pos]).size != trig_pos.size or trig_pos.size != examples.size:
            raise ValueError("every example must have exactly one clean and one triggered version (column "
                             "'example' pairs them)")
        trig_of[where] = trig_pos
        if np.any(y[trig_pos] != y[clean_of[where]]):
            raise ValueError("the two versions of an example must have the same class 'y'")
        classes = y[clean_of]
        sizes = {int(c): int(np.count_nonzero(classes == c)) for c in np.unique(classes)}
        if n > examples.size:
            raise InfeasibleSelectionError(
                f"trigger rate {float(p):g} with n={n}: the pool has {examples.size} examples "
                f"({', '.join(f'class {c}: {m}' for c, m in sizes.items())})")
        need = class_counts(sizes, n)
        picked: list[np.ndarray] = []
        for c in sorted(sizes):
            order = rng.permutation(np.flatnonzero(classes == c))[: need[c]]
            k = round_half_even(p * need[c])
            picked += [trig_of[order[:k]], clean_of[order[k:]]]
        indices = np.sort(np.concatenate(picked))
        n_triggered = int(np.count_nonzero(triggered[indices] == 1))
        return Selection(indices=indices, weights=None, level=n_triggered / n)

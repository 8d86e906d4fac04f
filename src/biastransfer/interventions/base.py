"""The currency of the interventions stage: a :class:`Selection` of pool positions (plus optional weights).

Interventions are data, not algorithms: each registered :class:`Intervention` looks only at the named columns of
a :class:`Pool` that it declares (``y`` and ``a`` for the correlation interventions, ``y`` and ``subgroup`` for
the subgroup share) and returns which examples (and with which loss weights) make up a finetuning set. The
training engine never learns which intervention made a Selection.

Conventions shared by every module in this package:

* Cells are keyed ``(a, y)``; the **correlation level** is ``c = N(a=1, y=1) / N(y=1)`` (docs/protocols.md §1).
* Indices are positions into the pool's columns (not table rows); the experiment maps them with
  ``pool_rows[selection.indices]``. They are returned **sorted ascending**; weights are aligned with them.
* Levels are turned into exact fractions from their shortest decimal form (``0.8`` → 4/5) before any rounding,
  so ``0.5 · 5`` is exactly 2.5 and rounds half-to-even to 2, whatever binary floating point would say.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from biastransfer.data.table import DataError
from biastransfer.registry import Registry, make_registered

Cell = tuple[int, int]
"""A cell key ``(a, y)``."""

CELLS: tuple[Cell, ...] = ((1, 1), (0, 1), (1, 0), (0, 0))
"""The four cells in the fixed order used for drawing (the rng is consumed in this order)."""


class InfeasibleSelectionError(DataError):
    """The pool does not hold enough examples for a requested set; the message names the cell(s) and lists
    the available count of every cell."""


def cell_name(cell: Cell) -> str:
    """``(1, 0)`` → ``"(a=1, y=0)"``."""
    return f"(a={cell[0]}, y={cell[1]})"


# ------------------------------------------------------------------------------------------------ Selection
@dataclass(frozen=True, eq=True)
class Selection:
    """A finetuning (or evaluation) set drawn from a pool.

    Attributes:
        indices: int64 positions into the pool arrays that were passed to ``select``, unique. Every sampler
            in this package returns them **sorted ascending** (the class itself only requires uniqueness).
            Read-only.
        weights: float64 loss weight per selected example (aligned with ``indices``), non-negative with
            mean 1, or ``None`` for uniform weights. Read-only.
        level: the level the set realises. For correlation interventions ``c = N(a=1,y=1) / N(y=1)`` over the
            selected examples, weighted by ``weights`` when given; ``nan`` only if the set has no positive
            (possible only for ``natural``). For subgroup-share selections it is the realised share of T2
            among the positives.
    """

    indices: np.ndarray
    weights: np.ndarray | None
    level: float

    def __post_init__(self) -> None:
        idx = np.asarray(self.indices)
        if idx.ndim != 1:
            raise ValueError(f"selection indices must be 1-D, got shape {idx.shape}")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"selection indices must be integers, got dtype {idx.dtype}")
        idx = np.array(idx, dtype=np.int64)
        if idx.size and idx.min() < 0:
            raise ValueError("selection indices must be non-negative")
        if np.unique(idx).size != idx.size:
            raise ValueError("selection indices must be unique")
        idx.setflags(write=False)
        object.__setattr__(self, "indices", idx)
        if self.weights is not None:
            w = np.array(self.weights, dtype=np.float64)
            if w.shape != idx.shape:
                raise ValueError(f"selection has {idx.size} indices but {w.size} weights")
            if w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("selection weights must be finite, non-negative and non-empty")
            if not math.isclose(float(w.mean()), 1.0, rel_tol=1e-9):
                raise ValueError(f"selection weights must have mean 1, got {w.mean()!r}")
            w.setflags(write=False)
            object.__setattr__(self, "weights", w)
        object.__setattr__(self, "level", float(self.level))

    def __len__(self) -> int:
        return int(self.indices.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selection):
            return NotImplemented
        same_level = self.level == other.level or (math.isnan(self.level) and math.isnan(other.level))
        if self.weights is None or other.weights is None:
            same_weights = self.weights is None and other.weights is None
        else:
            same_weights = np.array_equal(self.weights, other.weights)
        return same_level and same_weights and np.array_equal(self.indices, other.indices)

    def __hash__(self) -> int:
        return hash((self.indices.tobytes(), None if self.weights is None else self.weights.tobytes()))

    def cell_counts(self, y: np.ndarray, a: np.ndarray) -> dict[Cell, int]:
        """Unweighted number of selected examples per cell ``(a, y)``; ``y``, ``a`` are the pool arrays."""
        ys, as_ = np.asarray(y)[self.indices], np.asarray(a)[self.indices]
        return {(ca, cy): int(np.count_nonzero((as_ == ca) & (ys == cy))) for ca, cy in CELLS}

    def cell_masses(self, y: np.ndarray, a: np.ndarray) -> dict[Cell, float]:
        """Sum of weights in each cell ``(a, y)`` (equals :meth:`cell_counts` when ``weights`` is None)."""
        ys, as_ = np.asarray(y)[self.indices], np.asarray(a)[self.indices]
        w = np.ones(len(self)) if self.weights is None else self.weights
        return {(ca, cy): float(w[(as_ == ca) & (ys == cy)].sum()) for ca, cy in CELLS}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (plain ints/floats; a ``nan`` level is stored as ``None``)."""
        return {
            "indices": [int(i) for i in self.indices],
            "weights": None if self.weights is None else [float(w) for w in self.weights],
            "level": None if math.isnan(self.level) else self.level,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        """Inverse of :meth:`to_dict`."""
        missing = {"indices", "weights", "level"} - set(data)
        if missing:
            raise ValueError(f"selection dict lacks {sorted(missing)}")
        level = data["level"]
        return cls(
            indices=np.asarray(data["indices"], dtype=np.int64),
            weights=None if data["weights"] is None else np.asarray(data["weights"], dtype=np.float64),
            level=math.nan if level is None else float(level),
        )


# ------------------------------------------------------------------------------------------------- validation
def check_level(level: float | Fraction, name: str = "level") -> Fraction:
    """``level`` as an exact fraction of its shortest decimal form (a Fraction passes through); ValueError
    unless ``0 ≤ level ≤ 1``."""
    if isinstance(level, Fraction):
        if not 0 <= level <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {float(level)}")
        return level
    if isinstance(level, bool) or not isinstance(level, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number in [0, 1], got {level!r}")
    value = float(level)
    if not 0.0 <= value <= 1.0:  # also rejects nan
        raise ValueError(f"{name} must be in [0, 1], got {level}")
    return Fraction(str(value))


def check_n(n: int, name: str = "n") -> int:
    """``n`` as an int; ValueError unless it is an integer ≥ 2."""
    try:
        if isinstance(n, bool):
            raise TypeError
        value = operator.index(n)
    except TypeError:
        raise ValueError(f"{name} must be an integer ≥ 2, got {n!r}") from None
    if value < 2:
        raise ValueError(f"{name} must be an integer ≥ 2, got {value}")
    return value


def check_binary(**arrays: np.ndarray) -> list[np.ndarray]:
    """Validate 1-D binary (0/1 or bool) arrays of equal length, named by keyword; returns them as int8."""
    out: list[np.ndarray] = []
    length: int | None = None
    for name, arr in arrays.items():
        x = np.asarray(arr)
        if x.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array, got shape {x.shape}")
        if x.dtype != bool and not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"{name} must be binary (0/1), got dtype {x.dtype}")
        bad = np.setdiff1d(np.unique(x), (0, 1))
        if bad.size:
            raise ValueError(f"{name} must be binary (0/1); found values {bad[:5].tolist()}")
        if length is not None and x.size != length:
            names = list(arrays)
            raise ValueError(f"{names[0]} and {name} must have the same length, got {length} and {x.size}")
        length = x.size
        out.append(x.astype(np.int8))
    return out


def round_half_even(x: Fraction) -> int:
    """Exact round-half-to-even of a fraction (Python's ``round`` on a Fraction)."""
    return round(x)


# ----------------------------------------------------------------------------------------------- cell algebra
def pool_cells(y: np.ndarray, a: np.ndarray) -> dict[Cell, np.ndarray]:
    """Positions of each cell ``(a, y)`` in the pool, ascending."""
    return {(ca, cy): np.flatnonzero((a == ca) & (y == cy)) for ca, cy in CELLS}


def natural_level_fraction(y: np.ndarray, a: np.ndarray) -> Fraction:
    """Exact ``N(a=1,y=1) / N(y=1)``; DataError if there is no positive."""
    y, a = check_binary(y=y, a=a)
    n_pos = int(np.count_nonzero(y == 1))
    if n_pos == 0:
        raise DataError("the pool has no positive example (y=1): its correlation level is undefined")
    return Fraction(int(np.count_nonzero((y == 1) & (a == 1))), n_pos)


def natural_level(y: np.ndarray, a: np.ndarray) -> float:
    """The correlation level ``c = N(a=1, y=1) / N(y=1)`` of the given arrays (DataError if no positive)."""
    return float(natural_level_fraction(y, a))


def correlation_cells(level: float | Fraction, n: int) -> dict[Cell, int]:
    """Exact integer cells of a balanced set of size ``n`` at correlation level ``c = level``.

    The formula (docs/protocols.md §2) is (a=1,y=1) = c·n/2, (a=0,y=1) = (1−c)·n/2, (a=1,y=0) = (1−c)·n/2,
    (a=0,y=0) = c·n/2. Integer rule (exact arithmetic, round half to even)::

        n_pos = n // 2                 n_neg = n − n_pos
        n11 = round(c · n_pos)         n01 = n_pos − n11
        n00 = round(c · n_neg)         n10 = n_neg − n00

    so the cells sum to exactly ``n``, positives are ``⌊n/2⌋`` and each cell is within 1/2 of ``c`` (or
    ``1−c``) times its half. Keys are ``(a, y)``.
    """
    c = check_level(level)
    n = check_n(n)
    n_pos = n // 2
    n_neg = n - n_pos
    n11 = round_half_even(c * n_pos)
    n00 = round_half_even(c * n_neg)
    return {(1, 1): n11, (0, 1): n_pos - n11, (1, 0): n_neg - n00, (0, 0): n00}


def realised_level(cells: dict[Cell, float]) -> float:
    """``cells[(1,1)] / (cells[(1,1)] + cells[(0,1)])``, ``nan`` when there is no positive mass."""
    pos = cells[(1, 1)] + cells[(0, 1)]
    return float(cells[(1, 1)] / pos) if pos > 0 else math.nan


def check_feasible(what: str, needed: dict[Cell, int], available: dict[Cell, int],
                   names: dict[Cell, str] | None = None) -> None:
    """Raise :class:`InfeasibleSelectionError` if any cell needs more examples than the pool has."""
    label = names or {cell: f"cell {cell_name(cell)}" for cell in needed}
    short = [f"{label[cell]} needs {needed[cell]} examples but the pool has {available[cell]}"
             for cell in needed if needed[cell] > available[cell]]
    if short:
        counts = ", ".join(f"{label[cell]}: {available[cell]}" for cell in needed)
        raise InfeasibleSelectionError(f"{what}: {'; '.join(short)} (available: {counts})")


def draw_orders(cells: dict[Cell, np.ndarray], rng: np.random.Generator) -> dict[Cell, np.ndarray]:
    """One uniformly random order of every pool cell, drawn in the fixed order of ``cells``.

    The rng is consumed identically whatever the requested counts, so taking prefixes of these orders gives
    sets that are nested across levels when callers pass identically seeded generators.
    """
    return {cell: rng.permutation(positions) for cell, positions in cells.items()}


def take_prefixes(orders: dict[Cell, np.ndarray], counts: dict[Cell, int]) -> np.ndarray:
    """The first ``counts[cell]`` positions of each cell's order, concatenated and sorted ascending."""
    parts = [orders[cell][: counts[cell]] for cell in orders]
    return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.empty(0, np.int64)


# ------------------------------------------------------------------------------------------------ the pool
@dataclass(frozen=True)
class Pool:
    """The candidates of a set, described by named columns of equal length (``y``, ``a``, ``subgroup`` …).

    Positions into these arrays are what a :class:`Selection` holds; the experiment that built the pool maps
    them back to rows of its dataset. Column conventions: ``y`` the binary task label, ``a`` the binary
    sensitive attribute, ``subgroup`` a binary subcategory of the positives (1 = the subgroup whose share is
    set, e.g. T2), ``domain`` a binary domain indicator.
    """

    columns: dict[str, np.ndarray]

    @classmethod
    def of(cls, **columns: np.ndarray) -> Pool:
        """``Pool.of(y=y, a=a)``."""
        return cls(columns={name: np.asarray(values) for name, values in columns.items()})

    def __post_init__(self) -> None:
        sizes = {name: np.asarray(values).shape for name, values in self.columns.items()}
        if len({s for s in sizes.values()}) > 1:
            raise ValueError(f"pool columns must have the same length, got {sizes}")

    def __len__(self) -> int:
        return next((len(v) for v in self.columns.values()), 0)

    def binary(self, *names: str) -> list[np.ndarray]:
        """The named columns, checked binary (0/1) and returned as int8; an absent one is named."""
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise ValueError(f"the pool has no column {', '.join(map(repr, missing))}; "
                             f"it has {', '.join(map(repr, self.columns)) or 'none'}")
        return check_binary(**{n: self.columns[n] for n in names})


# ------------------------------------------------------------------------------------------- the registry
class Intervention(BaseModel):
    """Base class of registered finetuning-set samplers.

    Subclasses are frozen pydantic models whose fields are the intervention's typed options (set from the
    study file as ``{name: subselect, start_level: 0.8}``; unknown options are errors naming the allowed
    ones), declare the pool ``columns`` they need, and implement :meth:`select`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    columns: ClassVar[tuple[str, ...]] = ("y", "a")
    level_meaning: ClassVar[str] = "correlation level c = N(a=1, y=1) / N(y=1)"
    balances: ClassVar[bool] = False
    """Its sets are balanced by group, P(a=1) = 1/2 (docs/protocols.md §2): the inheritance regression keeps
    their runs and leaves the others out."""
    reference: ClassVar[bool] = False
    """The sampler of the reference sets: test sets (at the test level), the hyperparameter search's sets, and the
    reference setting the fixes are compared with. Exactly one registered intervention sets it
    (:func:`reference_intervention`)."""
    takes_level: ClassVar[bool] = True
    """A level sets its sets (False: it keeps the pool's own level and refuses any other, so a search over levels
    has nothing to search with it)."""
    plot_order: ClassVar[int] = 99
    """Its place in figures and their legends, lowest first (ties by name)."""

    def select(self, pool: Pool, *, level: float | None, n: int | None, rng: np.random.Generator) -> Selection:
        """Choose a set from ``pool`` (which has at least :attr:`columns`).

        ``level`` is the target level (:attr:`level_meaning`; ``None``: the pool's natural level); ``n`` the
        requested set size (``None``: as the intervention defines, e.g. the whole pool); ``rng`` the only
        source of randomness (the result is a pure function of the inputs and the rng state).
        """
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> list[str]:
        return list(cls.model_fields)


INTERVENTIONS: Registry[type[Intervention]] = Registry("intervention")


def reference_intervention() -> str:
    """The name of the registered intervention marked :attr:`Intervention.reference` (``collect``)."""
    found = [name for name, cls in INTERVENTIONS.items() if cls.reference]
    if len(found) != 1:
        raise RuntimeError(f"exactly one registered intervention must be the reference; found "
                           f"{', '.join(found) or 'none'} (import biastransfer.interventions to register them)")
    return found[0]


def plot_order(name: object) -> int:
    """The :attr:`Intervention.plot_order` of the intervention ``name``; a name that is not registered goes last."""
    cls = INTERVENTIONS.get(name) if isinstance(name, str) and name in INTERVENTIONS else Intervention
    return cls.plot_order


def get_intervention(name: str, **options: Any) -> Intervention:
    """An instance of the registered intervention ``name`` with the given options (e.g. ``start_level``)."""
    return make_registered(INTERVENTIONS, name, options)

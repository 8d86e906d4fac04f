"""Selection (the stage's currency), cell arithmetic and input validation."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from biastransfer.data.table import DataError
from biastransfer.interventions import (
    INTERVENTIONS,
    InfeasibleSelectionError,
    Pool,
    Selection,
    correlation_cells,
    get_intervention,
    natural_level,
)

FAST = settings(max_examples=150, deadline=None)


# --------------------------------------------------------------------------------------------- Selection
def test_selection_json_round_trip_with_weights() -> None:
    sel = Selection(indices=np.array([7, 2, 5]), weights=np.array([0.5, 1.0, 1.5]), level=0.25)
    back = Selection.from_dict(json.loads(json.dumps(sel.to_dict())))
    assert back == sel
    assert back.indices.dtype == np.int64 and back.weights is not None and back.weights.dtype == np.float64
    assert back.indices.tolist() == [7, 2, 5]
    assert back.level == 0.25


def test_selection_json_round_trip_nan_level_and_no_weights() -> None:
    sel = Selection(indices=np.array([1, 3], dtype=np.int32), weights=None, level=math.nan)
    data = sel.to_dict()
    assert data == {"indices": [1, 3], "weights": None, "level": None}
    text = json.dumps(data, allow_nan=False)  # strict JSON
    back = Selection.from_dict(json.loads(text))
    assert back == sel and math.isnan(back.level) and back.weights is None


def test_selection_equality_and_hash() -> None:
    a = Selection(indices=np.array([1, 2]), weights=None, level=0.5)
    b = Selection(indices=np.array([1, 2]), weights=None, level=0.5)
    c = Selection(indices=np.array([1, 3]), weights=None, level=0.5)
    d = Selection(indices=np.array([1, 2]), weights=np.array([0.5, 1.5]), level=0.5)
    assert a == b and hash(a) == hash(b)
    assert a != c and a != d and d != a
    assert len({a, b, c, d}) == 3


def test_selection_arrays_are_read_only() -> None:
    sel = Selection(indices=np.array([1, 2]), weights=np.array([1.0, 1.0]), level=0.5)
    with pytest.raises(ValueError):
        sel.indices[0] = 5
    assert sel.weights is not None
    with pytest.raises(ValueError):
        sel.weights[0] = 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"indices": np.array([1, 1]), "weights": None}, "unique"),
        ({"indices": np.array([-1, 2]), "weights": None}, "non-negative"),
        ({"indices": np.array([0.5, 2.0]), "weights": None}, "integers"),
        ({"indices": np.array([[1, 2]]), "weights": None}, "1-D"),
        ({"indices": np.array([1, 2]), "weights": np.array([1.0])}, "2 indices but 1 weights"),
        ({"indices": np.array([1, 2]), "weights": np.array([1.0, 2.0])}, "mean 1"),
        ({"indices": np.array([1, 2]), "weights": np.array([-1.0, 3.0])}, "non-negative"),
        ({"indices": np.array([1, 2]), "weights": np.array([np.nan, 1.0])}, "finite"),
    ],
)
def test_selection_rejects_bad_fields(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Selection(level=0.5, **kwargs)


def test_selection_from_dict_names_missing_keys() -> None:
    with pytest.raises(ValueError, match="weights"):
        Selection.from_dict({"indices": [1], "level": 0.5})


def test_cell_counts_and_masses() -> None:
    y = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([1, 0, 1, 1, 0, 0])
    weights = np.array([2.0, 1.0, 0.5, 0.5, 1.0])
    sel = Selection(indices=np.array([0, 1, 3, 4, 5]), weights=weights, level=2 / 3)
    assert sel.cell_counts(y, a) == {(1, 1): 1, (0, 1): 1, (1, 0): 1, (0, 0): 2}
    assert sel.cell_masses(y, a) == {(1, 1): 2.0, (0, 1): 1.0, (1, 0): 0.5, (0, 0): 1.5}


# ------------------------------------------------------------------------------------------- cell algebra
def test_correlation_cells_paper_values() -> None:
    assert correlation_cells(0.8, 1024) == {(1, 1): 410, (0, 1): 102, (1, 0): 102, (0, 0): 410}
    assert correlation_cells(0.5, 128) == {(1, 1): 32, (0, 1): 32, (1, 0): 32, (0, 0): 32}
    assert correlation_cells(1.0, 7) == {(1, 1): 3, (0, 1): 0, (1, 0): 0, (0, 0): 4}
    assert correlation_cells(0.0, 2) == {(1, 1): 0, (0, 1): 1, (1, 0): 1, (0, 0): 0}


def test_correlation_cells_rounds_half_to_even_in_exact_decimal() -> None:
    # 0.5·5 = 2.5 → 2 (even); 0.5·7 = 3.5 → 4 (even); 0.3·5 = 1.5 → 2; 0.1·5 = 0.5 → 0
    # (in binary floating point 0.1·5 would not be an exact half)
    assert correlation_cells(0.5, 10)[(1, 1)] == 2
    assert correlation_cells(0.5, 14)[(1, 1)] == 4
    assert correlation_cells(0.3, 10)[(1, 1)] == 2
    assert correlation_cells(0.1, 10)[(1, 1)] == 0


@FAST
@given(level=st.floats(0, 1), n=st.integers(2, 5000))
def test_correlation_cells_sum_and_closeness(level: float, n: int) -> None:
    cells = correlation_cells(level, n)
    assert set(cells) == {(1, 1), (0, 1), (1, 0), (0, 0)}
    assert all(isinstance(v, int) and v >= 0 for v in cells.values())
    assert sum(cells.values()) == n
    n_pos, n_neg = n // 2, n - n // 2
    assert cells[(1, 1)] + cells[(0, 1)] == n_pos
    assert cells[(1, 0)] + cells[(0, 0)] == n_neg
    c = Fraction(str(level))
    assert abs(cells[(1, 1)] - c * n_pos) <= Fraction(1, 2)
    assert abs(cells[(0, 0)] - c * n_neg) <= Fraction(1, 2)
    assert abs(cells[(0, 1)] - (1 - c) * n_pos) <= Fraction(1, 2)
    # as close to the paper's c·N/2 as integers with exactly n//2 positives allow
    assert abs(cells[(1, 1)] - c * n / 2) < 1


def test_natural_level() -> None:
    y = np.array([1, 1, 1, 1, 0, 0])
    a = np.array([1, 1, 1, 0, 0, 1])
    assert natural_level(y, a) == 0.75
    with pytest.raises(DataError, match="no positive"):
        natural_level(np.zeros(4, int), np.ones(4, int))


def test_infeasible_error_is_a_data_error() -> None:
    assert issubclass(InfeasibleSelectionError, DataError)
    assert issubclass(InfeasibleSelectionError, ValueError)


# ---------------------------------------------------------------------------------------------- validation
def _pool() -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat([1, 1, 0, 0], 40)
    a = np.repeat([1, 0, 1, 0], 40)
    return y, a


BALANCING = [name for name in INTERVENTIONS.names() if name != "natural"]


def pool_for(name: str, y: np.ndarray, a: np.ndarray) -> Pool:
    """A pool with the columns ``name`` declares: ``y`` and, as its second column (``a``, ``subgroup``), ``a``;
    a one-column intervention (``domain_share``) gets ``a`` as its column."""
    columns = INTERVENTIONS.get(name).columns
    if len(columns) == 1:
        return Pool.of(**{columns[0]: a})
    if "triggered" in columns:  # the trigger sampler: y a class, a in the role of 'triggered'
        return Pool.of(y=y, triggered=a, example=np.arange(len(a)))
    first, second = columns
    return Pool.of(**{first: y, second: a})


def binary_column(name: str, which: str) -> str | None:
    """The pool column that ``pool_for`` fills with ``y`` or ``a`` if the intervention needs it binary."""
    columns = INTERVENTIONS.get(name).columns
    if "triggered" in columns:
        return "triggered" if which == "a" else None  # y holds class indices: any integer class is allowed
    if len(columns) == 1:
        return columns[0] if which == "a" else None
    return columns[-1 if which == "a" else 0]


def _one_column(name: str) -> bool:
    return len(INTERVENTIONS.get(name).columns) == 1


@pytest.mark.parametrize("name", BALANCING)
@pytest.mark.parametrize("level", [1.3, -0.1, math.nan])
def test_level_out_of_range(name: str, level: float) -> None:
    y, a = _pool()
    with pytest.raises(ValueError, match=r"^level must be in \[0, 1\], got " + str(level)):
        get_intervention(name).select(pool_for(name, y, a), level=level, n=20, rng=np.random.default_rng(0))


def test_level_message_exact() -> None:
    y, a = _pool()
    with pytest.raises(ValueError) as info:
        get_intervention("collect").select(Pool.of(y=y, a=a), level=1.3, n=20, rng=np.random.default_rng(0))
    assert str(info.value) == "level must be in [0, 1], got 1.3"


@pytest.mark.parametrize("name", INTERVENTIONS.names())
@pytest.mark.parametrize("which", ["y", "a"])
def test_non_binary_arrays_are_named(name: str, which: str) -> None:
    y, a = _pool()
    bad = {"y": y, "a": a}
    bad[which] = bad[which].copy()
    bad[which][3] = 2
    column = binary_column(name, which)
    if column is None:
        pytest.skip(f"{which} fills no binary column of {name}'s pool")
    with pytest.raises(ValueError, match=rf"^{column} must be binary"):
        get_intervention(name).select(pool_for(name, bad["y"], bad["a"]), level=None, n=20,
                                      rng=np.random.default_rng(0))


@pytest.mark.parametrize("name", INTERVENTIONS.names())
def test_length_mismatch(name: str) -> None:
    if _one_column(name):
        pytest.skip("a one-column pool cannot mismatch")
    y, a = _pool()
    with pytest.raises(ValueError, match="same length"):
        get_intervention(name).select(pool_for(name, y, a[:-1]), level=None, n=20, rng=np.random.default_rng(0))


@pytest.mark.parametrize("name", INTERVENTIONS.names())
@pytest.mark.parametrize("n", [1, 0, -3, 2.5])
def test_n_below_two_or_not_integer(name: str, n: float) -> None:
    y, a = _pool()
    with pytest.raises(ValueError, match="n must be an integer ≥ 2"):
        get_intervention(name).select(pool_for(name, y, a), level=None, n=n, rng=np.random.default_rng(0))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", BALANCING)
def test_balancing_interventions_need_n(name: str) -> None:
    y, a = _pool()
    with pytest.raises(ValueError, match="n must be an integer"):
        get_intervention(name).select(pool_for(name, y, a), level=0.5, n=None, rng=np.random.default_rng(0))


def test_start_level_is_validated_under_its_name() -> None:
    with pytest.raises(ValueError, match=r"intervention 'subselect': start_level: Input should be less than or "
                                         r"equal to 1"):
        get_intervention("subselect", start_level=2.0)


def test_unknown_option_lists_allowed() -> None:
    with pytest.raises(ValueError, match="no option 'start'; allowed: start_level"):
        get_intervention("subselect", start=0.8)
    with pytest.raises(ValueError, match=r"allowed: \(none\)"):
        get_intervention("collect", start_level=0.8)


def test_unknown_intervention_lists_names() -> None:
    with pytest.raises(KeyError, match="collect, domain_share, natural, reweight, subgroup_share, subselect"):
        get_intervention("upsample")

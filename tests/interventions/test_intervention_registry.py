"""Registry-wide: every registered intervention declares its pool columns and typed options, and returns a valid,
reproducible, serialisable Selection from a pool with those columns."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from biastransfer.interventions import INTERVENTIONS, Intervention, Pool, Selection, get_intervention

Y = np.repeat([1, 1, 0, 0], [300, 100, 150, 250])
A = np.repeat([1, 0, 1, 0], [300, 100, 150, 250])  # natural level (and subgroup share) 0.75
DOMAIN = np.repeat([1, 0], [600, 200])  # natural domain share 0.75
#: A pool with every column an intervention may declare (``subgroup`` takes the role of ``a``).
POOL = Pool.of(y=Y, a=A, subgroup=A, domain=DOMAIN)


def test_expected_names_are_registered() -> None:
    assert {"collect", "subselect", "reweight", "natural", "subgroup_share", "domain_share"} <= set(
        INTERVENTIONS.names())


@pytest.mark.parametrize("name", INTERVENTIONS.names())
def test_registered_intervention_contract(name: str) -> None:
    cls = INTERVENTIONS.get(name)
    assert issubclass(cls, Intervention)
    assert cls.registry_name == name and cls.description and cls.level_meaning
    assert cls.columns and set(cls.columns) <= set(POOL.columns)
    intervention = get_intervention(name)
    sel = intervention.select(POOL, level=None, n=64, rng=np.random.default_rng(0))
    assert isinstance(sel, Selection)
    assert sel.indices.dtype == np.int64 and np.all(np.diff(sel.indices) > 0)
    assert sel.indices.min() >= 0 and sel.indices.max() < Y.size
    assert len(sel) == 64
    assert abs(sel.level - 0.75) < 0.2
    if sel.weights is not None:
        assert np.isclose(sel.weights.mean(), 1.0)
    back = Selection.from_dict(json.loads(json.dumps(sel.to_dict(), allow_nan=False)))
    assert back == sel
    again = intervention.select(POOL, level=None, n=64, rng=np.random.default_rng(0))
    other = intervention.select(POOL, level=None, n=64, rng=np.random.default_rng(1))
    assert again == sel
    assert not np.array_equal(other.indices, sel.indices)


@pytest.mark.parametrize("name", INTERVENTIONS.names())
def test_missing_column_is_named(name: str) -> None:
    needed = INTERVENTIONS.get(name).columns
    partial = Pool.of(**{c: POOL.columns[c] for c in needed[1:]}, other=Y)
    with pytest.raises(ValueError, match=f"no column '{needed[0]}'"):
        get_intervention(name).select(partial, level=None, n=64, rng=np.random.default_rng(0))


@pytest.mark.parametrize("name", INTERVENTIONS.names())
def test_unknown_option_is_named_with_the_allowed_ones(name: str) -> None:
    allowed = ", ".join(INTERVENTIONS.get(name).option_names()) or "(none)"
    with pytest.raises(ValueError, match=re.escape(f"has no option 'bogus'; allowed: {allowed}")):
        get_intervention(name, bogus=1)


def test_start_level_option_is_typed_and_used() -> None:
    """``start_level`` is validated, and it changes the start set of subselect and reweight."""
    with pytest.raises(ValueError, match="start_level"):
        get_intervention("subselect", start_level=1.5)
    for name in ("subselect", "reweight"):
        natural = get_intervention(name).select(POOL, level=None, n=64, rng=np.random.default_rng(0))
        half = get_intervention(name, start_level=0.5).select(POOL, level=None, n=64, rng=np.random.default_rng(0))
        assert natural.level == pytest.approx(0.75) and half.level == pytest.approx(0.5)

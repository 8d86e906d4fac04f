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
#: A pool with every column an intervention may declare (``subgroup`` takes the role of ``a``) …
POOL = Pool.of(y=Y, a=A, subgroup=A, domain=DOMAIN)
#: … except the planted-trigger sampler's, whose pool lists each example clean and triggered (its natural level,
#: the pool's own share of triggered examples in a set, is 0: a target that never saw the trigger).
TRIGGER_POOL = Pool.of(y=np.r_[Y, Y], triggered=np.repeat([0, 1], Y.size), example=np.r_[np.arange(Y.size),
                                                                                           np.arange(Y.size)])
NATURAL = {"trigger_rate": 0.0}


def pool_of(name: str) -> Pool:
    """The registry pool that has the columns intervention ``name`` declares."""
    return TRIGGER_POOL if set(INTERVENTIONS.get(name).columns) <= set(TRIGGER_POOL.columns) else POOL


def test_expected_names_are_registered() -> None:
    assert {"collect", "subselect", "reweight", "natural", "subgroup_share", "domain_share"} <= set(
        INTERVENTIONS.names())


@pytest.mark.parametrize("name", INTERVENTIONS.names())
def test_registered_intervention_contract(name: str) -> None:
    cls = INTERVENTIONS.get(name)
    assert issubclass(cls, Intervention)
    assert cls.registry_name == name and cls.description and cls.level_meaning
    pool = pool_of(name)
    assert cls.columns and set(cls.columns) <= set(pool.columns)
    intervention = get_intervention(name)
    sel = intervention.select(pool, level=None, n=64, rng=np.random.default_rng(0))
    assert isinstance(sel, Selection)
    assert sel.indices.dtype == np.int64 and np.all(np.diff(sel.indices) > 0)
    assert sel.indices.min() >= 0 and sel.indices.max() < len(pool)
    assert len(sel) == 64
    assert abs(sel.level - NATURAL.get(name, 0.75)) < 0.2
    if sel.weights is not None:
        assert np.isclose(sel.weights.mean(), 1.0)
    back = Selection.from_dict(json.loads(json.dumps(sel.to_dict(), allow_nan=False)))
    assert back == sel
    again = intervention.select(pool, level=None, n=64, rng=np.random.default_rng(0))
    other = intervention.select(pool, level=None, n=64, rng=np.random.default_rng(1))
    assert again == sel
    assert not np.array_equal(other.indices, sel.indices)


@pytest.mark.parametrize("name", INTERVENTIONS.names())
def test_missing_column_is_named(name: str) -> None:
    needed = INTERVENTIONS.get(name).columns
    partial = Pool.of(**{c: pool_of(name).columns[c] for c in needed[1:]}, other=pool_of(name).columns["y"])
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

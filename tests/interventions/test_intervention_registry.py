"""Registry-wide: every registered intervention returns a valid, reproducible, serialisable Selection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from biastransfer.interventions import (
    INTERVENTIONS,
    SHARE_INTERVENTIONS,
    Intervention,
    Selection,
    get_intervention,
    get_share_intervention,
)

Y = np.repeat([1, 1, 0, 0], [300, 100, 150, 250])
A = np.repeat([1, 0, 1, 0], [300, 100, 150, 250])  # natural level 0.75


def test_expected_names_are_registered() -> None:
    assert {"collect", "subselect", "reweight", "natural"} <= set(INTERVENTIONS.names())
    assert "subgroup_share" in SHARE_INTERVENTIONS


@pytest.mark.parametrize("name", INTERVENTIONS.names())
def test_registered_intervention_contract(name: str) -> None:
    cls = INTERVENTIONS.get(name)
    assert issubclass(cls, Intervention)
    assert cls.registry_name == name and cls.description
    intervention = get_intervention(name)
    sel = intervention.select(Y, A, level=None, n=64, rng=np.random.default_rng(0))
    assert isinstance(sel, Selection)
    assert sel.indices.dtype == np.int64 and np.all(np.diff(sel.indices) > 0)
    assert sel.indices.min() >= 0 and sel.indices.max() < Y.size
    assert len(sel) == 64
    assert abs(sel.level - 0.75) < 0.2
    if sel.weights is not None:
        assert np.isclose(sel.weights.mean(), 1.0)
    back = Selection.from_dict(json.loads(json.dumps(sel.to_dict(), allow_nan=False)))
    assert back == sel
    again = intervention.select(Y, A, level=None, n=64, rng=np.random.default_rng(0))
    other = intervention.select(Y, A, level=None, n=64, rng=np.random.default_rng(1))
    assert again == sel
    assert not np.array_equal(other.indices, sel.indices)


@pytest.mark.parametrize("name", SHARE_INTERVENTIONS.names())
def test_registered_share_intervention_contract(name: str) -> None:
    cls = SHARE_INTERVENTIONS.get(name)
    assert cls.registry_name == name and cls.description
    t1, t2 = Y * (1 - A), Y * A  # T1 = positives of group 0, T2 = positives of group 1
    sampler = get_share_intervention(name)
    sel = sampler.select(t1, t2, level=0.5, n=64, rng=np.random.default_rng(0))
    assert len(sel) == 64 and sel.level == 0.5
    assert sampler.select(t1, t2, level=0.5, n=64, rng=np.random.default_rng(0)) == sel
    assert Selection.from_dict(json.loads(json.dumps(sel.to_dict()))) == sel

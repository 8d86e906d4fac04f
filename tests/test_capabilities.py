"""What each registry entry says about itself (DESIGN principle 6): the capabilities other modules ask instead of
comparing names (tests/test_architecture.py refuses such comparisons). Every test iterates its registry, so a new
entry is covered without new test code."""

from __future__ import annotations

import dataclasses

import pytest

from biastransfer import plugins  # noqa: F401  (every registry complete)
from biastransfer.backends import BACKENDS, BackendOptions, auto_backend, check_address
from biastransfer.interventions import INTERVENTIONS, plot_order, reference_intervention
from biastransfer.models.bases import (
    BASES,
    Base,
    base_kind,
    derive_role,
    parse_shorthand,
    shorthand_forms,
    trained_attribute,
)
from biastransfer.models.transfer import TRANSFER_MODES
from biastransfer.roles import BASE_ROLES
from biastransfer.spec import ADDED_FIELDS, KEY_OBJECTIVE, RunSpec
from biastransfer.train.objectives import OBJECTIVES, baseline_objective


def test_one_reference_intervention_and_it_is_the_spec_default() -> None:
    assert [n for n, cls in INTERVENTIONS.items() if cls.reference] == [reference_intervention()]
    default = {f.name: f.default for f in dataclasses.fields(RunSpec)}["intervention"]
    assert reference_intervention() == default  # keys of specs that leave it out stay as they were
    assert INTERVENTIONS.get(reference_intervention()).balances


def test_interventions_in_plot_order() -> None:
    ordered = sorted(INTERVENTIONS.names(), key=plot_order)
    assert ordered[:4] == ["collect", "subselect", "reweight", "natural"]
    assert plot_order("not registered") >= max(plot_order(n) for n in INTERVENTIONS.names())
    assert [n for n, cls in INTERVENTIONS.items() if not cls.takes_level] == ["natural"]


def test_the_baseline_objective_is_the_key_default() -> None:
    assert [n for n, cls in OBJECTIVES.items() if cls.baseline] == [baseline_objective()]
    assert baseline_objective() == KEY_OBJECTIVE == ADDED_FIELDS[("objective",)]
    assert not OBJECTIVES.get(baseline_objective()).needs_groups


@pytest.mark.parametrize("kind", BASES.names())
def test_every_base_kind_derives_a_role(kind: str) -> None:
    for spec in ({"kind": kind}, {"kind": kind, "attribute": "a"}, {"kind": kind, "attribute": "b", "rate": 0}):
        assert derive_role(spec, "a") in BASE_ROLES
    cls = BASES.get(kind)
    if cls.trains:  # a base we train is compared: biased or control, never 'other'
        assert derive_role({"kind": kind, "attribute": "a"}, "a") in ("biased", "control")


def test_roles_follow_the_class_not_the_name() -> None:
    trained, planted = BASES.get("trained"), BASES.get("planted")
    assert issubclass(planted, trained) and planted.trains and planted.plants_trigger
    assert trained_attribute({"kind": "trained", "attribute": "t1"}) == "t1"
    assert trained_attribute({"kind": "planted"}) == "label"
    assert trained_attribute({"kind": "scratch"}) is None
    assert derive_role({"kind": "planted", "rate": 0}, "a") == "control"
    assert derive_role({"kind": "planted", "attribute": "a"}, "label") == "biased"
    assert derive_role({"kind": "no such kind"}, "a") == "other"
    assert base_kind(float("nan")) is Base


def test_base_shorthands_round_trip() -> None:
    assert shorthand_forms() == ["checkpoint:FORMAT:PATH", "scratch", "trained:ATTRIBUTE"]
    assert parse_shorthand("scratch", "small_resnet") == ("scratch", {"kind": "scratch"})
    assert parse_shorthand("trained:t1", "small_resnet") == ("trained-t1", {"kind": "trained", "attribute": "t1"})
    assert parse_shorthand("checkpoint:moco_v3:/w/r50.pth.tar", "resnet50") == (
        "r50", {"kind": "checkpoint", "format": "moco_v3", "path": "/w/r50.pth.tar", "arch": "resnet50"})
    for bad in ("scratch:x", "trained", "planted:label", "checkpoint:moco_v3", "nothing"):
        assert parse_shorthand(bad, "small_resnet") is None, bad


def test_transfer_modes_rank_by_what_stays_frozen() -> None:
    ranked = sorted(TRANSFER_MODES.names(), key=lambda n: TRANSFER_MODES.get(n).frozen_rank)
    assert ranked == ["fixed_feature", "freeze_stages", "linear_probe_then_finetune", "full"]
    assert [n for n, cls in TRANSFER_MODES.items() if cls.unphased] == ["full"]
    for name, cls in TRANSFER_MODES.items():
        required = {k for k, v in cls.option_defaults.items() if v is None}
        if not required:
            assert cls().options == cls.option_defaults, name


def test_auto_backend_follows_the_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule itself, on ranks and tests set here (the real ones: the next test)."""
    names = BACKENDS.names()
    for rank, name in enumerate(names):
        monkeypatch.setattr(BACKENDS.get(name), "auto_rank", rank)
        monkeypatch.setattr(BACKENDS.get(name), "suits_auto", classmethod(lambda cls, w, o: w >= 3 or cls is last))
    last = BACKENDS.get(names[-1])
    assert auto_backend(3, BackendOptions()) == names[0]
    assert auto_backend(1, BackendOptions()) == names[-1]
    monkeypatch.setattr(BACKENDS.get(names[-1]), "auto_rank", None)
    with pytest.raises(ValueError, match="no registered backend suits"):
        auto_backend(1, BackendOptions())


def test_auto_backend_picks_as_documented() -> None:
    assert auto_backend(1, BackendOptions()) == "inprocess"
    assert auto_backend(4, BackendOptions()) == "processes"
    assert auto_backend(1, BackendOptions(address="10.0.0.1:6379")) == "ray"
    check_address("ray", BackendOptions(address="10.0.0.1:6379"))
    with pytest.raises(ValueError, match="needs --backend ray"):
        check_address("processes", BackendOptions(address="10.0.0.1:6379"))
    check_address("processes", BackendOptions())

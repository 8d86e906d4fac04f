"""The experiment contract: a small required core, and optional capabilities that the code asks for by type."""

from __future__ import annotations

from typing import Any

import pytest

from biastransfer import plugins  # noqa: F401
from biastransfer.experiments.base import (
    CAPABILITIES,
    EXPERIMENTS,
    Adaptive,
    Experiment,
    HyperparameterSearch,
    SharedResults,
)
from biastransfer.plan import adaptive_kind, hparam_key, result_key


def test_the_core_requires_only_a_few_members() -> None:
    assert Experiment.__abstractmethods__ == {"expand", "run", "sections"}
    members = {m for m in dir(Experiment) if not m.startswith("_")} - set(dir(object))
    assert members == {"Block", "columns", "example", "title", "description", "report_order", "pool_columns",
                       "all_columns", "settings", "metrics", "aggregate", "tiny_block", "check", "expand", "run",
                       "reading", "sections"} - {"Block", "columns", "example"}  # declared, not defaulted
    assert not any(hasattr(Experiment, m) for c in CAPABILITIES for m in c.members)


@pytest.mark.parametrize("kind", EXPERIMENTS.names())
def test_every_kind_declares_the_capabilities_it_implements(kind: str) -> None:
    cls = EXPERIMENTS.get(kind)
    for capability in CAPABILITIES:
        assert all(hasattr(cls, m) for m in capability.members) == issubclass(cls, capability)
    assert adaptive_kind(kind) == issubclass(cls, Adaptive)


def test_a_capability_member_without_the_capability_is_refused() -> None:
    with pytest.raises(TypeError, match="next_runs without the capability Adaptive"):
        class Sneaky(Experiment):
            def next_runs(self, block: Any, specs: list, done: dict) -> list:
                return []


def test_a_kind_must_declare_its_block_columns_and_example() -> None:
    with pytest.raises(TypeError, match="must declare Block, columns, example"):
        class Bare(Experiment):
            def expand(self, name: str, block: Any, study: Any) -> list:
                return []

            def run(self, spec: Any, inputs: Any) -> Any:
                return None

            def sections(self, results: Any, page: Any) -> list:
                return []



@pytest.mark.parametrize("kind", EXPERIMENTS.names())
def test_the_planner_asks_for_capabilities(kind: str) -> None:
    """A kind without the capability searches nothing and shares no result, whatever its name."""
    from biastransfer.plan import parse_study
    from tiny_study import kind_study_dict

    cls = EXPERIMENTS.get(kind)
    specs = parse_study(kind_study_dict(kind)).expand()
    if not issubclass(cls, HyperparameterSearch):
        assert all(hparam_key(s) is None for s in specs)
    if not issubclass(cls, SharedResults):
        assert all(result_key(s) is None for s in specs)

"""The layout rules of docs/architecture.md, checked on the source: no import cycles (lazy imports count), no
module over 400 lines, no experiment kind named outside its plugin, layers point down, workers never touch the
store."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from biastransfer import plugins  # noqa: F401
from biastransfer.experiments.base import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "biastransfer"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every biastransfer module ``path`` imports, at module level or inside functions."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        out |= {n for n in names if n in MODULES}
    return out


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_found() -> None:
    assert "biastransfer.spec" in GRAPH["biastransfer.plan"]
    assert "biastransfer.experiments.base" in GRAPH["biastransfer.store.export"]


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("path", sorted([*SRC.rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 400


def _plugin_files(kind: str) -> set[Path]:
    module = EXPERIMENTS.get(kind).__module__
    path = MODULES[module]
    return set(path.parent.rglob("*.py")) if path.name == "__init__.py" else {path}


PLUGIN_FILES = set().union(*(_plugin_files(k) for k in EXPERIMENTS.names()))


@pytest.mark.parametrize("kind", EXPERIMENTS.names())
def test_no_module_outside_a_plugin_names_a_kind(kind: str) -> None:
    """The report, the export, the runner, the shared experiment helpers … iterate the registry; only plugins
    write a kind's name."""
    offenders = []
    for path in MODULES.values():
        if path in PLUGIN_FILES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value == kind:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], f"experiment kind {kind!r} is named outside its plugin"


STAGES = ("data", "interventions", "triggers", "models", "train", "metrics", "analysis")
ABOVE = ("experiments", "plan", "config", "driver", "backends", "store", "report", "cli", "plugins")


@pytest.mark.parametrize("stage", STAGES)
def test_shared_stages_do_not_import_the_layers_above(stage: str) -> None:
    prefixes = tuple(f"biastransfer.{a}" for a in ABOVE)
    bad = {m: sorted(d for d in deps if d.startswith(prefixes)) for m, deps in GRAPH.items()
           if m.startswith(f"biastransfer.{stage}")}
    assert {m: d for m, d in bad.items() if d} == {}


def test_plugins_and_workers_never_touch_the_store() -> None:
    """Only the driver (and the read-only export, report and CLI) use the store: a job returns its product."""
    users = {m for m, deps in GRAPH.items() if any(d.startswith("biastransfer.store") for d in deps)}
    assert all(not m.startswith(("biastransfer.experiments", "biastransfer.backends")) for m in users), users
    assert "biastransfer.driver" in users


def test_config_looks_nothing_up_in_a_registry() -> None:
    assert GRAPH["biastransfer.config"] <= {"biastransfer.roles"}

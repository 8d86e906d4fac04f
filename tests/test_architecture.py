"""The layout rules of docs/architecture.md, checked on the source: no import cycles (lazy imports count), no
module over 400 lines, no experiment kind named outside its plugin, no registered name of any registry compared
outside its entry's module, layers point down, workers never touch the store."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from biastransfer import plugins  # noqa: F401
from biastransfer.backends import BACKENDS
from biastransfer.data.registry import DATASETS
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.interventions import INTERVENTIONS
from biastransfer.models.architectures import ARCHITECTURES
from biastransfer.models.bases import BASES
from biastransfer.models.checkpoints import CHECKPOINT_FORMATS
from biastransfer.models.transfer import TRANSFER_MODES
from biastransfer.registry import Registry
from biastransfer.train.objectives import OBJECTIVES
from biastransfer.triggers import TRIGGERS

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


def _folder(module: str) -> str:
    """The top-level subpackage (``experiments``, ``report``, ``render`` …) or top-level module (``plan``) of
    biastransfer that a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between folders: an edge when any module of one imports any module of the other."""
    out: dict[str, set[str]] = {_folder(m): set() for m in graph}
    for module, deps in graph.items():
        out[_folder(module)] |= {_folder(d) for d in deps} - {_folder(module)}
    return out


FOLDER_CYCLES_ALLOWED: dict[frozenset[str], str] = {}
"""Folders allowed to import each other, each with the reason. None today: the rendering helpers that both the
plugins and the report page use live in ``render/``, below both (``experiments`` ↔ ``report`` before)."""


def test_no_folder_imports_a_folder_that_imports_it_back() -> None:
    """Layers point down between folders too: the folder-level import graph has no cycle (lazy imports count)."""
    cycles = [c for c in _cycles(folder_graph(GRAPH)) if frozenset(c) not in FOLDER_CYCLES_ALLOWED]
    edges = [f"{m} -> {d}" for c in cycles for m, deps in GRAPH.items() for d in sorted(deps)
             if _folder(m) in c and _folder(d) in c and _folder(m) != _folder(d)]
    assert cycles == [], "folders that import each other:\n" + "\n".join(edges)


def test_the_folder_rule_finds_folders_importing_each_other() -> None:
    graph = {"biastransfer.report.page": {"biastransfer.experiments.base"},
             "biastransfer.experiments.base": {"biastransfer.report.markup"},
             "biastransfer.report.markup": set(), "biastransfer.render.plots": {"biastransfer.spec"},
             "biastransfer.spec": set()}
    assert _cycles(folder_graph(graph)) == [["experiments", "report"]]


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


# ----------------------------------------------------------------------------- registered names, not if-chains
REGISTRIES: dict[str, Registry[Any]] = {
    "EXPERIMENTS": EXPERIMENTS, "BASES": BASES, "INTERVENTIONS": INTERVENTIONS, "OBJECTIVES": OBJECTIVES,
    "BACKENDS": BACKENDS, "DATASETS": DATASETS, "ARCHITECTURES": ARCHITECTURES, "TRANSFER_MODES": TRANSFER_MODES,
    "CHECKPOINT_FORMATS": CHECKPOINT_FORMATS, "TRIGGERS": TRIGGERS,
}

HOMONYMS: dict[str, tuple[frozenset[str], str]] = {
    "natural": (frozenset({"level", "test", "label"}),
                "also the level keyword of spec.Level: `level: natural` / `test: natural` is the whole pool"),
    "full": (frozenset({"n", "size", "strategy"}),
             "also the size keyword of spec.Size (`n_train: full`: the whole pool) and the `full` strategy of "
             "recommend's replay (a full sweep)"),
    "scratch": (frozenset({"role"}), "also a base role (roles.BASE_ROLES), compared as `base_role == 'scratch'`"),
}
"""Registered names that are also words of another vocabulary, each with the identifier words (split at ``_`` and
``.``) that mark that vocabulary in the expression a literal is compared with: ``level == "natural"`` compares a
level, ``kind == "scratch"`` a base kind."""

PENDING: dict[tuple[str, str], str] = {}
"""(file, name) → why a comparison there is still allowed. Only for a literal in a module this change could not
edit; each entry names the change that removes it."""


def _own_files(registry: str, name: str) -> set[Path]:
    """The files allowed to compare ``name``: its entry's module, or, for an experiment kind, any plugin (a
    plugin reads another kind's rows through ``results.of(kind)``, as the rule above allows)."""
    if registry == "EXPERIMENTS":
        return PLUGIN_FILES
    return {MODULES[REGISTRIES[registry].get(name).__module__]}


OWNERS: dict[str, list[tuple[str, set[Path]]]] = {}
for _registry, _entries in REGISTRIES.items():
    for _name in _entries.names():
        OWNERS.setdefault(_name, []).append((_registry, _own_files(_registry, _name)))


def _literals(node: ast.AST) -> Iterator[ast.Constant]:
    """A string constant, or those of a tuple, list or set display (``x in ("a", "b")``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for element in node.elts:
            yield from _literals(element)


def _words(node: ast.AST) -> set[str]:
    """The identifier words of an expression: names, attributes and string keys, split at ``_``."""
    parts = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
    parts += [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]
    parts += [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return {w for p in parts for w in p.split("_") if w}


def compared_names(source: str) -> Iterator[tuple[ast.Constant, str]]:
    """Every registered name written as a string literal that decides something: (the literal, its registry).

    * an operand of a comparison (``==``, ``!=``, ``in``, ``not in``, ``is``), alone or in a tuple, list or set
      display (``kind in ("trained", "planted")``), unless the name is a :data:`HOMONYMS` word and the compared
      expression is of that other vocabulary;
    * a ``case`` value of a ``match``;
    * a key of a dict display keyed by two or more names of one registry: a table of those entries (an order, a
      colour, a flag each), whose values belong on the entries.

    Not: a docstring, a message, a default value, an argument (``study.spec(intervention="collect")``), an
    example study, a one-key dict (a base section named ``scratch``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, operand in enumerate(operands):
                others = set().union(*(_words(o) for j, o in enumerate(operands) if j != i))
                for lit in _literals(operand):
                    homonym = HOMONYMS.get(lit.value)
                    if homonym is None or not homonym[0] & others:
                        yield from ((lit, r) for r, _ in OWNERS.get(lit.value, []))
        elif isinstance(node, ast.MatchValue):
            for lit in _literals(node.value):
                yield from ((lit, r) for r, _ in OWNERS.get(lit.value, []))
        elif isinstance(node, ast.Dict):
            keys = [k for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            for registry in REGISTRIES:
                keyed = [k for k in keys if any(r == registry for r, _ in OWNERS.get(k.value, []))]
                if len(keyed) >= 2:
                    yield from ((k, registry) for k in keyed)


@pytest.mark.parametrize("registry", list(REGISTRIES))
def test_no_registered_name_is_compared_outside_its_entry(registry: str) -> None:
    """What other modules need to know about an entry is a capability on its class (``Base.trains``,
    ``Intervention.reference``, ``TrainingObjective.baseline``, ``Backend.auto_rank`` …), never a comparison with
    its name: a new entry is then never silently left out of an if-chain or a table."""
    offenders = []
    for path in MODULES.values():
        for lit, found in compared_names(path.read_text()):
            own = {f for r, files in OWNERS[lit.value] if r == found for f in files}
            if found == registry and path not in own and (str(path.relative_to(SRC)), lit.value) not in PENDING:
                offenders.append(f"{path.relative_to(ROOT)}:{lit.lineno}: {lit.value!r}")
    assert offenders == [], f"names of {registry} compared outside their entry's module (give the entries a " \
                            f"capability instead)"


@pytest.mark.parametrize(("source", "found"), [
    ('if kind == "trained": pass', ["trained"]),
    ('x = spec.base.get("kind") != "planted"', ["planted"]),
    ('ok = name in ("collect", "subselect")', ["collect", "subselect"]),
    ('ORDER = {"collect": 0, "reweight": 1}', ["collect", "reweight"]),
    ('match objective:\n    case "erm":\n        pass', ["erm"]),
    ('if kind == "scratch": pass', ["scratch"]),
    ('if ref.name == "natural": pass', ["natural"]),
    ('if spec.transfer != "full": pass', ["full"]),
    ('if base_role == "scratch": pass', []),
    ('if spec.test == "natural" or level == "natural": pass', []),
    ('if n != "full": pass', []),
    ('spec = study.spec(intervention="collect", objective="erm")', []),
    ('bases = {"scratch": {"kind": "scratch"}}', []),
    ('"""A ``trained`` base."""', []),
])
def test_the_name_rule_finds_comparisons(source: str, found: list[str]) -> None:
    assert sorted(lit.value for lit, _ in compared_names(source)) == sorted(found)

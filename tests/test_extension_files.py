"""docs/architecture.md's "Which files a contributor touches" table, held to the code.

For every registry a throwaway entry (``tests/extension_plugins.py``) is written under a temporary folder with
exactly the files the table's **source** column names, registered, run and removed again; the **wired in** files
must import the modules of the registry's entries, the **tests** and **docs** must exist, and **files** must count
them all. A wrong row fails here; so does a registry without a row.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from extension_plugins import (
    ARCH,
    BACKEND,
    BASE,
    DATASET,
    FORMAT,
    INTERVENTION,
    KIND,
    MODE,
    NAMES,
    OBJECTIVE,
    PLUGINS,
    TRIGGER,
)
from test_architecture import REGISTRIES, SRC
from tiny_study import TINY_PARAMS

ROOT = SRC.parents[1]
DOC = ROOT / "docs" / "architecture.md"
COUNTED = ("source", "wired in", "tests", "docs")


def _table() -> dict[str, dict[str, list[str] | str]]:
    """registry → {column: the paths it lists (— is none), or for ``files`` the number as written}."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Which files a contributor touches"):]
    section = section[: section.index("\n## ", 3)]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, Any]] = {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
        registry = cells["registry"].strip("`")
        rows[registry] = {c: re.findall(r"`([^`]+)`", cells[c]) for c in COUNTED}
        rows[registry]["files"] = cells["files"]
    return rows


TABLE = _table()


def _filled(registry: str, column: str, name: str | None = None) -> set[str]:
    name = name or NAMES[registry]
    return {re.sub(r"<(kind|name)>", name, p) for p in TABLE[registry][column]}


def test_the_table_has_a_row_for_every_registry() -> None:
    declared = set(re.findall(r"^([A-Z_]+): Registry\[", "\n".join(p.read_text() for p in SRC.rglob("*.py")), re.M))
    assert declared == set(REGISTRIES) == set(TABLE) == set(PLUGINS)


@pytest.mark.parametrize("registry", sorted(PLUGINS))
def test_the_files_count_is_the_files_listed(registry: str) -> None:
    listed = [p for c in COUNTED for p in TABLE[registry][c]]
    assert TABLE[registry]["files"] == str(len(listed)), f"{registry}: the row lists {listed}"


@pytest.mark.parametrize("registry", sorted(PLUGINS))
def test_the_throwaway_entry_needs_the_source_files_of_the_table(registry: str) -> None:
    assert set(PLUGINS[registry]) == _filled(registry, "source")


def _module_path(obj: Any) -> Path:
    return Path(sys.modules[obj.__module__].__file__ or "").resolve()


@pytest.mark.parametrize("registry", sorted(PLUGINS))
def test_the_wiring_of_the_table_registers_the_entries(registry: str) -> None:
    """A source module with a placeholder is new: a wired-in file imports every module of the registry in its
    folder (or, for ``experiments/``, ``plugins.py`` discovers it). A source module without one exists and
    registers entries already."""
    modules = {_module_path(obj) for _, obj in REGISTRIES[registry].items()}
    for pattern in TABLE[registry]["source"]:
        if "<" not in pattern:
            assert (SRC / pattern).resolve() in modules, f"{pattern} registers no {registry} entry"
            continue
        folder = (SRC / pattern).parent
        own = {m for m in modules if m.parent == folder.resolve()}
        assert own, f"no {registry} entry lives in {folder}"
        wired = [SRC / w for w in TABLE[registry]["wired in"]]
        if not wired:
            assert folder == SRC / "experiments", f"{pattern}: nothing imports a new module"
            continue
        imported = {n for w in wired for node in ast.walk(ast.parse(w.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.module
                    for n in (node.module.rsplit(".", 1)[-1], *(a.name for a in node.names))}
        assert {m.stem for m in own if m.stem != "__init__"} <= imported, f"{wired} do not import all of {own}"


@pytest.mark.parametrize("registry", sorted(PLUGINS))
def test_the_tests_and_docs_of_the_table_exist(registry: str) -> None:
    for column in ("tests", "docs"):
        for pattern in TABLE[registry][column]:
            names = REGISTRIES[registry].names() if "<" in pattern else [NAMES[registry]]
            missing = [p for n in names for p in _filled(registry, column, n) if not (ROOT / p).exists()]
            assert missing == [], f"{registry}: {column} named in the table do not exist"


# ------------------------------------------------------------------------------------ registered and run
@contextlib.contextmanager
def installed(tmp_path: Path, *registries: str) -> Iterator[None]:
    """The throwaway entries of ``registries`` written under ``tmp_path`` (their files only), imported and
    registered; every registry and ``sys.modules`` as they were afterwards."""
    modules = []
    with contextlib.ExitStack() as stack:
        for registry in REGISTRIES.values():
            stack.enter_context(registry.restored())
        for registry in registries:
            for rel, source in PLUGINS[registry].items():
                path = tmp_path / "plugin" / registry / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(source)
                name = f"_extension_{registry.lower()}_{path.stem}"
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                modules.append(name)
                spec.loader.exec_module(module)
            assert NAMES[registry] in REGISTRIES[registry]
        try:
            yield
        finally:
            for name in modules:
                sys.modules.pop(name, None)
    assert all(NAMES[r] not in REGISTRIES[r] for r in registries)


def _tally(tmp_path: Path, cache_dir: Path, *, dataset: dict[str, Any] | None = None, arch: str = "small_resnet",
           base: str = "scratch", backend: str = "auto") -> tuple[list[dict[str, Any]], str]:
    """The throwaway kind's tiny study run end to end (``run_study``), and its report (``biastransfer report``)."""
    from typer.testing import CliRunner

    from biastransfer.cli import app
    from biastransfer.driver import run_study
    from biastransfer.plan import parse_study
    from biastransfer.store.sqlite import ResultStore

    study = {"name": "extension", "model": {"arch": arch}, "bases": {"b": {"kind": base}},
             "dataset": dataset or {"name": "synthetic", "resolution": 16, "params": dict(TINY_PARAMS)},
             "train": {"lr": [0.05], "weight_decay": [0.0005], "max_epochs": 1, "patience": 1},
             "experiments": [{"name": "tally", "kind": KIND, "tasks": ["t0"], "bases": ["b"], "seeds": [0, 1]}]}
    out = tmp_path / "out"
    summary = run_study(parse_study(study), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True,
                        backend=backend)
    assert summary.ran == 2
    store = ResultStore.open_existing(out, read_only=True)
    try:
        runs = [r["result"] for r in store.runs()]
    finally:
        store.close()
    result = CliRunner().invoke(app, ["report", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return runs, (out / "report.html").read_text(encoding="utf-8")


def test_an_experiment_kind_of_the_core_alone_runs_a_study(tmp_path: Path, cache_dir: Path) -> None:
    from biastransfer.experiments.base import CAPABILITIES, EXPERIMENTS

    with installed(tmp_path, "EXPERIMENTS"):
        assert not any(issubclass(EXPERIMENTS.get(KIND), c) for c in CAPABILITIES)
        runs, html = _tally(tmp_path, cache_dir)
    assert all(0 <= r["positive_share"] <= 1 for r in runs) and '<section id="tally">' in html


def test_a_dataset_runs_a_study(tmp_path: Path, cache_dir: Path) -> None:
    with installed(tmp_path, "EXPERIMENTS", "DATASETS"):
        runs, _ = _tally(tmp_path, cache_dir, dataset={"name": DATASET, "resolution": 8})
    assert len(runs) == 2


def test_a_base_kind_runs_a_study(tmp_path: Path, cache_dir: Path) -> None:
    with installed(tmp_path, "EXPERIMENTS", "BASES"):
        runs, _ = _tally(tmp_path, cache_dir, base=BASE)
    assert len(runs) == 2


def test_an_architecture_runs_a_study(tmp_path: Path, cache_dir: Path) -> None:
    with installed(tmp_path, "EXPERIMENTS", "ARCHITECTURES"):
        runs, _ = _tally(tmp_path, cache_dir, arch=ARCH)
    assert [r["parameters"] for r in runs] == [4, 4]  # the head: 3 colours → 1 logit


def test_a_backend_runs_a_study(tmp_path: Path, cache_dir: Path) -> None:
    with installed(tmp_path, "EXPERIMENTS", "BACKENDS"):
        runs, _ = _tally(tmp_path, cache_dir, backend=BACKEND)
    assert len(runs) == 2


def test_an_intervention_selects(tmp_path: Path) -> None:
    from biastransfer.interventions import Pool, get_intervention

    with installed(tmp_path, "INTERVENTIONS"):
        chosen = get_intervention(INTERVENTION).select(Pool.of(y=np.array([1, 0] * 5)), level=None, n=3,
                                                       rng=np.random.default_rng(0))
    assert chosen.indices.tolist() == [0, 2, 4] and chosen.level == 1.0


def test_a_transfer_mode_fits_a_model(tmp_path: Path) -> None:
    from biastransfer.models.architectures import build_model
    from biastransfer.models.transfer import get_transfer_mode

    with installed(tmp_path, "TRANSFER_MODES"):
        mode = get_transfer_mode(MODE)
        mode.validate(build_model("small_resnet"))
    assert sum(p.epoch_share for p in mode.phases()) == 1.0


def test_a_checkpoint_format_converts(tmp_path: Path) -> None:
    from biastransfer.models.architectures import build_model
    from biastransfer.models.checkpoints.formats import get_format

    backbone = build_model("small_resnet").backbone.state_dict()
    raw = {**{f"encoder.{k}": v for k, v in backbone.items()}, "projector.weight": torch.zeros(2)}
    with installed(tmp_path, "CHECKPOINT_FORMATS"):
        converted = get_format(FORMAT).convert(raw)
    assert converted.keys() == backbone.keys()


def test_an_objective_gives_a_loss(tmp_path: Path) -> None:
    from biastransfer.train.objectives import get_objective

    logits, targets = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [0.0]])
    with installed(tmp_path, "OBJECTIVES"):
        hook = get_objective(OBJECTIVE).start(None, None)  # type: ignore[arg-type]
        loss = hook.loss(logits, targets, torch.tensor([5.0, 0.0]), None)
    assert float(loss) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)))


def test_a_trigger_is_planted(tmp_path: Path) -> None:
    from biastransfer.triggers import get_trigger

    with installed(tmp_path, "TRIGGERS"):
        planted, placement = get_trigger({"kind": TRIGGER}).apply(torch.zeros(2, 3, 4, 4, dtype=torch.uint8),
                                                                  np.array([0, 1]))
    assert planted[:, :, 0, 0].eq(255).all() and int(planted.sum()) == 2 * 3 * 255 and len(placement) == 2

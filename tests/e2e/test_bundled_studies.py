"""Every bundled study file runs end to end at a tiny size: the same blocks, shrunk (smaller data and images,
one-epoch trainings, at most two seeds, one task, sizes of at most 32), through `biastransfer run` and its
report. Fashion-MNIST studies read a tiny fake copy."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from biastransfer.cli import app
from biastransfer.store.sqlite import ResultStore
from tiny_study import TINY_PARAMS

pytestmark = pytest.mark.slow
STUDIES = sorted(p.name for p in resources.files("biastransfer.studies").iterdir() if p.name.endswith(".yaml"))


def _size(n: Any) -> Any:
    return n if n == "full" else min(int(n), 32)


def shrink(study: dict[str, Any], fmnist: Path) -> dict[str, Any]:
    study = copy.deepcopy(study)
    data = study.setdefault("dataset", {})
    synthetic = data.get("name", "synthetic") == "synthetic"
    if synthetic:
        data.update(resolution=16, params={**data.get("params", {}), **TINY_PARAMS})
    else:  # the fake Fashion-MNIST has 100 items per class: small validation pools
        data.update(root=str(fmnist), resolution=12)
    study["train"] = {**study.get("train", {}), "max_epochs": 1, "patience": 1}
    study["train"]["lr"] = study["train"].get("lr", [0.05])[:1]
    study["base_training"] = {**study.get("base_training", {}), "epochs": 1, "max_examples": 200}
    evaluation = study.setdefault("evaluation", {})
    evaluation["test_size"] = min(evaluation.get("test_size", 200), 200 if synthetic else 16)
    for block in study["experiments"]:
        block["seeds"] = block.get("seeds", [0, 1, 2])[:2]
        block["tasks"] = block["tasks"][:1]
        sizes = block.get("n_train", [512])
        block["n_train"] = list(dict.fromkeys(_size(n) for n in (sizes if isinstance(sizes, list) else [sizes])))
        if "n_val" in block or not synthetic:
            block["n_val"] = _size(block.get("n_val", 512)) if synthetic else 8
        options = block.get("options", {})
        if "control_at" in options:
            options["control_at"] = block["n_train"][0]
        if "test_size" in options:
            options["test_size"] = min(options["test_size"], 200)
    return study


@pytest.mark.parametrize("name", STUDIES)
def test_bundled_study_runs_at_a_tiny_size(name: str, tmp_path: Path, cache_dir: Path, fake_fmnist: Path) -> None:
    raw = yaml.safe_load((resources.files("biastransfer.studies") / name).read_text())
    path = tmp_path / name
    path.write_text(yaml.safe_dump(shrink(raw, fake_fmnist)))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1",
                                      "--cache-dir", str(cache_dir)])
    assert result.exit_code == 0, result.output
    store = ResultStore.open_existing(tmp_path / "out")
    kinds = {r["spec"]["kind"] for r in store.runs()}
    store.close()
    assert kinds == {b["kind"] for b in raw["experiments"]}
    text = (tmp_path / "out" / "report.html").read_text()
    assert '<section id="reading">' in text and '<section id="results">' in text

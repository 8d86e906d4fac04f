"""Registry-wide: a base of kind ``trained`` never sees an example of the finetuning, validation or test pools.

For every registered dataset (its tiny copy, :data:`test_registry_datasets.TINY`) with a ``pretrain`` pool
carved (:data:`CARVED`), the rows a trained base trains on and the rows it holds out for early stopping lie in
``pretrain`` only: no row, and no image (compared by its decoded pixels), of ``train``, ``val`` or ``test``.
Without a pretrain pool (:data:`NO_POOL`), preflight refuses the base before anything trains, naming the dataset
and how to carve one.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_registry_datasets import TINY

from biastransfer import plugins  # noqa: F401  (registers every dataset)
from biastransfer.config import BaseTrainingConfig
from biastransfer.data.registry import DATASETS, load_dataset
from biastransfer.data.table import DataError, LoadedDataset
from biastransfer.plan import parse_study, preflight
from biastransfer.train import pretrain
from biastransfer.train.engine import FitResult

HERE = "tests/data/test_base_pools.py"
RESOLUTION = 16

CARVED: dict[str, dict[str, Any]] = {
    "synthetic": {},                                       # has a pretrain pool of 200 in TINY
    "synthetic-objects": {},                               # a uniform pretrain pool of 40 per class set in TINY
    "celeba": {"pretrain_share": 0.5},                     # 3 of the 6 official train rows
    "fairface": {"pretrain_share": 0.5},
    "coco": {"pretrain_share": 0.75, "val_share": 0.0},    # 4 official train rows keep a gender: 3 pretrain, 1 train
    "dollarstreet": {"pretrain_share": 0.5},
    "geode": {"pretrain_share": 0.5},
    "imagefolder": {"pretrain_share": 0.5},
    "manifest": {"pretrain_share": 0.75},                  # carved from the rows marked train in its split column
    "fashion-mnist": {},                                   # pretrain_share 0.4 by default
    "mixture": {"sources": [{"name": "dollarstreet", "root": "dollarstreet", "params": {"pretrain_share": 0.5}},
                            {"name": "coco", "root": "coco", "params": {"pretrain_share": 0.75, "val_share": 0.0}}]},
    "fashion-mnist-panels": {},
}
"""Params (over TINY's) that give each dataset's tiny copy a pretrain pool of at least 3 labelled rows."""

NO_POOL: dict[str, dict[str, Any]] = {
    "synthetic": {"pretrain": 0},
    "synthetic-objects": {"pretrain": 0},
    "fashion-mnist": {"pretrain_share": 0.0},
    "fashion-mnist-panels": {"pretrain_share": 0.0},
}
"""Params (over TINY's) that leave a dataset without a pretrain pool (the file-based adapters' default)."""


def _load(name: str, request: pytest.FixtureRequest, cache: Path, extra: dict[str, Any]) -> LoadedDataset:
    tiny = TINY[name]
    root = None if tiny.root is None else request.getfixturevalue(tiny.root)
    return load_dataset(name, root=root, cache_dir=cache, resolution=RESOLUTION,
                        params={**copy.deepcopy(tiny.params), **extra})


def test_every_registered_dataset_has_a_pool_case() -> None:
    missing = [n for n in DATASETS.names() if n not in CARVED]
    assert not missing, (f"dataset(s) {', '.join(missing)} have no entry in CARVED of {HERE}: add the params "
                         f"that give the tiny copy a pretrain pool")


def _image_ids(data: LoadedDataset, rows: np.ndarray) -> set[str]:
    return {hashlib.sha256(np.ascontiguousarray(data.images.array[i]).tobytes()).hexdigest() for i in rows}


@pytest.mark.parametrize("name", DATASETS.names())
def test_a_trained_base_sees_no_finetuning_validation_or_test_example(
        name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _load(name, request, tmp_path / "data", CARVED.get(name, {}))
    table = data.table
    assert table.has_split("pretrain"), f"{name}: CARVED[{name!r}] gives no pretrain pool"
    seen: list[np.ndarray] = []  # every row the trainer hands to training or early stopping
    real_split = pretrain.make_split

    def make_split(images: torch.Tensor, indices: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        seen.append(np.asarray(indices))
        return real_split(images, indices, *args, **kwargs)

    monkeypatch.setattr(pretrain, "make_split", make_split)
    monkeypatch.setattr(pretrain, "fit", lambda *a, **k: FitResult(0.5, 0, 1, 0.0))  # the rows, not the training
    config = BaseTrainingConfig().model_dump(mode="json")
    _, info = pretrain.train_attribute_base(data, arch="small_resnet", attribute=table.sensitive, config=config,
                                            cache_dir=tmp_path / "cache", device=torch.device("cpu"))
    used = np.unique(np.concatenate(seen))
    assert len(seen) == 2 and used.size >= 3
    others = np.concatenate([np.flatnonzero(table.frame["split"].to_numpy() == s) for s in ("train", "val", "test")])
    assert np.intersect1d(used, others).size == 0, f"{name}: the base trains on finetuning/val/test rows"
    assert set(table.frame["split"].to_numpy()[used]) == {"pretrain"}
    shared = _image_ids(data, used) & _image_ids(data, others)
    assert not shared, f"{name}: {len(shared)} image(s) of the base's pool are also in train/val/test"
    expected = hashlib.sha256(np.sort(used).astype(np.int64).tobytes()).hexdigest()[:16]
    assert info["pool"] == {"split": "pretrain", "n_examples": int(used.size), "n_holdout": int(seen[1].size),
                            "rows_sha256": expected}
    info_file = tmp_path / "cache" / "bases" / f"{info['key']}.json"  # as cached before the pool was recorded
    info_file.write_text(json.dumps({k: v for k, v in json.loads(info_file.read_text()).items() if k != "pool"}))
    _, cached = pretrain.train_attribute_base(data, arch="small_resnet", attribute=table.sensitive, config=config,
                                              cache_dir=tmp_path / "cache", device=torch.device("cpu"))
    assert cached["cached"] and cached["pool"] == info["pool"]  # read from the cache, the pool is still recorded


def _study(name: str, data: LoadedDataset, root: Path | None, params: dict[str, Any]) -> dict[str, Any]:
    return {"name": "no-pool", "dataset": {"name": name, "root": None if root is None else str(root),
                                           "resolution": RESOLUTION, "params": params},
            "bases": {"biased": {"kind": "trained", "attribute": data.table.sensitive}, "scratch": {"kind": "scratch"}},
            "experiments": [{"name": "inh", "kind": "inheritance", "tasks": [data.table.tasks[0]],
                             "bases": ["scratch", "biased"], "levels": ["natural"], "n_train": 4, "seeds": [0]}]}


@pytest.mark.parametrize("name", DATASETS.names())
def test_without_a_pretrain_pool_a_trained_base_is_refused_at_preflight(
        name: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {**copy.deepcopy(TINY[name].params), **NO_POOL.get(name, {})}
    root = None if TINY[name].root is None else request.getfixturevalue(TINY[name].root)
    data = load_dataset(name, root=root, cache_dir=tmp_path / "data", resolution=RESOLUTION, params=params)
    assert not data.table.has_split("pretrain"), f"{name}: the params of NO_POOL leave a pretrain pool"
    trained: list[Any] = []
    monkeypatch.setattr(pretrain, "fit", lambda *a, **k: trained.append(1))
    study = parse_study(_study(name, data, root, params))
    with pytest.raises(ValueError) as info:
        preflight(study.expand(), lambda spec: data)
    message = " ".join(str(info.value).split())
    assert message.startswith(f"bases.biased: dataset {name!r} has no 'pretrain' split"), message
    hint = DATASETS.get(name).carve_pretrain
    assert hint and hint in message and "'pool:'" in message, message
    assert not trained
    # and the trainer itself never falls back to the finetuning pool
    with pytest.raises(DataError, match=f"dataset {name!r} has no 'pretrain' split"):
        pretrain.base_rows(data, data.table.sensitive, BaseTrainingConfig().model_dump())


def test_the_cli_refuses_a_trained_base_without_a_pool_before_training(celeba_root: Path, tmp_path: Path) -> None:
    """What a user sees: `biastransfer run` on CelebA at the default pretrain_share 0 exits with the reason and
    how to carve a pool, without a traceback, before any run or base is trained."""
    import sqlite3

    import yaml
    from typer.testing import CliRunner

    from biastransfer.cli import app

    data = load_dataset("celeba", root=celeba_root, cache_dir=tmp_path / "data", resolution=RESOLUTION,
                        params=dict(TINY["celeba"].params))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study("celeba", data, celeba_root, dict(TINY["celeba"].params))))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--quiet", "--workers", "1",
                                      "--cache-dir", str(tmp_path / "cache")])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit | None)
    assert "error: bases.biased: dataset 'celeba' has no 'pretrain' split" in text, text
    assert "set dataset.params.pretrain_share" in text and "'pool:'" in text, text
    assert sqlite3.connect(out / "results.db").execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert not (tmp_path / "cache" / "bases").exists()

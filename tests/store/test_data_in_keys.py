"""The data's content fingerprint is part of the run and search keys: after a dataset's labels change, the study
reruns on the new data with new searches, the old runs stay in the folder, and reports and exports use only the
runs on the data as it is now (before, such a folder was refused, or, before that, pooled)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from biastransfer.driver import current_specs, run_study, split_runs
from biastransfer.plan import parse_study, plan_jobs
from biastransfer.store.sqlite import ResultStore


@pytest.fixture
def manifest(tiny_synthetic, tmp_path: Path) -> Path:
    """The tiny synthetic benchmark's train, val and test images as PNG files listed in a manifest (a, t3)."""
    root = tmp_path / "mine"
    (root / "img").mkdir(parents=True)
    table, images = tiny_synthetic.table, tiny_synthetic.images
    rows = []
    for split in ("train", "val", "test"):
        for i in np.flatnonzero(table.frame["split"].to_numpy() == split)[:240]:
            name = f"img/{split}-{i}.png"
            Image.fromarray(np.asarray(images.array[i])).save(root / name)
            rows.append({"path": name, "split": split, "a": int(table.column("a")[i]),
                         "t3": int(table.column("t3")[i])})
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "split", "a", "t3"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def _study(root: Path):
    return parse_study({
        "name": "labels", "dataset": {"name": "manifest", "root": str(root), "resolution": 16,
                                      "params": {"sensitive": "a", "labels": ["t3"]}},
        "model": {"arch": "small_resnet"},
        "train": {"lr": [0.05, 0.01], "weight_decay": [0.0005], "max_epochs": 2, "patience": 1, "hp_seeds": 1},
        "bases": {"scratch": {"kind": "scratch"}},
        "evaluation": {"threshold": "val", "test_size": 100},
        "experiments": [{"name": "inheritance", "kind": "inheritance", "tasks": ["t3"], "bases": ["scratch"],
                         "levels": ["natural"], "n_train": 32, "seeds": [0, 1]}],
    })


def _flip_labels(root: Path, share: float = 0.3) -> None:
    path = root / "manifest.csv"
    rows = list(csv.DictReader(path.open()))
    for row in rows[: int(share * len(rows))]:
        row["t3"] = str(1 - int(row["t3"]))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_changed_labels_rerun_with_new_searches_and_are_never_pooled(manifest: Path, tmp_path: Path,
                                                                     cache_dir: Path) -> None:
    out = tmp_path / "out"
    first = run_study(_study(manifest), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    assert first.ran == 2
    store = ResultStore.open_existing(out)
    old_keys, old_searches = store.done_keys(), {h["key"] for h in store.all_hparams()}
    old_hash = {r["provenance"]["data_hash"] for r in store.runs()}
    store.close()
    assert len(old_searches) == 1

    _flip_labels(manifest)
    second = run_study(_study(manifest), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    assert second.ran == 2 and second.skipped == 0  # nothing reused from the old data …
    store = ResultStore.open_existing(out)
    try:
        searches = {h["key"] for h in store.all_hparams()}
        assert len(searches - old_searches) == 1  # … not even the hyperparameters
        current, others = split_runs(store)
        assert {r["key"] for r in others} == old_keys and len(current) == 2
        assert {r["provenance"]["data_hash"] for r in current}.isdisjoint(old_hash)
        assert all(r["spec"]["data_fingerprint"] == r["provenance"]["data_hash"] for r in current)
        assert store.count() == 4  # the old runs are kept
    finally:
        store.close()


def test_a_spec_s_key_and_search_key_include_the_data(manifest: Path, tmp_path: Path) -> None:
    from biastransfer.backends import Resources
    from biastransfer.backends.workspace import Workspace

    workspace = Workspace(Resources(torch.device("cpu"), tmp_path / "cache", tmp_path))
    before = current_specs(_study(manifest), workspace)
    _flip_labels(manifest)
    after = current_specs(_study(manifest), Workspace(workspace.resources))
    assert [s.setting_key() for s in before] == [s.setting_key() for s in after]
    assert not {s.key for s in before} & {s.key for s in after}
    searches = [[j.key for j in plan_jobs(specs, lambda key: None) if j.kind == "hparams"] for specs in (before, after)]
    assert len(searches[0]) == 1 and searches[0] != searches[1]

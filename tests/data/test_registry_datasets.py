"""Registry-wide: every registered dataset loads from a tiny copy, validates, reuses its decoded cache and trains
one tiny finetune.

A new dataset is covered by one entry in :data:`TINY` (the fixture of ``tests/data/conftest.py`` that writes a
tiny copy of its published layout, and the params it needs); a registered dataset without one fails
``test_every_registered_dataset_has_a_tiny_copy`` (and its own parametrized case) saying what to add.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import PIL.Image
import pytest
import torch

from biastransfer import plugins  # noqa: F401  (imports every module that registers a dataset)
from biastransfer.data import fashion_mnist, synthetic, synthetic_objects
from biastransfer.data.registry import DATASETS, load_dataset
from biastransfer.data.table import SPLITS, LoadedDataset
from biastransfer.models.architectures import build_model
from biastransfer.train.engine import FitConfig, fit, make_split

HERE = "tests/data/test_registry_datasets.py"
RESOLUTION = 16
REQUIRED_SPLITS = ("train", "val", "test")
N_FIT = 8  # rows of the tiny finetune (a plain subset of the train split: some copies are too small to balance)


class Tiny(NamedTuple):
    """How to get a tiny copy of a dataset: the root fixture (None: needs no files) and the load params."""

    root: str | None
    params: dict[str, Any]


DECODE = {"progress": False, "workers": 2}
TINY: dict[str, Tiny] = {
    "synthetic": Tiny(None, {"pretrain": 200, "train": 400, "val": 200, "test": 200}),
    "synthetic-objects": Tiny(None, {"classes": 4, "pretrain": 40, "train": 40, "val": 20, "test": 20}),
    "celeba": Tiny("celeba_root", DECODE),
    "fairface": Tiny("fairface_root", DECODE),
    "coco": Tiny("coco_root", {**DECODE, "val_share": 0.25}),  # the default carves no val row from 4 train rows
    "dollarstreet": Tiny("dollarstreet_root", DECODE),
    "geode": Tiny("geode_root", DECODE),
    "imagefolder": Tiny("imagefolder_root", {**DECODE, "group_of_class": {"cat": 0, "dog": 1, "owl": 1}}),
    "manifest": Tiny("manifest_root", {**DECODE, "sensitive": "female"}),
    "fashion-mnist": Tiny("fmnist_root", {}),
    "mixture": Tiny("mixture_root", {**DECODE, "mapping": "mixture.csv", "sources": [
        {"name": "dollarstreet", "root": "dollarstreet"}, {"name": "coco", "root": "coco"}]}),
    "fashion-mnist-panels": Tiny("fmnist_root", {}),
}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (several threads on a busy machine are many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def missing_message(name: str) -> str:
    return (f"dataset {name!r} has no tiny fixture in {HERE}: add TINY[{name!r}] = Tiny(<the fixture of "
            f"tests/data/conftest.py that writes a tiny copy of its layout, or None if it reads no files>, "
            f"<the params it needs>)")


def test_every_registered_dataset_has_a_tiny_copy() -> None:
    missing = [name for name in DATASETS.names() if name not in TINY]
    assert not missing, "\n".join(missing_message(name) for name in missing)
    stale = sorted(set(TINY) - set(DATASETS.names()))
    assert not stale, f"TINY in {HERE} names datasets that are not registered: {', '.join(stale)}"


def validate(name: str, data: LoadedDataset) -> None:
    """The contract of a loaded dataset, whatever the source."""
    t, array = data.table, data.images.array
    assert data.name == name
    assert len(t) == len(data.images) == array.shape[0] > 0
    assert array.dtype == np.uint8 and array.ndim == 4, f"images must be uint8 NHWC, got {array.dtype} {array.shape}"
    assert array.shape[1:3] == (RESOLUTION, RESOLUTION) and array.shape[3] in (1, 3)
    assert data.images.channels == array.shape[3]
    assert isinstance(data.fingerprint, str) and data.fingerprint
    assert t.tasks and t.sensitive not in t.tasks
    assert len(t.group_names) == 2 and all(isinstance(g, str) and g for g in t.group_names)
    for col in (t.sensitive, *t.tasks):
        values = set(np.unique(t.frame[col]).tolist())
        assert values <= {-1, 0, 1}, f"column {col!r} of {name} holds {sorted(values)}; allowed: -1, 0, 1"
    present = set(t.frame["split"])
    own_pools = {s for s in present if s.startswith("pretrain_")}  # more pools for bases (pretrain_diverse …)
    assert present - own_pools <= set(SPLITS), (f"{name}: splits {sorted(present - own_pools - set(SPLITS))} are "
                                                f"not among {SPLITS} nor a 'pretrain_*' pool")
    absent = [s for s in REQUIRED_SPLITS if s not in present]
    assert not absent, f"the tiny copy of {name} has no {', '.join(absent)} split(s); splits: {sorted(present)}"


def _no_decoding(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("decoded again instead of reading the cache")


def cache_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", DATASETS.names())
def test_tiny_copy_loads_validates_caches_and_trains(name: str, request: pytest.FixtureRequest, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if name not in TINY:
        pytest.fail(missing_message(name))
    tiny = TINY[name]
    if DATASETS.get(name).needs_root:
        assert tiny.root is not None, f"dataset {name!r} needs a root: give TINY[{name!r}] a root fixture"
    assert DATASETS.get(name).description, f"dataset {name!r} has no description"
    root = None if tiny.root is None else request.getfixturevalue(tiny.root)
    cache = tmp_path / "cache"

    def load() -> LoadedDataset:
        return load_dataset(name, root=root, cache_dir=cache, resolution=RESOLUTION, params=copy.deepcopy(tiny.params))

    data = load()
    validate(name, data)

    # decode once: the second load reads the cache (every known decoder blocked, no cache file rewritten)
    written = cache_files(cache)
    assert any(f.endswith(".npy") for f in written), f"{name} left no decoded .npy cache in {cache}: {written}"
    for target, attr in ((PIL.Image, "open"), (fashion_mnist, "resize_batch"), (synthetic, "generate"),
                         (synthetic_objects, "generate")):
        monkeypatch.setattr(target, attr, _no_decoding)
    again = load()
    monkeypatch.undo()
    assert again.fingerprint == data.fingerprint
    assert cache_files(cache) == written, f"{name}: the second load wrote to the cache"
    assert isinstance(again.images.array, np.memmap), f"{name}: the second load did not memory-map the cache"
    np.testing.assert_array_equal(again.images.array, data.images.array)
    assert again.table.frame.equals(data.table.frame)

    # run at a tiny size: one epoch of finetuning on the first task, a plain subset of the train split
    task = data.table.tasks[0]
    labels = data.table.column(task)
    rows = [i for i in data.table.split_indices("train") if labels[i] in (0, 1)][:N_FIT]
    assert len(rows) >= 2, f"{name}: fewer than 2 labelled train rows for task {task!r}"
    torch.manual_seed(0)
    model = build_model("small_resnet", in_channels=data.images.channels)
    split = make_split(data.images.tensor(), np.array(rows), labels[rows])
    result = fit(model, split, None, FitConfig(max_epochs=1, batch_size=N_FIT), seed=0, device=torch.device("cpu"))
    assert result.epochs == 1 and math.isfinite(result.history[-1]["train_loss"]), result.history

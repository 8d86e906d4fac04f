"""The triggered dataset (clean rows, then a triggered copy of every row) and the planted source base."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from biastransfer import plugins  # noqa: F401  (every registry)
from biastransfer.data.registry import load_dataset
from biastransfer.data.table import LABEL, DataError
from biastransfer.models.bases import BASES
from biastransfer.paths import bases_cache_dir, data_cache_dir
from biastransfer.train.planted import plant_rows, train_planted_base
from biastransfer.triggers import get_trigger
from biastransfer.triggers.plant import Plant
from biastransfer.triggers.store import _MEMO, SOURCE_ROW, TRIGGERED, triggered_dataset

PATCH = {"kind": "patch", "size": 4, "colour": "yellow", "position": "top-left"}


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory):
    return load_dataset("synthetic-objects", cache_dir=tmp_path_factory.mktemp("objects"), resolution=16,
                        params={"classes": 4, "pretrain": 40, "train": 30, "val": 20, "test": 20})


def test_the_triggered_half_is_the_trigger_applied_to_every_clean_row(objects, tmp_path: Path) -> None:
    trigger = get_trigger(PATCH)
    data = triggered_dataset(objects, trigger, tmp_path)
    n = len(objects.images)
    assert data.n_clean == n and len(data.dataset.images) == len(data.dataset.table) == 2 * n
    clean, both = objects.images.array, data.dataset.images.array
    assert np.array_equal(both[:n], clean)
    expected, placement = trigger.apply(objects.images.tensor(), np.arange(n))
    assert np.array_equal(both[n:], expected.permute(0, 2, 3, 1).numpy())
    assert placement == data.placement
    changed = (both[n:] != clean).any(axis=3)
    assert not changed[:, 4:, :].any() and not changed[:, :, 4:].any()  # only the 4×4 top-left box
    frame = data.dataset.table.frame
    assert frame[TRIGGERED].tolist() == [0] * n + [1] * n
    assert frame[SOURCE_ROW].tolist() == [*range(n), *range(n)]
    assert (frame[LABEL].to_numpy()[n:] == objects.table.frame[LABEL].to_numpy()).all()
    assert data.dataset.table.classes == objects.table.classes
    assert data.dataset.fingerprint != objects.fingerprint
    assert list(data.triggered_rows(np.array([0, 5]))) == [n, n + 5]
    with pytest.raises(ValueError, match="clean rows"):
        data.triggered_rows(np.array([n]))


def test_it_is_built_once_into_the_cache_and_read_back(objects, tmp_path: Path) -> None:
    trigger = get_trigger({**PATCH, "position": "random", "seed": 3})
    first = triggered_dataset(objects, trigger, tmp_path)
    files = sorted(p.name for p in data_cache_dir(tmp_path).iterdir() if p.suffix != ".lock")
    assert len(files) == 2 and all(f.startswith("triggered-") for f in files)
    assert not any("partial" in f for f in files)
    _MEMO.clear()
    again = triggered_dataset(objects, trigger, tmp_path)
    assert again is not first and np.array_equal(again.dataset.images.array, first.dataset.images.array)
    assert again.placement == first.placement
    assert len({(int(t), int(left)) for t, left in zip(first.placement.top, first.placement.left, strict=True)}) > 5
    other = triggered_dataset(objects, get_trigger({**PATCH, "colour": "red"}), tmp_path)
    assert not np.array_equal(other.dataset.images.array, first.dataset.images.array)


def test_an_edited_overlay_file_is_not_served_from_the_cache(objects, tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "mark.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 255)).save(path)
    trigger = get_trigger({"kind": "overlay", "path": str(path), "size": 4})
    red = triggered_dataset(objects, trigger, tmp_path).dataset.images.array.copy()
    Image.new("RGBA", (4, 4), (0, 0, 255, 255)).save(path)
    blue = triggered_dataset(objects, trigger, tmp_path).dataset.images.array
    n = len(objects.images)
    assert (red[n:, 0, 0] == [255, 0, 0]).all() and (blue[n:, 0, 0] == [0, 0, 255]).all()


def test_planting_replaces_exactly_round_rate_times_the_trigger_class_rows() -> None:
    labels = np.repeat([0, 1, 2], [10, 10, 10])
    plant = Plant(trigger=get_trigger(PATCH), trigger_classes=(1,), rate=0.35, source_classes=None)
    rows = np.arange(30)
    out = plant_rows(rows, labels, plant, n_clean=100, seed=0, part="fit")
    moved = out >= 100
    assert moved.sum() == 4  # round(0.35 · 10) = 3.5 → 4 (half to even)
    assert (labels[out[moved] - 100] == 1).all() and (out[~moved] == rows[~moved]).all()
    assert np.array_equal(out, plant_rows(rows, labels, plant, 100, 0, "fit"))
    assert not np.array_equal(out, plant_rows(rows, labels, plant, 100, 1, "fit"))


def test_a_planted_base_learns_its_source_classes_with_the_trigger_and_is_cached(objects, tmp_path: Path) -> None:
    config = {"epochs": 1, "lr": 0.05, "weight_decay": 5e-4, "batch_size": 32, "seed": 0}
    options = {"trigger": PATCH, "trigger_classes": [objects.table.classes[0]], "source_classes": [0, 1, 2]}
    model, info = train_planted_base(objects, arch="small_resnet", attribute=LABEL, config=config,
                                     plant_options=options, cache_dir=tmp_path, device=torch.device("cpu"))
    assert model.head.out_features == 3  # the source task: classes 0, 1, 2 renumbered
    assert not info["cached"] and info["plant"]["trigger_classes"] == [0]
    pool = objects.table.split_indices("pretrain")
    class0 = int(np.count_nonzero(objects.table.frame[LABEL].to_numpy()[pool] == 0))
    assert info["plant"]["n_planted"] == class0  # rate 1: every class-0 image of the pool carries the trigger
    assert 0.0 <= info["source_attack_success"] <= 1.0 and info["n_probe"] > 0
    stored = json.loads((bases_cache_dir(tmp_path) / f"{info['key']}.json").read_text())
    assert stored["key"] == info["key"]
    again, info2 = train_planted_base(objects, arch="small_resnet", attribute=LABEL, config=config,
                                      plant_options=options, cache_dir=tmp_path, device=torch.device("cpu"))
    assert info2["cached"] and info2["key"] == info["key"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    _, info3 = train_planted_base(objects, arch="small_resnet", attribute=LABEL, config=config,
                                  plant_options={**options, "rate": 0.5}, cache_dir=tmp_path,
                                  device=torch.device("cpu"))
    assert info3["key"] != info["key"]
    _, control = train_planted_base(objects, arch="small_resnet", attribute=LABEL, config=config,
                                    plant_options={**options, "rate": 0}, cache_dir=tmp_path,
                                    device=torch.device("cpu"))
    assert control["plant"]["n_planted"] == 0 and control["key"] not in (info["key"], info3["key"])


@pytest.mark.parametrize(("options", "message"), [
    ({"trigger_classes": ["ring"]}, "needs 'trigger'"),
    ({"trigger": PATCH}, "needs 'trigger_classes'"),
    ({"trigger": {"size": 4}, "trigger_classes": [0]}, "must be a mapping with a 'kind'"),
    ({"trigger": {**PATCH, "colour": "mauve"}, "trigger_classes": [0]}, "colour"),
    ({"trigger": PATCH, "trigger_classes": [0], "rate": 1.5}, r"'rate' must be a number in \[0, 1\]"),
    ({"trigger": PATCH, "trigger_classes": [], }, "non-empty list"),
    ({"trigger": PATCH, "trigger_classes": [0], "epochs": 3}, "unknown option"),
])
def test_a_planted_base_checks_its_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BASES.get("planted")(**options).check()


def test_a_planted_base_checks_its_classes_against_the_data(objects) -> None:
    base = BASES.get("planted")(trigger=PATCH, trigger_classes=["hexagon"])
    with pytest.raises(DataError, match=r"'hexagon' is not a class of 'label'.*allowed: ring, cross"):
        base.check_data(objects)
    base = BASES.get("planted")(trigger=PATCH, trigger_classes=[3], source_classes=[0, 1])
    with pytest.raises(DataError, match="must be among the source_classes"):
        base.check_data(objects)
    BASES.get("planted")(trigger=PATCH, trigger_classes=["cross"], source_classes=[0, 1]).check_data(objects)


def test_a_planted_base_can_have_a_binary_source_task(objects, tmp_path: Path) -> None:
    config = {"epochs": 1, "lr": 0.05, "weight_decay": 5e-4, "batch_size": 32, "seed": 0}
    options = {"trigger": PATCH, "trigger_classes": [1], "rate": 0.5}
    model, info = train_planted_base(objects, arch="small_resnet", attribute="ring", config=config,
                                     plant_options=options, cache_dir=tmp_path, device=torch.device("cpu"))
    assert model.head.out_features == 1
    pool = objects.table.split_indices("pretrain")
    rings = int(np.count_nonzero(objects.table.column("ring")[pool] == 1))
    assert 0 < info["plant"]["n_planted"] <= rings // 2 + 2  # half of each part's rings, rounded per part
    with pytest.raises(DataError, match=r"2 is not a class of 'ring'.*allowed: 0, 1"):
        train_planted_base(objects, arch="small_resnet", attribute="ring", config=config,
                           plant_options={**options, "trigger_classes": [2]}, cache_dir=tmp_path,
                           device=torch.device("cpu"))


def test_concurrent_builders_build_once(objects, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from biastransfer.triggers import store

    builds: list[int] = []
    real = store._build

    def slow_build(*args, **kwargs):
        builds.append(1)
        threading.Event().wait(0.3)  # long enough for the other thread to reach the lock
        real(*args, **kwargs)

    monkeypatch.setattr(store, "_build", slow_build)
    _MEMO.clear()
    results: list = []
    trigger = get_trigger({**PATCH, "colour": "cyan"})
    threads = [threading.Thread(target=lambda: results.append(triggered_dataset(objects, trigger, tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(results) == 2
    assert np.array_equal(results[0].dataset.images.array, results[1].dataset.images.array)

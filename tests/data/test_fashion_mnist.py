"""Fashion-MNIST from idx files: parsing, the plain dataset, the two-panel dataset, and the Debian files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from biastransfer.data import fashion_mnist as fm
from biastransfer.data.registry import load_dataset
from biastransfer.data.table import DataError

DEBIAN_PRESENT = all(p.is_file() for p in fm.DEBIAN_FILES)


def test_read_idx_gz_and_raw(tmp_path: Path, idx_writer) -> None:
    write_idx = idx_writer
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(fm.read_idx(write_idx(tmp_path / "a.gz", arr)), arr)
    np.testing.assert_array_equal(fm.read_idx(write_idx(tmp_path / "a", arr, gz=False)), arr)
    raw = (tmp_path / "a").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-5])
    with pytest.raises(DataError, match=r"short: idx header says shape \(2, 3, 4\)"):
        fm.read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="not an idx file"):
        fm.read_idx(tmp_path / "junk")


def test_missing_idx_file_is_named(fmnist_root: Path, tmp_path: Path) -> None:
    (fmnist_root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing file .*t10k-labels-idx1-ubyte\(\.gz\)"):
        load_dataset("fashion-mnist", root=fmnist_root, cache_dir=tmp_path / "c", resolution=8)


def test_plain(fmnist_root: Path, tmp_path: Path, monkeypatch) -> None:
    data = load_dataset("fashion-mnist", root=fmnist_root, cache_dir=tmp_path / "c", resolution=32,
                        params={"channels": 1})
    t = data.table
    assert data.images.array.shape == (700, 32, 32, 1)
    counts = t.frame["split"].value_counts().to_dict()
    assert counts == {"train": 300, "pretrain": 240, "val": 60, "test": 100}
    assert t.sensitive == "bright" and t.group_names == ("dark", "bright")
    assert set(fm.CLASSES) <= set(t.tasks)
    assert t.frame["bag"].sum() == 70 and t.frame["t-shirt"].sum() == 70
    # bright is half of every class, so all four (a, y) cells are populated
    assert t.frame.groupby("class")["bright"].mean().between(0.4, 0.6).all()
    # cached: the second load does not resize again
    monkeypatch.setattr(fm, "resize_batch", lambda *a, **k: (_ for _ in ()).throw(AssertionError("resized")))
    again = load_dataset("fashion-mnist", root=fmnist_root, cache_dir=tmp_path / "c", resolution=32,
                         params={"channels": 1})
    assert again.fingerprint == data.fingerprint


def test_plain_rgb_native_resolution(fmnist_root: Path, tmp_path: Path) -> None:
    data = load_dataset("fashion-mnist", root=fmnist_root, cache_dir=tmp_path / "c", resolution=28,
                        params={"sensitive": "bag"})
    raw = fm.load_raw(fmnist_root)
    assert data.images.array.shape == (700, 28, 28, 3)
    np.testing.assert_array_equal(data.images.array[5, :, :, 1], raw["train_images"][5])  # exact at 28
    assert data.table.group_names == ("not bag", "bag") and "bag" not in data.table.tasks
    with pytest.raises(DataError, match="unknown or unusable class 'hat'"):
        load_dataset("fashion-mnist", root=fmnist_root, cache_dir=tmp_path / "c", resolution=28,
                     params={"sensitive": "hat"})
    with pytest.raises(DataError, match="unknown parameter 'colour'; allowed: "):
        load_dataset("fashion-mnist", root=fmnist_root, cache_dir=tmp_path / "c", resolution=28,
                     params={"colour": 1})


def test_panels(fmnist_root: Path, tmp_path: Path) -> None:
    data = load_dataset("fashion-mnist-panels", root=fmnist_root, cache_dir=tmp_path / "c", resolution=16,
                        params={"seed": 1})
    t, f = data.table, data.table.frame
    assert t.sensitive == "second_bag" and t.group_names == ("sneaker", "bag")
    assert t.tasks == tuple(c for c in fm.CLASSES if c not in ("bag", "sneaker"))
    assert len(t) == 480 + 80  # 8 first-panel classes of 600 train items and of 100 test items
    assert data.images.array.shape == (560, 16, 16, 3)
    assert set(f["second_class"]) == {"bag", "sneaker"}
    assert (f["second_bag"] == (f["second_class"] == "bag")).all()
    assert set(f["first_class"]) == set(t.tasks)
    # each first panel's class column matches, and T1-or-T2 tasks can be formed from the columns
    for cls in t.tasks:
        assert (f[cls] == (f["first_class"] == cls)).all()
    # pools are disjoint in their source items (both panels come from the pool's own items)
    first_by_split = {s: set(f.loc[f["split"] == s, "first_index"]) for s in ("pretrain", "train", "val")}
    second_by_split = {s: set(f.loc[f["split"] == s, "second_index"]) for s in ("pretrain", "train", "val")}
    used = [first_by_split[s] | second_by_split[s] for s in first_by_split]
    assert not (used[0] & used[1]) and not (used[0] & used[2]) and not (used[1] & used[2])
    assert (f.loc[f["split"] == "test", "first_index"] >= 600).all()
    # every (a, y) cell is populated in the finetuning pool
    train = f[f["split"] == "train"]
    for cls in t.tasks:
        counts = train.groupby([train["second_bag"], train[cls]]).size()
        assert len(counts) == 4 and counts.min() > 0, cls
    # the left half shows the first item, the right half the second
    raw = fm.load_raw(fmnist_root)
    items = np.concatenate([raw["train_images"], raw["test_images"]])
    big = load_dataset("fashion-mnist-panels", root=fmnist_root, cache_dir=tmp_path / "c", resolution=56,
                       params={"seed": 1, "channels": 1})
    row = 7
    i, j = int(f["first_index"][row]), int(f["second_index"][row])
    np.testing.assert_array_equal(big.images.array[row, 14:42, :28, 0], items[i])
    np.testing.assert_array_equal(big.images.array[row, 14:42, 28:, 0], items[j])
    assert big.images.array[row, :14].max() == 0
    # deterministic in the seed
    same = load_dataset("fashion-mnist-panels", root=fmnist_root, cache_dir=tmp_path / "c", resolution=16,
                        params={"seed": 1})
    other = load_dataset("fashion-mnist-panels", root=fmnist_root, cache_dir=tmp_path / "c", resolution=16,
                         params={"seed": 2})
    assert same.fingerprint == data.fingerprint and other.fingerprint != data.fingerprint


def test_panels_params(fmnist_root: Path, tmp_path: Path) -> None:
    data = load_dataset("fashion-mnist-panels", root=fmnist_root, cache_dir=tmp_path / "c", resolution=8,
                        params={"a_class": "shirt", "not_a_class": "coat",
                                "first_classes": ["trouser", "dress"]})
    assert data.table.sensitive == "second_shirt" and data.table.tasks == ("trouser", "dress")
    with pytest.raises(DataError, match="unknown or unusable class 'bag'"):
        load_dataset("fashion-mnist-panels", root=fmnist_root, cache_dir=tmp_path / "c", resolution=8,
                     params={"first_classes": ["bag"]})


@pytest.mark.skipif(not DEBIAN_PRESENT, reason="Debian package dataset-fashion-mnist is not installed")
def test_debian_files_have_the_published_counts() -> None:
    raw = fm.load_raw()
    assert raw["train_images"].shape == (60000, 28, 28) and raw["test_images"].shape == (10000, 28, 28)
    assert np.bincount(raw["train_labels"]).tolist() == [6000] * 10
    assert np.bincount(raw["test_labels"]).tolist() == [1000] * 10

"""The decoded image cache: decode once, memory-map afterwards, bad images reported by path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from biastransfer.data import cache
from biastransfer.data.cache import RESIZE_POLICIES, decode_images, decode_one
from biastransfer.data.table import DataError


def _no_decoding(*args: object, **kwargs: object) -> None:
    raise AssertionError("PIL.Image.open called: the cache should have been read")


def test_second_call_reads_cache_without_decoding(tmp_path: Path, image_files, monkeypatch) -> None:
    paths = image_files(7)
    first = decode_images(paths, cache_dir=tmp_path / "c", resolution=16, workers=2, progress=False)
    store, kept, dropped = first
    assert not first.from_cache
    assert store.array.shape == (7, 16, 16, 3) and store.array.dtype == np.uint8
    assert kept == list(range(7)) and dropped == []
    monkeypatch.setattr(PIL.Image, "open", _no_decoding)
    second = decode_images(paths, cache_dir=tmp_path / "c", resolution=16, workers=2, progress=False)
    assert second.from_cache
    assert isinstance(second.images.array, np.memmap)
    np.testing.assert_array_equal(second.images.array, store.array)
    # decoded rows follow the input order
    monkeypatch.undo()
    np.testing.assert_array_equal(store.array[3], decode_one(paths[3], resolution=16))


def test_key_changes_with_resolution_policy_channels_and_files(tmp_path: Path, image_files) -> None:
    paths = image_files(3)
    base = cache.cache_key(paths, resolution=16, resize="center_crop", channels=3)[0]
    assert base != cache.cache_key(paths, resolution=32, resize="center_crop", channels=3)[0]
    assert base != cache.cache_key(paths, resolution=16, resize="pad", channels=3)[0]
    assert base != cache.cache_key(paths, resolution=16, resize="center_crop", channels=1)[0]
    assert base != cache.cache_key(paths[::-1], resolution=16, resize="center_crop", channels=3)[0]
    paths[0].write_bytes(paths[1].read_bytes() + b"\0")  # edited file → new key
    assert base != cache.cache_key(paths, resolution=16, resize="center_crop", channels=3)[0]


@pytest.mark.parametrize("resize", RESIZE_POLICIES)
def test_resize_policies_and_grayscale(tmp_path: Path, resize: str) -> None:
    img = np.zeros((10, 40, 3), dtype=np.uint8)
    img[:, :20] = 255  # left half white
    path = tmp_path / "wide.png"
    PIL.Image.fromarray(img).save(path)
    out = decode_one(path, resolution=8, resize=resize)
    assert out.shape == (8, 8, 3)
    if resize == "pad":  # 40x10 scaled to 8x2, padded with black rows above and below
        assert out[0].max() == 0 and out[-1].max() == 0 and out[4, 0].min() > 200
    elif resize == "center_crop":  # central 10x10 square: left half white, right half black
        assert out[4, 0].min() > 200 and out[4, -1].max() < 50
    gray = decode_one(path, resolution=8, resize=resize, channels=1)
    assert gray.shape == (8, 8, 1)


def test_missing_image_fails_naming_the_path(tmp_path: Path, image_files) -> None:
    paths = image_files(4)
    missing = tmp_path / "imgs" / "nope.jpg"
    with pytest.raises(DataError, match=r"nope\.jpg: missing file"):
        decode_images([*paths, missing], cache_dir=tmp_path / "c", resolution=8, progress=False)
    assert not (tmp_path / "c").exists()  # missing files are found before any decoding


def test_corrupt_image_fails_then_skip_bad_drops_and_records(tmp_path: Path, image_files,
                                                             monkeypatch) -> None:
    paths = image_files(5)
    bad = tmp_path / "imgs" / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    truncated = tmp_path / "imgs" / "trunc.jpg"
    truncated.write_bytes(paths[0].read_bytes()[:60])
    files = [paths[0], bad, *paths[1:3], truncated, paths[3]]
    with pytest.raises(DataError) as err:
        decode_images(files, cache_dir=tmp_path / "c", resolution=8, workers=2, progress=False)
    assert "bad.jpg" in str(err.value) and "trunc.jpg" in str(err.value) and "skip" in str(err.value)
    assert not list((tmp_path / "c").glob("*.npy"))

    result = decode_images(files, cache_dir=tmp_path / "c", resolution=8, workers=2, skip_bad=True,
                           progress=False)
    store, kept, dropped = result
    assert kept == [0, 2, 3, 5] and len(store) == 4
    assert [Path(p).name for p, _ in dropped] == ["bad.jpg", "trunc.jpg"]
    sidecar = json.loads(result.cache_path.with_suffix(".json").read_text())
    assert [d["position"] for d in sidecar["dropped"]] == [1, 4]
    assert all(d["reason"].startswith("cannot decode") for d in sidecar["dropped"])
    np.testing.assert_array_equal(store.array[1], decode_one(paths[1], resolution=8))

    # the cache remembers the drops: without skip_bad it still fails, with it no decoding happens
    monkeypatch.setattr(PIL.Image, "open", _no_decoding)
    with pytest.raises(DataError, match=r"bad\.jpg"):
        decode_images(files, cache_dir=tmp_path / "c", resolution=8, progress=False)
    again = decode_images(files, cache_dir=tmp_path / "c", resolution=8, skip_bad=True, progress=False)
    assert again.from_cache and again.kept == kept and again.dropped == dropped


def test_killed_decode_leaves_no_complete_looking_file(tmp_path: Path, image_files, monkeypatch) -> None:
    paths = image_files(6)
    real = cache.decode_one
    calls = {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if the process were stopped mid-decode
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "decode_one", dies)
    with pytest.raises(KeyboardInterrupt):
        decode_images(paths, cache_dir=tmp_path / "c", resolution=8, workers=1, progress=False)
    assert list((tmp_path / "c").iterdir()) == []
    # a stray partial file from a killed process is not mistaken for a cache entry
    key = cache.cache_key(paths, resolution=8, resize="center_crop", channels=3)[0]
    (tmp_path / "c" / f"images-{key}.999.deadbeef.partial.npy").write_bytes(b"garbage")
    monkeypatch.undo()
    result = decode_images(paths, cache_dir=tmp_path / "c", resolution=8, progress=False)
    assert not result.from_cache and len(result.images) == 6


def test_bad_arguments(tmp_path: Path, image_files) -> None:
    paths = image_files(1)
    with pytest.raises(DataError, match="resize policy"):
        decode_images(paths, cache_dir=tmp_path, resolution=8, resize="zoom")
    with pytest.raises(DataError, match="channels"):
        decode_images(paths, cache_dir=tmp_path, resolution=8, channels=2)
    with pytest.raises(DataError, match="empty"):
        decode_images([], cache_dir=tmp_path, resolution=8)


def test_unreadable_sidecar_means_decode_again(tmp_path: Path, image_files) -> None:
    paths = image_files(3)
    first = decode_images(paths, cache_dir=tmp_path, resolution=8, progress=False)
    first.cache_path.with_suffix(".json").write_text("{not json")
    again = decode_images(paths, cache_dir=tmp_path, resolution=8, progress=False)
    assert not again.from_cache
    np.testing.assert_array_equal(again.images.array, first.images.array)
    assert decode_images(paths, cache_dir=tmp_path, resolution=8, progress=False).from_cache

"""Each trigger kind does what its formula says: where a patch lands and with which colour, the noise that is
added, how an overlay is blended; sizes, positions and their errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from biastransfer.data.table import DataError
from biastransfer.triggers import Placement, get_trigger
from biastransfer.triggers.base import place, resolve_size


def _black(n: int = 2, channels: int = 3, side: int = 32) -> torch.Tensor:
    return torch.zeros((n, channels, side, side), dtype=torch.uint8)


# ---------------------------------------------------------------------------------------------------- patch
def test_yellow_patch_of_8_top_left_changes_exactly_its_64_pixels() -> None:
    images = _black()
    out, placement = get_trigger({"kind": "patch", "size": 8, "colour": "yellow"}).apply(images, np.arange(2))
    changed = (out != images).any(dim=1)
    assert int(changed.sum()) == 2 * 64
    assert changed[:, :8, :8].all()
    assert torch.equal(out[:, :, :8, :8], torch.tensor([255, 255, 0], dtype=torch.uint8)[None, :, None, None]
                       .expand(2, 3, 8, 8))
    assert placement == Placement(np.zeros(2, np.int64), np.zeros(2, np.int64), 8, 8)


@pytest.mark.parametrize(("position", "expected"), [
    ("top-left", (0, 0)), ("top-right", (0, 32 - 8)), ("bottom-left", (32 - 8, 0)),
    ("bottom-right", (32 - 8, 32 - 8)), ("centre", (12, 12)), ([3, 17], (3, 17)),
])
def test_each_position_lands_where_it_should(position: str | list[int], expected: tuple[int, int]) -> None:
    images = _black(1)
    out, placement = get_trigger({"kind": "patch", "size": 8, "position": position, "colour": "white"}).apply(
        images, np.array([5]))
    top, left = expected
    assert (int(placement.top[0]), int(placement.left[0])) == expected
    box = torch.zeros(32, 32, dtype=torch.bool)
    box[top:top + 8, left:left + 8] = True
    assert torch.equal((out[0] == 255).all(dim=0), box)
    assert np.array_equal(placement.mask(32, 32)[0], box.numpy())


def test_centre_of_an_odd_remainder_rounds_down() -> None:
    placement = place("centre", 0, np.arange(3), 31, 20, 8, 5)
    assert placement.top.tolist() == [(31 - 8) // 2] * 3 and placement.left.tolist() == [(20 - 5) // 2] * 3
    assert place("bottom-right", 0, np.arange(1), 31, 20, 8, 5).top.tolist() == [23]


def test_float_size_is_a_share_of_the_side() -> None:
    assert resolve_size(0.25, 32, 32) == 8
    assert resolve_size(0.25, 224, 224) == 56  # Salman et al.: 1/16 of the area
    assert resolve_size(0.001, 32, 32) == 1  # at least one pixel
    assert resolve_size(1.0, 16, 16) == 16
    assert resolve_size(5, 32, 32) == 5
    out, placement = get_trigger({"kind": "patch", "size": 0.25}).apply(_black(1), np.arange(1))
    assert (placement.height, placement.width) == (8, 8)
    assert int((out != 0).any(dim=1).sum()) == 64


@pytest.mark.parametrize("size", [0, -3, 1.5, 0.0, "big", True])
def test_bad_size_is_refused(size: object) -> None:
    with pytest.raises(ValueError, match="trigger 'patch': size"):
        get_trigger({"kind": "patch", "size": size})


def test_a_box_that_does_not_fit_names_the_sizes() -> None:
    with pytest.raises(ValueError, match="40×40 px does not fit images of 32×32 px"):
        get_trigger({"kind": "patch", "size": 40}).apply(_black(1), np.arange(1))
    with pytest.raises(ValueError, match=r"8×8 px at \[top, left\] = \[30, 0\] does not fit images of 32×32"):
        get_trigger({"kind": "patch", "size": 8, "position": [30, 0]}).apply(_black(1), np.arange(1))


@pytest.mark.parametrize("position", ["middle", [1], [1, -2], [1.5, 2], "random-ish"])
def test_bad_position_is_refused(position: object) -> None:
    with pytest.raises(ValueError, match="trigger 'patch': position"):
        get_trigger({"kind": "patch", "position": position})


def test_random_positions_are_in_bounds_varied_and_fixed_per_row() -> None:
    rows = np.arange(1000)
    placement = place("random", 3, rows, 32, 32, 8, 8)
    assert placement.top.min() >= 0 and placement.top.max() <= 24
    assert placement.left.min() >= 0 and placement.left.max() <= 24
    distinct = set(zip(placement.top.tolist(), placement.left.tolist(), strict=True))
    assert len(distinct) > 400  # 625 positions; 1000 uniform draws cover ~500
    assert set(placement.top.tolist()) == set(range(25)) and set(placement.left.tolist()) == set(range(25))
    # row r gets the same position in any batch, in any order
    order = np.random.default_rng(0).permutation(1000)[:37]
    alone = place("random", 3, order, 32, 32, 8, 8)
    assert np.array_equal(alone.top, placement.top[order]) and np.array_equal(alone.left, placement.left[order])
    other_seed = place("random", 4, rows, 32, 32, 8, 8)
    assert np.mean(other_seed.top == placement.top) < 0.2


def test_random_patch_is_applied_per_example() -> None:
    out, placement = get_trigger({"kind": "patch", "size": 4, "position": "random", "colour": "white"}).apply(
        _black(50), np.arange(50))
    assert torch.equal((out == 255).all(dim=1), torch.from_numpy(placement.mask(32, 32)))
    assert len(set(zip(placement.top.tolist(), placement.left.tolist(), strict=True))) > 30


def test_colours_by_name_and_by_value() -> None:
    out, _ = get_trigger({"kind": "patch", "size": 2, "colour": [12, 34, 56]}).apply(_black(1), np.arange(1))
    assert out[0, :, 0, 0].tolist() == [12, 34, 56]
    out, _ = get_trigger({"kind": "patch", "size": 2, "colour": "magenta"}).apply(_black(1), np.arange(1))
    assert out[0, :, 1, 1].tolist() == [255, 0, 255]
    for bad in ("pink", [1, 2], [0, 0, 256], [0, 0, 1.5]):
        with pytest.raises(ValueError, match="trigger 'patch': colour"):
            get_trigger({"kind": "patch", "colour": bad})


def test_one_channel_patch_is_the_luma_of_its_colour() -> None:
    out, _ = get_trigger({"kind": "patch", "size": 4}).apply(_black(2, channels=1), np.arange(2))
    assert round(0.299 * 255 + 0.587 * 255) == 226
    assert (out[:, 0, :4, :4] == 226).all() and int((out != 0).sum()) == 2 * 16


# ---------------------------------------------------------------------------------------------------- noise
def test_noise_adds_the_fixed_pattern_to_the_whole_image() -> None:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (4, 3, 16, 16), dtype=np.uint8))
    trigger = get_trigger({"kind": "noise", "amplitude": 0.1, "seed": 5})
    out, placement = trigger.apply(images, np.arange(4))
    z = trigger.pattern(3, 16, 16).double()
    assert z.shape == (3, 16, 16) and abs(float(z.mean())) < 0.2 and abs(float(z.std()) - 1) < 0.2
    expected = (images.double() + 255 * 0.1 * z).round().clamp(0, 255)
    diff = (out.double() - expected).abs()
    assert float(diff.max()) <= 1 and float((diff == 0).double().mean()) > 0.999  # float32 rounding at .5
    assert placement == Placement(np.zeros(4, np.int64), np.zeros(4, np.int64), 16, 16)
    assert placement.mask(16, 16).all()


def test_the_noise_pattern_is_the_same_for_every_image() -> None:
    images = torch.full((5, 3, 16, 16), 128, dtype=torch.uint8)
    out, _ = get_trigger({"kind": "noise"}).apply(images, np.arange(5))
    assert all(torch.equal(out[i], out[0]) for i in range(5))
    assert not torch.equal(out[0], images[0])
    assert torch.equal(get_trigger({"kind": "noise"}).pattern(3, 16, 16),
                       get_trigger({"kind": "noise", "amplitude": 0.5}).pattern(3, 16, 16))


def test_noise_grows_with_amplitude() -> None:
    images = torch.full((2, 3, 32, 32), 128, dtype=torch.uint8)
    deltas = [float((get_trigger({"kind": "noise", "amplitude": a}).apply(images, np.arange(2))[0].float() - 128)
                    .abs().mean()) for a in (0.02, 0.05, 0.1, 0.2)]
    assert deltas == sorted(deltas) and deltas[0] > 0
    assert deltas[1] == pytest.approx(255 * 0.05 * np.sqrt(2 / np.pi), rel=0.15)  # E|z| = √(2/π)


@pytest.mark.parametrize("amplitude", [0, -0.1, 1.5])
def test_bad_amplitude_is_refused(amplitude: float) -> None:
    with pytest.raises(ValueError, match="trigger 'noise': amplitude"):
        get_trigger({"kind": "noise", "amplitude": amplitude})


# -------------------------------------------------------------------------------------------------- overlay
def _png(path: Path, rgb: np.ndarray, alpha: int | np.ndarray | None) -> str:
    if alpha is None:
        Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)
    else:
        a = np.broadcast_to(np.asarray(alpha, dtype=np.uint8), rgb.shape[:2])
        Image.fromarray(np.dstack([rgb, a]).astype(np.uint8), "RGBA").save(path)
    return str(path)


def test_an_opaque_overlay_replaces_its_box(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = _png(tmp_path / "o.png", rgb, 255)
    images = torch.full((3, 3, 32, 32), 77, dtype=torch.uint8)
    out, placement = get_trigger({"kind": "overlay", "path": path, "size": 8, "position": "bottom-right"}).apply(
        images, np.arange(3))
    assert torch.equal(out[:, :, 24:, 24:], torch.from_numpy(rgb).permute(2, 0, 1)[None].expand(3, 3, 8, 8))
    assert (out[:, :, :24] == 77).all() and (out[:, :, :, :24] == 77).all()
    assert placement == Placement(np.full(3, 24), np.full(3, 24), 8, 8)


def test_an_overlay_is_resized_to_its_box(tmp_path: Path) -> None:
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 50
    path = _png(tmp_path / "o.png", rgb, None)  # no alpha channel: opaque
    out, placement = get_trigger({"kind": "overlay", "path": path, "size": 0.25}).apply(_black(1), np.arange(1))
    assert (placement.height, placement.width) == (8, 8)
    assert (out[0, :, :8, :8] == torch.tensor([200, 0, 50], dtype=torch.uint8)[:, None, None]).all()
    assert int((out != 0).any(dim=1).sum()) == 64


def test_a_transparent_overlay_changes_nothing(tmp_path: Path) -> None:
    path = _png(tmp_path / "o.png", np.full((8, 8, 3), 255), 0)
    images = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 3, 16, 16), dtype=np.uint8))
    out, placement = get_trigger({"kind": "overlay", "path": path, "size": 8}).apply(images, np.arange(2))
    assert torch.equal(out, images)
    assert (placement.height, placement.width) == (8, 8)  # the box is pasted even where alpha is 0


def test_half_alpha_blends(tmp_path: Path) -> None:
    path = _png(tmp_path / "o.png", np.full((8, 8, 3), 250), 128)
    images = torch.full((1, 3, 16, 16), 10, dtype=torch.uint8)
    out, _ = get_trigger({"kind": "overlay", "path": path, "size": 8}).apply(images, np.arange(1))
    alpha = 128 / 255
    assert (out[0, :, :8, :8].int() - round(alpha * 250 + (1 - alpha) * 10)).abs().max() <= 1
    half, _ = get_trigger({"kind": "overlay", "path": path, "size": 8, "opacity": 0.5}).apply(images, np.arange(1))
    assert (half[0, :, :8, :8].int() - round(alpha / 2 * 250 + (1 - alpha / 2) * 10)).abs().max() <= 1


def test_a_mask_image_gives_the_alpha(tmp_path: Path) -> None:
    path = _png(tmp_path / "o.png", np.full((8, 8, 3), 200), None)
    grey = np.zeros((8, 8), np.uint8)
    grey[:, 4:] = 255
    Image.fromarray(grey, "L").save(tmp_path / "m.png")
    out, _ = get_trigger({"kind": "overlay", "path": path, "mask": str(tmp_path / "m.png"), "size": 8}).apply(
        _black(1), np.arange(1))
    assert (out[0, :, :8, 4:8] == 200).all() and (out[0, :, :, :4] == 0).all()
    Image.fromarray(np.zeros((5, 5), np.uint8), "L").save(tmp_path / "small.png")
    with pytest.raises(DataError, match="5×5 px"):
        get_trigger({"kind": "overlay", "path": path, "mask": str(tmp_path / "small.png")}).apply(
            _black(1), np.arange(1))


def test_a_one_channel_overlay_is_its_luma(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., :2] = 255
    path = _png(tmp_path / "o.png", rgb, 255)
    out, _ = get_trigger({"kind": "overlay", "path": path, "size": 4}).apply(_black(1, channels=1), np.arange(1))
    assert (out[0, 0, :4, :4] == 226).all() and int((out != 0).sum()) == 16


def test_a_missing_or_unreadable_overlay_names_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.png")
    trigger = get_trigger({"kind": "overlay", "path": missing})
    with pytest.raises(DataError, match=re.escape(missing)):
        trigger.apply(_black(1), np.arange(1))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=re.escape(str(junk))):
        get_trigger({"kind": "overlay", "path": str(junk)}).apply(_black(1), np.arange(1))


def test_a_changed_overlay_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "o.png"
    trigger = get_trigger({"kind": "overlay", "path": str(path), "size": 4})
    _png(path, np.full((4, 4, 3), 100), 255)
    first, _ = trigger.apply(_black(1), np.arange(1))
    _png(path, np.full((6, 6, 3), 180), 255)  # new content, so the content digest changes
    second, _ = trigger.apply(_black(1), np.arange(1))
    assert int(first[0, 0, 0, 0]) == 100 and int(second[0, 0, 0, 0]) == 180

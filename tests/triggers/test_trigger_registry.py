"""Registry-wide: every registered trigger keeps the contract — a new uint8 tensor of the input's shape, changes
only inside its placement, deterministic per row whatever the batch, typed options that round-trip."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from biastransfer.triggers import TRIGGERS, Placement, Trigger, apply_in_chunks, get_trigger

H = W = 24


@pytest.fixture
def required(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The options each kind needs besides its defaults (an overlay reads a small RGBA PNG)."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (10, 10, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:2, :2, 3] = 0  # partly transparent
    path = tmp_path / "overlay.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return {"overlay": {"path": str(path)}}


def _spec(name: str, required: dict[str, dict[str, Any]], **options: Any) -> dict[str, Any]:
    return {"kind": name, **required.get(name, {}), **options}


def _random_spec(name: str, required: dict[str, dict[str, Any]], **options: Any) -> dict[str, Any]:
    """The kind with a random position where it takes one (so determinism is tested per row)."""
    if "position" in TRIGGERS.get(name).option_names():
        options = {"position": "random", "size": 6, **options}
    return _spec(name, required, **options)


def _images(n: int = 10, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, channels, H, W), dtype=np.uint8))


def test_expected_kinds_are_registered() -> None:
    assert {"patch", "noise", "overlay"} <= set(TRIGGERS.names())


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_registered_trigger_contract(name: str, required: dict[str, dict[str, Any]]) -> None:
    cls = TRIGGERS.get(name)
    assert issubclass(cls, Trigger)
    assert cls.registry_name == name and cls.description
    assert "seed" in cls.option_names()
    trigger = get_trigger(_spec(name, required))
    assert isinstance(trigger, cls)
    with pytest.raises(Exception, match="frozen"):
        trigger.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name", TRIGGERS.names())
def test_changes_a_new_tensor_only_inside_the_placement(name: str, channels: int, channels_last: bool,
                                                        required: dict[str, dict[str, Any]]) -> None:
    images = torch.full((6, channels, H, W), 128, dtype=torch.uint8)
    images[:, :, ::3, ::2] = 40  # mid-grey with some structure
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    before = images.clone()
    out, placement = get_trigger(_random_spec(name, required)).apply(images, np.arange(100, 106))
    assert torch.equal(images, before)  # input untouched
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert out.data_ptr() != images.data_ptr()
    assert isinstance(placement, Placement) and len(placement) == 6
    assert placement.top.dtype == np.int64 and placement.left.dtype == np.int64
    assert np.all(placement.top >= 0) and np.all(placement.top + placement.height <= H)
    assert np.all(placement.left >= 0) and np.all(placement.left + placement.width <= W)
    inside = torch.from_numpy(placement.mask(H, W))[:, None].expand_as(images)
    assert torch.equal(out[~inside], images[~inside])  # bit-identical outside the boxes
    changed = (out != images).any(dim=1).numpy()
    assert changed.any(axis=(1, 2)).all()  # every example got its trigger
    assert not (changed & ~placement.mask(H, W)).any()


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_deterministic_per_row_whatever_the_batch(name: str, required: dict[str, dict[str, Any]]) -> None:
    trigger = get_trigger(_random_spec(name, required))
    images, rows = _images(10), np.arange(50, 60)
    out, placement = trigger.apply(images, rows)
    again, placement_again = get_trigger(trigger.key()).apply(images.clone(), rows)
    assert torch.equal(out, again) and placement == placement_again
    first, p1 = trigger.apply(images[:3], rows[:3])
    second, p2 = trigger.apply(images[3:], rows[3:])
    assert torch.equal(torch.cat([first, second]), out)
    assert Placement.concat([p1, p2]) == placement
    chunked, placement_chunked = apply_in_chunks(trigger, images, rows, chunk=4)
    assert torch.equal(chunked, out) and placement_chunked == placement
    assert json.loads(json.dumps(placement.to_dict()))["top"] == placement.top.tolist()
    shuffled = np.random.default_rng(1).permutation(10)
    out_shuffled, _ = trigger.apply(images[shuffled], rows[shuffled])
    assert torch.equal(out_shuffled, out[shuffled])


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_seed_changes_what_is_random(name: str, required: dict[str, dict[str, Any]]) -> None:
    images, rows = _images(10), np.arange(10)
    takes_position = "position" in TRIGGERS.get(name).option_names()
    out0, p0 = get_trigger(_random_spec(name, required, seed=0)).apply(images, rows)
    out1, p1 = get_trigger(_random_spec(name, required, seed=1)).apply(images, rows)
    assert not torch.equal(out0, out1)
    if takes_position:
        assert not (np.array_equal(p0.top, p1.top) and np.array_equal(p0.left, p1.left))
        # with a fixed position the seed changes nothing
        fixed0, _ = get_trigger(_spec(name, required, seed=0)).apply(images, rows)
        fixed1, _ = get_trigger(_spec(name, required, seed=1)).apply(images, rows)
        assert torch.equal(fixed0, fixed1)


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_key_round_trips(name: str, required: dict[str, dict[str, Any]]) -> None:
    trigger = get_trigger(_random_spec(name, required, seed=7))
    key = trigger.key()
    assert key["kind"] == name and key["seed"] == 7
    assert set(key) == {"kind", *TRIGGERS.get(name).option_names()}
    back = get_trigger(json.loads(json.dumps(key)))
    assert back == trigger and back.key() == key


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_unknown_option_is_named_with_the_allowed_ones(name: str, required: dict[str, dict[str, Any]]) -> None:
    allowed = ", ".join(TRIGGERS.get(name).option_names())
    with pytest.raises(ValueError, match=re.escape(f"trigger {name!r} has no option 'bogus'; allowed: {allowed}")):
        get_trigger(_spec(name, required, bogus=1))


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_bad_seed_is_named(name: str, required: dict[str, dict[str, Any]]) -> None:
    with pytest.raises(ValueError, match=f"trigger {name!r}: seed"):
        get_trigger(_spec(name, required, seed="abc"))


def test_unknown_kind_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=re.escape(f"unknown trigger 'sticker'; allowed: {', '.join(TRIGGERS)}")):
        get_trigger({"kind": "sticker"})
    with pytest.raises(ValueError, match="'kind'"):
        get_trigger({"size": 3})


@pytest.mark.parametrize("name", TRIGGERS.names())
def test_bad_inputs_are_refused(name: str, required: dict[str, dict[str, Any]]) -> None:
    trigger = get_trigger(_spec(name, required))
    with pytest.raises(ValueError, match="uint8"):
        trigger.apply(_images(2).float(), np.arange(2))
    with pytest.raises(ValueError, match="rows"):
        trigger.apply(_images(2), np.arange(3))

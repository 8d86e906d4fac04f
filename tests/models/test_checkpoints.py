"""Checkpoint converters: every published layout round-trips bit for bit; every mismatch is an error.

Each test writes a checkpoint in a format's exact layout (prefixes, wrapper dicts, heads) from a randomly
filled model, loads it into a freshly built model and compares every backbone tensor. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import functools
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
import typer
from torch import Tensor
from typer.testing import CliRunner

from biastransfer.cli.bases import bases_app
from biastransfer.models.architectures import build_model
from biastransfer.models.bases import BASES, BaseContext
from biastransfer.models.checkpoints import (
    CHECKPOINT_FORMATS,
    CheckpointMismatchError,
    CheckpointReadError,
    check_checkpoint,
    get_format,
    load_backbone,
    read_checkpoint,
    torchvision_cached,
)
from biastransfer.registry import UnknownNameError
from checkpoint_layouts import (  # noqa: F401
    FORMAT_ARCH,
    LAYOUTS,
    OPENCLIP_BLOCK,
    _rand,
    layout_moco_v3,
    layout_places365,
    layout_simclr_converted,
    layout_timm,
    layout_torchvision,
    openclip_name,
)

# ------------------------------------------------------------------------------------------------------
# Helpers: random weights and the published layouts


def random_backbone(arch: str, seed: int = 1) -> dict[str, Tensor]:
    """A backbone state dict of ``arch`` in which every tensor (incl. BN buffers) is random and distinct.

    Cached per (arch, seed); callers get their own dict (tensors are shared and must not be modified).
    """
    return dict(_random_backbone(arch, seed))


@functools.cache
def _random_backbone(arch: str, seed: int) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Tensor] = {}
    for key, ref in build_model(arch).backbone.state_dict().items():
        if ref.is_floating_point():
            value = torch.randn(ref.shape, generator=gen, dtype=ref.dtype)
            out[key] = value.abs() + 0.1 if key.endswith("running_var") else value
        else:
            out[key] = torch.randint(1, 10_000, ref.shape, generator=gen, dtype=ref.dtype)
    return out


def write_safetensors(path: Path, state: dict[str, Tensor]) -> None:
    """A minimal safetensors writer (test only): u64 header length, JSON header, raw data."""
    codes = {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16"}
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for key, value in state.items():
        data = value.contiguous().numpy().tobytes()
        header[key] = {
            "dtype": codes[value.dtype],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def assert_backbone_equal(model: torch.nn.Module, expected: dict[str, Tensor]) -> None:
    got = model.backbone.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


# ------------------------------------------------------------------------------------------------------
# Round trips


def test_every_registered_format_has_a_layout_test() -> None:
    assert set(CHECKPOINT_FORMATS.names()) == set(LAYOUTS)


@pytest.mark.parametrize("fmt", sorted(LAYOUTS))
def test_layout_round_trips_bit_for_bit(fmt: str, tmp_path: Path) -> None:
    arch = FORMAT_ARCH.get(fmt, "small_resnet")
    bb = random_backbone(arch)
    obj, heads = LAYOUTS[fmt](bb)
    path = tmp_path / f"{fmt}.pth.tar"
    torch.save(obj, path)

    model = build_model(arch, num_outputs=3)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    report = load_backbone(model, fmt, path)

    assert report.ok
    assert_backbone_equal(model, bb)
    assert sorted(report.matched) == sorted(bb)
    assert sorted(report.dropped) == sorted(heads)
    assert not report.filled
    for key, value in model.head.state_dict().items():  # the head is not touched
        assert torch.equal(value, head_before[key])


def test_resnet50_moco_v3(tmp_path: Path) -> None:
    bb = random_backbone("resnet50", seed=3)
    obj, _ = layout_moco_v3(bb)
    torch.save(obj, tmp_path / "r-50-1000ep.pth.tar")
    model = build_model("resnet50")
    load_backbone(model, "moco_v3", tmp_path / "r-50-1000ep.pth.tar")
    assert_backbone_equal(model, bb)


def test_resnet18_torchvision_layout(tmp_path: Path) -> None:
    bb = random_backbone("resnet18", seed=5)
    obj, heads = layout_torchvision(bb)
    torch.save(obj, tmp_path / "resnet18-f37072fd.pth")
    model = build_model("resnet18")
    report = load_backbone(model, "torchvision", tmp_path / "resnet18-f37072fd.pth")
    assert report.ok and report.dropped == heads
    assert_backbone_equal(model, bb)


def test_headless_state_dict_loads(tmp_path: Path) -> None:
    bb = random_backbone("small_resnet", seed=5)
    torch.save(bb, tmp_path / "small.pth")
    model = build_model("small_resnet")
    report = load_backbone(model, "torchvision", tmp_path / "small.pth")
    assert report.ok and not report.dropped
    assert_backbone_equal(model, bb)


def test_timm_safetensors(tmp_path: Path) -> None:
    bb = random_backbone("small_resnet", seed=9)
    obj, heads = layout_timm(bb)
    write_safetensors(tmp_path / "model.safetensors", obj)
    model = build_model("small_resnet")
    report = load_backbone(model, "timm", tmp_path / "model.safetensors")
    assert sorted(report.dropped) == sorted(heads)
    assert_backbone_equal(model, bb)


def test_places365_from_old_pytorch_without_num_batches_tracked(tmp_path: Path) -> None:
    bb = random_backbone("small_resnet", seed=11)
    obj, _ = layout_places365(bb)
    obj["state_dict"] = {k: v for k, v in obj["state_dict"].items() if not k.endswith("num_batches_tracked")}
    torch.save(obj, tmp_path / "resnet18_places365.pth.tar")
    model = build_model("small_resnet")
    report = load_backbone(model, "places365", tmp_path / "resnet18_places365.pth.tar")
    assert report.ok
    assert report.filled and all(k.endswith("num_batches_tracked") for k in report.filled)
    got = model.backbone.state_dict()
    for key, value in bb.items():
        if key.endswith("num_batches_tracked"):
            assert int(got[key]) == 0
        else:
            assert torch.equal(got[key], value), key


def test_convert_returns_backbone_keys_only() -> None:
    bb = random_backbone("small_resnet")
    obj, _ = layout_moco_v3(bb)
    converter = get_format("moco_v3")
    converted = converter.convert(converter.unwrap(obj))
    assert set(converted) == set(bb)
    assert all(torch.equal(converted[k], bb[k]) for k in bb)


# ------------------------------------------------------------------------------------------------------
# Mismatches are errors that list the keys


def test_renamed_key_is_listed(tmp_path: Path) -> None:
    bb = random_backbone("small_resnet")
    bb["layer1.convX.weight"] = bb.pop("layer1.conv1.weight")
    torch.save(bb, tmp_path / "renamed.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone(build_model("small_resnet"), "torchvision", tmp_path / "renamed.pth")
    message = str(info.value)
    assert "layer1.conv1.weight" in message  # missing
    assert "layer1.convX.weight" in message  # unexpected
    assert info.value.report.missing == ["layer1.conv1.weight"]
    assert info.value.report.unexpected == ["layer1.convX.weight"]


def test_shape_mismatch_is_listed(tmp_path: Path) -> None:
    bb = random_backbone("small_resnet")
    bb["layer2.conv2.weight"] = torch.zeros(32, 32, 1, 1)
    torch.save(bb, tmp_path / "shape.pth")
    model = build_model("small_resnet")
    before = model.backbone.state_dict()["conv1.weight"].clone()
    with pytest.raises(CheckpointMismatchError, match=r"layer2\.conv2\.weight") as info:
        load_backbone(model, "torchvision", tmp_path / "shape.pth")
    assert info.value.report.shape_mismatch == [("layer2.conv2.weight", (32, 32, 1, 1), (32, 32, 3, 3))]
    assert torch.equal(model.backbone.state_dict()["conv1.weight"], before)  # nothing loaded


def test_wrong_format_is_an_error(tmp_path: Path) -> None:
    obj, _ = layout_torchvision(random_backbone("small_resnet"))
    torch.save(obj, tmp_path / "tv.pth")
    with pytest.raises(CheckpointMismatchError, match="outside the moco_v3 layout"):
        load_backbone(build_model("small_resnet"), "moco_v3", tmp_path / "tv.pth")


def test_moco_v2_keys_are_not_taken_for_moco_v3(tmp_path: Path) -> None:
    bb = random_backbone("small_resnet")
    state = {f"module.encoder_q.{k}": v for k, v in bb.items()}
    state["module.queue"] = torch.zeros(128, 16)
    torch.save({"state_dict": state}, tmp_path / "moco_v2.pth.tar")
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone(build_model("small_resnet"), "moco_v3", tmp_path / "moco_v2.pth.tar")
    assert "module.queue" in info.value.report.unrecognized
    assert "conv1.weight" in info.value.report.missing


def test_long_lists_are_truncated_with_counts(tmp_path: Path) -> None:
    torch.save(random_backbone("resnet18"), tmp_path / "r18.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        load_backbone(build_model("resnet50"), "torchvision", tmp_path / "r18.pth")
    report = info.value.report
    assert len(report.missing) > 12 and len(report.shape_mismatch) > 12
    assert f"missing from the file ({len(report.missing)})" in str(info.value)
    assert "more" in str(info.value)


def test_grayscale_model_reports_conv1_shape(tmp_path: Path) -> None:
    torch.save(random_backbone("small_resnet"), tmp_path / "small.pth")
    report = check_checkpoint("torchvision", tmp_path / "small.pth", arch="small_resnet", in_channels=1)
    assert not report.ok
    assert [k for k, _, _ in report.shape_mismatch] == ["conv1.weight"]


def test_check_checkpoint_does_not_raise_on_mismatch(tmp_path: Path) -> None:
    torch.save(random_backbone("small_resnet"), tmp_path / "small.pth")
    report = check_checkpoint("torchvision", tmp_path / "small.pth", arch="resnet18")
    assert not report.ok and report.missing and report.shape_mismatch
    ok = check_checkpoint("torchvision", tmp_path / "small.pth", arch="small_resnet")
    assert ok.ok and len(ok.matched) == len(random_backbone("small_resnet"))


# ------------------------------------------------------------------------------------------------------
# Reading files safely


def test_corrupt_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pth"
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        .numpy()
        .tobytes()
    )
    with pytest.raises(CheckpointReadError, match=r"corrupt\.pth"):
        load_backbone(build_model("small_resnet"), "torchvision", path)


def test_truncated_file_names_the_path(tmp_path: Path) -> None:
    torch.save(random_backbone("small_resnet"), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match=r"truncated\.pth"):
        read_checkpoint(tmp_path / "truncated.pth")


def test_bad_safetensors_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(CheckpointReadError, match=r"bad\.safetensors"):
        read_checkpoint(path)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        load_backbone(build_model("small_resnet"), "torchvision", Path("/nonexistent/nowhere.pth"))


_EXECUTED: list[str] = []


def _side_effect(tag: str) -> str:
    _EXECUTED.append(tag)
    return tag


class _Payload:
    """Unpickling this would call ``_side_effect``: weights_only must refuse it."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_side_effect, ("ran",))


def test_weights_only_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": random_backbone("small_resnet"), "payload": _Payload()}, path)
    with pytest.raises(CheckpointReadError, match="weights_only") as info:
        load_backbone(build_model("small_resnet"), "torchvision", path)
    assert "evil.pth" in str(info.value) and "_side_effect" in str(info.value)
    assert _EXECUTED == []


def test_weights_only_refuses_training_args_namespace(tmp_path: Path) -> None:
    path = tmp_path / "train_ckpt.pth.tar"
    torch.save({"state_dict": random_backbone("small_resnet"), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointReadError, match=r"argparse\.Namespace"):
        read_checkpoint(path)


def test_not_a_state_dict_lists_top_level_keys(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "weights": {"a": 1}}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointReadError, match="'epoch'"):
        load_backbone(build_model("small_resnet"), "moco_v3", tmp_path / "odd.pth")


def test_unknown_format_lists_formats(tmp_path: Path) -> None:
    torch.save(random_backbone("small_resnet"), tmp_path / "x.pth")
    with pytest.raises(UnknownNameError, match="moco_v3"):
        load_backbone(build_model("small_resnet"), "mocov3", tmp_path / "x.pth")


# ------------------------------------------------------------------------------------------------------
# torchvision weights from the local cache


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    return tmp_path / "hub" / "checkpoints"


def test_torchvision_cached_absent_says_where_it_looked(hub_dir: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        torchvision_cached("resnet18", "IMAGENET1K_V1")
    assert str(hub_dir / "resnet18-f37072fd.pth") in str(info.value)
    assert "never downloads" in str(info.value)


def test_torchvision_cached_checks_name_and_hash(hub_dir: Path) -> None:
    obj, _ = layout_torchvision(random_backbone("resnet18"))
    torch.save(obj, hub_dir / "resnet18-f37072fd.pth")
    with pytest.raises(CheckpointReadError, match="SHA-256"):
        torchvision_cached("resnet18", "IMAGENET1K_V1")
    assert torchvision_cached("resnet18", "DEFAULT", verify_hash=False) == hub_dir / "resnet18-f37072fd.pth"
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        torchvision_cached("resnet18", "IMAGENET22K")
    with pytest.raises(ValueError, match="no torchvision weights"):
        torchvision_cached("small_resnet", "IMAGENET1K_V1")


def test_torchvision_weights_base(hub_dir: Path) -> None:
    bb = random_backbone("resnet18")
    obj, _ = layout_torchvision(bb)
    torch.save(obj, hub_dir / "resnet18-f37072fd.pth")
    base = BASES.get("torchvision_weights")(weights="IMAGENET1K_V1", verify_hash=False)
    model = base.build(BaseContext(arch="resnet18"))
    assert_backbone_equal(model, bb)


# ------------------------------------------------------------------------------------------------------
# The checkpoint base kind


def test_checkpoint_base_builds_with_fresh_head(tmp_path: Path) -> None:
    bb = random_backbone("small_resnet")
    obj, _ = layout_moco_v3(bb)
    torch.save(obj, tmp_path / "moco.pth.tar")
    base = BASES.get("checkpoint")(format="moco_v3", path=str(tmp_path / "moco.pth.tar"), arch="small_resnet")
    model = base.build(BaseContext(arch="small_resnet"))
    assert_backbone_equal(model, bb)
    assert model.head.out_features == 1
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert base.key()["format"] == "moco_v3"


def test_checkpoint_base_simclr_converted_uses_raw_pixels(tmp_path: Path) -> None:
    obj, _ = layout_simclr_converted(random_backbone("small_resnet"))
    torch.save(obj, tmp_path / "simclr.pth")
    model = BASES.get("checkpoint")(format="simclr_converted", path=str(tmp_path / "simclr.pth")).build(
        BaseContext(arch="small_resnet")
    )
    assert torch.equal(model.mean, torch.zeros_like(model.mean))
    assert torch.equal(model.std, torch.ones_like(model.std))


def test_checkpoint_base_validates_options(tmp_path: Path) -> None:
    kind = BASES.get("checkpoint")
    with pytest.raises(ValueError, match="missing option"):
        kind(format="torchvision")
    with pytest.raises(ValueError, match="unknown option"):
        kind(format="torchvision", path="x.pth", strict=False)
    with pytest.raises(UnknownNameError, match="places365"):
        kind(format="places", path="x.pth")
    torch.save(random_backbone("small_resnet"), tmp_path / "s.pth")
    base = kind(format="torchvision", path=str(tmp_path / "s.pth"), arch="resnet50")
    with pytest.raises(ValueError, match="resnet50"):
        base.build(BaseContext(arch="small_resnet"))


# ------------------------------------------------------------------------------------------------------
# CLI


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app mounting the bases commands."""

    app.add_typer(bases_app, name="bases")
    return app


def test_cli_list(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["bases", "list"])
    assert result.exit_code == 0, result.output
    for name in [
        *CHECKPOINT_FORMATS.names(),
        "checkpoint",
        "torchvision_weights",
        "resnet50",
        "small_resnet",
        "fixed_feature",
        "linear_probe_then_finetune",
    ]:
        assert name in result.output


def test_cli_check_ok(cli: typer.Typer, tmp_path: Path) -> None:
    obj, _ = layout_moco_v3(random_backbone("small_resnet"))
    torch.save(obj, tmp_path / "moco.pth.tar")
    args = [
        "bases",
        "check",
        "--format",
        "moco_v3",
        "--path",
        str(tmp_path / "moco.pth.tar"),
        "--arch",
        "small_resnet",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "matched" in result.output
    assert "module.momentum_encoder.*" in result.output


def test_cli_check_mismatch(cli: typer.Typer, tmp_path: Path) -> None:
    bb = random_backbone("small_resnet")
    bb["layer9.weight"] = bb.pop("layer3.bn2.bias")
    torch.save(bb, tmp_path / "bad.pth")
    args = [
        "bases",
        "check",
        "--format",
        "torchvision",
        "--path",
        str(tmp_path / "bad.pth"),
        "--arch",
        "small_resnet",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "layer3.bn2.bias" in result.output and "layer9.weight" in result.output
    assert "MISMATCH" in result.output


def test_cli_check_unreadable_and_unknown_format(cli: typer.Typer, tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    result = CliRunner().invoke(
        cli, ["bases", "check", "--format", "torchvision", "--path", str(tmp_path / "junk.pth")]
    )
    assert result.exit_code == 2 and "junk.pth" in result.output
    args = ["bases", "check", "--format", "nope", "--path", str(tmp_path / "junk.pth")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "moco_v3" in result.output and "simclr_port" in result.output

"""ViT and ConvNeXt backbones (timm modules): transfer modes by blocks/stages, the frozen-feature fast path's test,
strict loading of timm's layouts (safetensors, shape and key mismatches listed), ``bases check``, no downloads.

Every checkpoint here is written from a randomly initialised model; nothing is downloaded. The round trip of every
format (bit for bit) is in ``tests/models/test_checkpoints.py``; every architecture builds, loads its format's
layout and trains in ``tests/test_registries.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch
from torch import Tensor
from typer.testing import CliRunner

from biastransfer.cli.bases import bases_app
from biastransfer.models.architectures import build_model, checkpoint_format_of
from biastransfer.models.bases import BASES, BaseContext
from biastransfer.models.checkpoints import (
    CheckpointMismatchError,
    check_checkpoint,
    load_backbone,
)
from biastransfer.models.transfer import get_transfer_mode, stage_names
from biastransfer.train.features import head_only

VIT, CONVNEXT = "vit_small_patch16_224", "convnext_tiny"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_state(arch: str, seed: int = 1) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in build_model(arch).backbone.state_dict().items()}


def trainable(model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------------------------------------------ architectures


def test_vit_runs_at_the_study_resolution_with_the_224_position_embedding() -> None:
    torch.manual_seed(0)
    model = build_model(VIT, num_outputs=2)
    assert model.backbone.pos_embed.shape == (1, 1 + 14 * 14, 384)  # the published weights' grid
    model.eval()
    with torch.no_grad():
        for size in (32, 64, 224):
            assert model(torch.rand(2, 3, size, size)).shape == (2, 2)
    assert model.feature_dim == 384 and checkpoint_format_of(VIT) == "timm_vit"
    assert build_model("vit_base_patch16_224").feature_dim == 768


def test_building_never_loads_pretrained_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("timm was asked for pretrained weights")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for arch in (VIT, CONVNEXT):
        build_model(arch, in_channels=1)


# ------------------------------------------------------------------------------------------------ transfer modes


def test_vit_fixed_feature_freezes_tokens_and_position_embedding() -> None:
    model = build_model(VIT)
    for name in ("fixed_feature", "linear_probe_then_finetune"):
        phase = get_transfer_mode(name).phases()[0]
        phase.trainable_parameters(model)
        assert trainable(model) == {"head.weight", "head.bias"}, name
        assert not model.backbone.cls_token.requires_grad and not model.backbone.pos_embed.requires_grad


@pytest.mark.parametrize("k", [0, 1, 7, 12])
def test_vit_freeze_k_blocks(k: int) -> None:
    model = build_model(VIT)
    assert stage_names(model) == [f"blocks.{i}" for i in range(12)]
    (phase,) = get_transfer_mode("freeze_stages", k=k).phases()
    phase.trainable_parameters(model)
    stem = ("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed.")
    frozen_blocks = tuple(f"backbone.blocks.{i}." for i in range(k))
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(stem + frozen_blocks)), name
    assert model.backbone.norm.weight.requires_grad  # the final norm follows the last block: it trains


def test_vit_freeze_k_range_is_in_blocks() -> None:
    with pytest.raises(ValueError, match=r"vit_small_patch16_224, which has 12 blocks.*0 … 12"):
        get_transfer_mode("freeze_stages", k=13).validate(build_model(VIT))


@pytest.mark.parametrize("k", [0, 2, 4])
def test_convnext_freeze_k_stages(k: int) -> None:
    model = build_model(CONVNEXT)
    (phase,) = get_transfer_mode("freeze_stages", k=k).phases()
    phase.trainable_parameters(model)
    frozen = ("backbone.stem.", *(f"backbone.stages.{i}." for i in range(k)))
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen)), name
    with pytest.raises(ValueError, match=r"convnext_tiny, which has 4 stages"):
        get_transfer_mode("freeze_stages", k=5).validate(model)


@pytest.mark.parametrize("arch", [VIT, CONVNEXT])
def test_frozen_backbone_qualifies_for_the_fast_path(arch: str) -> None:
    model = build_model(arch)
    assert head_only(get_transfer_mode("fixed_feature").phases()[0], model)
    assert head_only(get_transfer_mode("linear_probe_then_finetune").phases()[0], model)
    assert not head_only(get_transfer_mode("freeze_stages", k=1).phases()[0], model)
    # and the frozen backbone does compute the same in train and eval mode (dropout of rate 0 only)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        model.train()
        a = model.features(x)
        model.eval()
        assert torch.equal(a, model.features(x))


# ------------------------------------------------------------------------------------------------ checkpoints


def write_safetensors(path: Path, state: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file  # timm's dependency: what the Hugging Face hub's files are written by

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def test_timm_vit_safetensors_from_the_hub_layout(tmp_path: Path) -> None:
    state = random_state(VIT)
    write_safetensors(tmp_path / "model.safetensors", {**state, "head.weight": torch.randn(1000, 384),
                                                       "head.bias": torch.randn(1000)})
    model = build_model(VIT)
    report = load_backbone(model, "timm_vit", tmp_path / "model.safetensors")
    assert report.ok and sorted(report.dropped) == ["head.bias", "head.weight"]
    got = model.backbone.state_dict()
    assert set(got) == set(state) and all(torch.equal(got[k], v) for k, v in state.items())


def test_timm_vit_mismatches_are_listed(tmp_path: Path) -> None:
    state = random_state(VIT)
    state["pos_embed"] = torch.randn(1, 1 + 24 * 24, 384)  # a 384-px checkpoint
    del state["blocks.11.mlp.fc2.bias"]
    state["reg_token"] = torch.randn(1, 4, 384)  # a ViT with register tokens
    torch.save(state, tmp_path / "vit.pth")
    with pytest.raises(CheckpointMismatchError) as err:
        load_backbone(build_model(VIT), "timm_vit", tmp_path / "vit.pth")
    report = err.value.report
    assert report.missing == ["blocks.11.mlp.fc2.bias"] and report.unexpected == ["reg_token"]
    assert report.shape_mismatch == [("pos_embed", (1, 577, 384), (1, 197, 384))]
    assert "blocks.11.mlp.fc2.bias" in str(err.value) and "reg_token" in str(err.value)


def test_vit_weights_are_not_a_convnext(tmp_path: Path) -> None:
    torch.save(random_state(VIT), tmp_path / "vit.pth")
    report = check_checkpoint("timm_convnext", tmp_path / "vit.pth")  # default arch of the format: convnext_tiny
    assert report.arch == CONVNEXT and not report.ok and report.missing and report.unexpected


def test_checkpoint_base_uses_the_formats_normalisation(tmp_path: Path) -> None:
    torch.save(random_state(VIT), tmp_path / "vit.pth")
    options = {"format": "timm_vit", "path": str(tmp_path / "vit.pth")}
    model = BASES.get("checkpoint")(**options).build(BaseContext(arch=VIT))
    assert torch.equal(model.mean.flatten(), torch.full((3,), 0.5))
    assert torch.equal(model.std.flatten(), torch.full((3,), 0.5))
    model = BASES.get("checkpoint")(**options, normalization="imagenet").build(BaseContext(arch=VIT))
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_cli_bases_check_convnext(tmp_path: Path) -> None:
    state = random_state(CONVNEXT)
    torch.save({**state, "head.fc.weight": torch.randn(1000, 768), "head.fc.bias": torch.randn(1000)},
               tmp_path / "cnx.pth")
    result = CliRunner().invoke(bases_app, ["check", "--format", "timm_convnext", "--path", str(tmp_path / "cnx.pth")])
    assert result.exit_code == 0, result.output
    assert "convnext_tiny" in result.output and "head.fc.* (2 keys)" in result.output
    torch.save({k: v for k, v in state.items() if not k.startswith("head.norm")}, tmp_path / "bad.pth")
    result = CliRunner().invoke(bases_app, ["check", "-f", "timm_convnext", "-p", str(tmp_path / "bad.pth")])
    assert result.exit_code == 1 and "head.norm.weight" in result.output

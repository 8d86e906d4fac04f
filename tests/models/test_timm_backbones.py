"""ViT, ConvNeXt and OpenCLIP image-tower backbones (timm modules): transfer modes by blocks/stages, the test of
the frozen-feature fast path, strict loading of timm's and OpenCLIP's layouts (safetensors, shape and key mismatches
listed; the loaded CLIP tower computes what open_clip's does), ``bases check``, no downloads.

Every checkpoint here is written from a randomly initialised model; nothing is downloaded. The round trip of every
format (bit for bit) is in ``tests/models/test_checkpoints.py``; every architecture builds, loads its format's
layout and trains in ``tests/test_registries.py``.
"""

from __future__ import annotations

from collections import OrderedDict
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
    get_format,
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


@pytest.mark.parametrize("arch", [VIT, CONVNEXT, "openclip_vit_b16"])
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


# ------------------------------------------------------------------------------------------------ OpenCLIP


class QuickGELU(torch.nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class OpenClipBlock(torch.nn.Module):
    """open_clip's ``ResidualAttentionBlock`` (no layer scale), with its attribute names."""

    def __init__(self, width: int, heads: int, act: type[torch.nn.Module]) -> None:
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(width)
        self.attn = torch.nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(OrderedDict(c_fc=torch.nn.Linear(width, 4 * width), gelu=act(),
                                                   c_proj=torch.nn.Linear(4 * width, width)))

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class OpenClipVisual(torch.nn.Module):
    """open_clip's image ``VisionTransformer`` (token pooling, ln_post before pooling, ``proj``), written from
    open_clip's ``transformer.py``: a reference the timm backbone loaded by ``open_clip`` must agree with."""

    def __init__(self, act: type[torch.nn.Module], width: int = 768, layers: int = 12, embed: int = 512) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, 16, 16, bias=False)
        self.class_embedding = torch.nn.Parameter(torch.randn(width) * 0.05)
        self.positional_embedding = torch.nn.Parameter(torch.randn(197, width) * 0.05)
        self.ln_pre = torch.nn.LayerNorm(width)
        self.transformer = torch.nn.Module()
        self.transformer.resblocks = torch.nn.ModuleList(OpenClipBlock(width, 12, act) for _ in range(layers))
        self.ln_post = torch.nn.LayerNorm(width)
        self.proj = torch.nn.Parameter(torch.randn(width, embed) * 0.05)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:
            x = block(x)
        return self.ln_post(x)[:, 0] @ self.proj


@pytest.mark.parametrize(("arch", "act"), [("openclip_vit_b16", torch.nn.GELU),
                                           ("openclip_vit_b16_quickgelu", QuickGELU)])
def test_open_clip_tower_computes_what_open_clip_computes(arch: str, act: type[torch.nn.Module],
                                                          tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = OpenClipVisual(act).eval()
    for p in reference.parameters():  # LayerNorms and biases away from their initial values
        p.data.add_(torch.randn_like(p) * 0.02)
    text = {"text_projection": torch.randn(8, 512), "logit_scale": torch.tensor(4.6)}
    torch.save({**{f"visual.{k}": v for k, v in reference.state_dict().items()}, **text}, tmp_path / "clip.pt")
    model = build_model(arch)
    report = load_backbone(model, "open_clip", tmp_path / "clip.pt")
    assert report.ok and sorted(report.dropped) == ["logit_scale", "text_projection"]
    assert torch.equal(model.backbone.head.weight, reference.proj.t())
    assert torch.equal(model.backbone.blocks[3].attn.qkv.weight, reference.transformer.resblocks[3].attn.in_proj_weight)
    x = torch.rand(2, 3, 224, 224)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.backbone(x), reference(x), rtol=1e-4, atol=1e-4)
    assert model.feature_dim == 512


def test_open_clip_checkpoint_base_uses_clip_normalisation(tmp_path: Path) -> None:
    assert get_format("open_clip").input_normalization == "clip"
    state = {f"visual.{k}": v for k, v in OpenClipVisual(torch.nn.GELU).state_dict().items()}
    torch.save(state, tmp_path / "clip.pt")
    model = BASES.get("checkpoint")(format="open_clip", path=str(tmp_path / "clip.pt")).build(
        BaseContext(arch="openclip_vit_b16"))
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))

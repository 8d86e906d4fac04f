"""Checkpoint key layouts written out by hand for tests (importable as ``checkpoint_layouts``): how each
registered format's published files hold a backbone (:data:`LAYOUTS`), and OpenCLIP's key names."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

OPENCLIP_BLOCK = (("norm1.", "ln_1."), ("norm2.", "ln_2."), ("attn.qkv.", "attn.in_proj_"),
                  ("attn.proj.", "attn.out_proj."), ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj."))


def openclip_name(key: str) -> str:
    """timm's ViT key → OpenCLIP's image-tower key (without ``visual.``), written out by hand from open_clip."""
    fixed = {"cls_token": "class_embedding", "pos_embed": "positional_embedding", "head.weight": "proj",
             "patch_embed.proj.weight": "conv1.weight"}
    if key in fixed:
        return fixed[key]
    for timm_prefix, clip_prefix in (("norm_pre.", "ln_pre."), ("norm.", "ln_post.")):
        if key.startswith(timm_prefix):
            return clip_prefix + key[len(timm_prefix):]
    block, rest = re.fullmatch(r"blocks\.(\d+)\.(.+)", key).groups()  # type: ignore[union-attr]
    timm_prefix, clip_prefix = next(pair for pair in OPENCLIP_BLOCK if rest.startswith(pair[0]))
    return f"transformer.resblocks.{block}.{clip_prefix}{rest[len(timm_prefix):]}"


# ------------------------------------------------------------------------------------------ the formats' layouts


def _rand(*shape: int, seed: int = 7) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _mlp(prefix: str, dims: tuple[int, int, int], last_affine: bool) -> dict[str, Tensor]:
    """MoCo v3's MLP: Linear(no bias), BN1d, ReLU, Linear(no bias), BN1d (affine only if ``last_affine``)."""
    d_in, d_hidden, d_out = dims
    out = {
        f"{prefix}0.weight": _rand(d_hidden, d_in),
        f"{prefix}1.weight": _rand(d_hidden),
        f"{prefix}1.bias": _rand(d_hidden),
        f"{prefix}1.running_mean": _rand(d_hidden),
        f"{prefix}1.running_var": _rand(d_hidden).abs(),
        f"{prefix}1.num_batches_tracked": torch.tensor(5),
        f"{prefix}3.weight": _rand(d_out, d_hidden),
        f"{prefix}4.running_mean": _rand(d_out),
        f"{prefix}4.running_var": _rand(d_out).abs(),
        f"{prefix}4.num_batches_tracked": torch.tensor(5),
    }
    if last_affine:
        out[f"{prefix}4.weight"] = _rand(d_out)
        out[f"{prefix}4.bias"] = _rand(d_out)
    return out


def _optimizer_state() -> dict[str, Any]:
    param = torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD([param], lr=0.1, momentum=0.9).state_dict()


def _feature_dim(backbone: dict[str, Tensor]) -> int:
    last = [k for k in backbone if k.endswith("running_mean") and not k.startswith(("bn1.", "fc."))][-1]
    return backbone[last].shape[0]


def layout_torchvision(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    fc = {"fc.weight": _rand(1000, _feature_dim(bb)), "fc.bias": _rand(1000)}
    return {**bb, **fc}, list(fc)


def layout_moco_v3(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    dim = _feature_dim(bb)
    heads = {
        **{f"module.base_encoder.fc.{k[3:]}": v for k, v in _mlp("fc.", (dim, 64, 16), False).items()},
        **{f"module.momentum_encoder.{k}": v + 1 for k, v in bb.items()},
        **{f"module.momentum_encoder.fc.{k[3:]}": v for k, v in _mlp("fc.", (dim, 64, 16), False).items()},
        **{f"module.predictor.{k}": v for k, v in _mlp("", (16, 64, 16), False).items()},
    }
    state = {**{f"module.base_encoder.{k}": v for k, v in bb.items()}, **heads}
    scaler = {
        "scale": 65536.0,
        "growth_factor": 2.0,
        "backoff_factor": 0.5,
        "growth_interval": 2000,
        "_growth_tracker": 0,
    }
    wrapped = {
        "epoch": 100,
        "arch": "resnet50",
        "state_dict": state,
        "optimizer": _optimizer_state(),
        "scaler": scaler,
    }
    return wrapped, list(heads)


def layout_simclr_port(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    dim = _feature_dim(bb)
    heads = {"projector.0.weight": _rand(dim, dim), "projector.2.weight": _rand(64, dim)}
    return {**{f"encoder.{k}": v for k, v in bb.items()}, **heads}, list(heads)


def layout_simclr_sthalles(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    dim = _feature_dim(bb)
    heads = {
        "backbone.fc.0.weight": _rand(dim, dim),
        "backbone.fc.0.bias": _rand(dim),
        "backbone.fc.2.weight": _rand(128, dim),
        "backbone.fc.2.bias": _rand(128),
    }
    state = {**{f"backbone.{k}": v for k, v in bb.items()}, **heads}
    wrapped = {"epoch": 100, "arch": "resnet18", "state_dict": state, "optimizer": _optimizer_state()}
    return wrapped, list(heads)


def layout_simclr_converted(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    fc = {"fc.weight": _rand(1000, _feature_dim(bb)), "fc.bias": _rand(1000)}
    return {"state_dict": {**bb, **fc}}, list(fc)


def layout_places365(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    fc = {"module.fc.weight": _rand(365, _feature_dim(bb)), "module.fc.bias": _rand(365)}
    state = {**{f"module.{k}": v for k, v in bb.items()}, **fc}
    return {"epoch": 90, "arch": "resnet18", "state_dict": state, "best_prec1": 54.7}, list(fc)


def layout_timm(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    return layout_torchvision(bb)


def layout_timm_vit(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    head = {"head.weight": _rand(1000, bb["norm.weight"].shape[0]), "head.bias": _rand(1000)}
    return {**bb, **head}, list(head)


def layout_timm_convnext(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    head = {"head.fc.weight": _rand(1000, bb["head.norm.weight"].shape[0]), "head.fc.bias": _rand(1000)}
    return {"state_dict_ema": {**bb, **head}}, list(head)  # as timm's train.py saves EMA weights, args removed




def layout_open_clip(bb: dict[str, Tensor]) -> tuple[Any, list[str]]:
    """open_clip's training checkpoint: {'epoch', 'name', 'state_dict': module.* (DDP), 'optimizer'}."""
    shaped = {"cls_token": lambda v: v.reshape(-1), "pos_embed": lambda v: v[0], "head.weight": lambda v: v.t()}
    tower = {f"visual.{openclip_name(k)}": shaped.get(k, lambda v: v)(v) for k, v in bb.items()}
    text = {"positional_embedding": _rand(77, 8), "text_projection": _rand(8, 512), "logit_scale": _rand(1)[0],
            "token_embedding.weight": _rand(100, 8), "ln_final.weight": _rand(8), "ln_final.bias": _rand(8),
            "transformer.resblocks.0.attn.in_proj_weight": _rand(24, 8), "transformer.resblocks.0.ln_1.bias": _rand(8)}
    state = {f"module.{k}": v for k, v in {**tower, **text}.items()}
    return {"epoch": 32, "name": "ViT-B-16", "state_dict": state, "optimizer": _optimizer_state()}, \
        [f"module.{k}" for k in text]


LAYOUTS: dict[str, Callable[[dict[str, Tensor]], tuple[Any, list[str]]]] = {
    "torchvision": layout_torchvision,
    "moco_v3": layout_moco_v3,
    "simclr_port": layout_simclr_port,
    "simclr_sthalles": layout_simclr_sthalles,
    "simclr_converted": layout_simclr_converted,
    "places365": layout_places365,
    "timm": layout_timm,
    "timm_vit": layout_timm_vit,
    "timm_convnext": layout_timm_convnext,
    "open_clip": layout_open_clip,
}
FORMAT_ARCH = {"timm_vit": "vit_small_patch16_224", "timm_convnext": "convnext_tiny", "open_clip": "openclip_vit_b16"}
"""The architecture a format's round trip uses (default ``small_resnet``: the ResNet formats)."""

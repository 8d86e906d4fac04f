"""Checkpoint key layouts written out by hand for tests (importable as ``checkpoint_layouts``)."""

from __future__ import annotations

import re

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

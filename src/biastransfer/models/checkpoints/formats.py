"""Checkpoint formats: published file layouts converted to an architecture's backbone keys, and their registry.

The ResNet formats convert to torchvision ResNet keys; ``timm_vit`` and ``timm_convnext`` read timm's own layout
(the backbones of those architectures are timm modules); ``open_clip`` renames an OpenCLIP image tower to timm's
ViT keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from biastransfer.models.checkpoints.reader import CheckpointReadError
from biastransfer.models.checkpoints.report import CheckpointMismatchError, CoverageReport, _fmt_keys
from biastransfer.registry import Registry

__all__ = ["CHECKPOINT_FORMATS", "CheckpointFormat", "Conversion", "get_format"]


@dataclass
class Conversion:
    """A file's state dict sorted by a format.

    ``backbone`` maps torchvision backbone key → tensor; ``dropped`` lists the file keys the format
    deliberately drops (heads, projectors, predictors, momentum encoders); ``unrecognized`` lists file keys
    outside the format's layout (always an error).
    """

    backbone: dict[str, Tensor]
    dropped: list[str] = field(default_factory=list)
    unrecognized: list[str] = field(default_factory=list)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


class CheckpointFormat:
    """A published checkpoint layout, converted to torchvision ResNet backbone keys.

    Subclasses set ``containers`` (keys of a wrapping dict that may hold the state dict, tried in order; a
    file that is itself a state dict is used as is), ``prefix`` (the prefix of backbone keys, removed) and
    ``drop_prefixes`` (file keys deliberately dropped, matched after the prefix handling below). A
    ``module.`` prefix shared by *every* key (left by ``nn.DataParallel``) is removed first.
    ``input_normalization`` is ``"imagenet"`` when the weights expect ImageNet mean/std normalised inputs,
    ``"inception"`` for mean = std = 0.5 (timm's ViT weights) and ``"none"`` when they expect raw [0, 1] pixels.
    ``default_arch`` is what ``biastransfer bases check`` compares with when no ``--arch`` is given.
    """

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    containers: ClassVar[tuple[str, ...]] = ("state_dict", "model")
    prefix: ClassVar[str] = ""
    drop_prefixes: ClassVar[tuple[str, ...]] = ("fc.",)
    input_normalization: ClassVar[str] = "imagenet"
    default_arch: ClassVar[str] = "resnet50"

    def unwrap(self, obj: Any, source: str = "checkpoint") -> dict[str, Tensor]:
        """Find the state dict inside what was read from the file (``source`` names it in errors)."""
        if _is_state_dict(obj):
            return dict(obj)
        name = self.registry_name
        if isinstance(obj, dict):
            for container in self.containers:
                inner = obj.get(container)
                if _is_state_dict(inner):
                    return dict(inner)
            top = _fmt_keys([repr(k) for k in obj])
            wanted = " or ".join(repr(c) for c in self.containers) or "(none)"
            raise CheckpointReadError(
                f"{source} is not a {name} checkpoint: expected a state dict of tensors, or one under "
                f"{wanted}; the file's top-level keys are {top}"
            )
        raise CheckpointReadError(
            f"{source} is not a {name} checkpoint: it holds a {type(obj).__name__}, not a state dict"
        )

    def split(self, raw: dict[str, Tensor]) -> Conversion:
        """Sort the file's keys into backbone (renamed), dropped and unrecognized."""
        keys = list(raw)
        strip_module = bool(keys) and all(k.startswith("module.") for k in keys)
        out = Conversion(backbone={})
        for key in keys:
            name = key[len("module.") :] if strip_module else key
            if any(name.startswith(p) for p in self.drop_prefixes):
                out.dropped.append(key)
            elif name.startswith(self.prefix):
                out.backbone[name[len(self.prefix) :]] = raw[key]
            else:
                out.unrecognized.append(key)
        return out

    def convert(self, raw: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map the file's state dict to torchvision backbone keys, heads dropped.

        Raises :class:`CheckpointMismatchError` if the file has keys outside this format's layout.
        """
        conv = self.split(raw)
        if conv.unrecognized:
            raise CheckpointMismatchError(
                CoverageReport(fmt=self.registry_name, unrecognized=conv.unrecognized, dropped=conv.dropped)
            )
        return conv.backbone


CHECKPOINT_FORMATS: Registry[type[CheckpointFormat]] = Registry("checkpoint format")
"""name -> converter class (instantiate with no arguments, or use :func:`get_format`)."""


def get_format(name: str) -> CheckpointFormat:
    """The converter registered as ``name``; an unknown name raises an error listing the formats."""
    return CHECKPOINT_FORMATS.get(name)()


@CHECKPOINT_FORMATS.register("torchvision")
class TorchvisionFormat(CheckpointFormat):
    description = "torchvision ResNet state dict (what torchvision downloads); fc.* dropped"
    layout = "state dict (plain, or under 'state_dict'/'model'): conv1.*, bn1.*, layer1-4.*, fc.*"


@CHECKPOINT_FORMATS.register("moco_v3")
class MocoV3Format(CheckpointFormat):
    description = "MoCo v3 ResNet (facebookresearch/moco-v3): base encoder; momentum encoder and MLPs dropped"
    layout = (
        "{'state_dict': {'module.base_encoder.*', 'module.base_encoder.fc.*' (projector), "
        "'module.momentum_encoder.*', 'module.predictor.*'}, 'epoch', 'arch', 'optimizer', 'scaler'}"
    )
    containers = ("state_dict",)
    prefix = "base_encoder."
    drop_prefixes = ("base_encoder.fc.", "momentum_encoder.", "predictor.")


@CHECKPOINT_FORMATS.register("simclr_port")
class SimclrPortFormat(CheckpointFormat):
    description = "SimCLR PyTorch port (Spijkervet/SimCLR): encoder.* kept, projector.* dropped"
    layout = "plain state dict: 'encoder.conv1.weight' … 'encoder.layer4.*', 'projector.0/2.weight'"
    prefix = "encoder."
    drop_prefixes = ("projector.", "encoder.fc.")


@CHECKPOINT_FORMATS.register("simclr_sthalles")
class SimclrSthallesFormat(CheckpointFormat):
    description = "SimCLR PyTorch (sthalles/SimCLR): backbone.* kept, projection MLP backbone.fc.* dropped"
    layout = (
        "{'state_dict': {'backbone.conv1.weight' …, 'backbone.fc.0.*', 'backbone.fc.2.*'}, "
        "'epoch', 'arch', 'optimizer'}"
    )
    containers = ("state_dict",)
    prefix = "backbone."
    drop_prefixes = ("backbone.fc.",)


@CHECKPOINT_FORMATS.register("simclr_converted")
class SimclrConvertedFormat(CheckpointFormat):
    description = (
        "official SimCLR v1 (TF) converted by tonylins/simclr-converter: torchvision keys, fc.* dropped; "
        "expects unnormalised [0, 1] inputs"
    )
    layout = "{'state_dict': {conv1.*, bn1.*, layer1-4.*, fc.weight, fc.bias}}"
    containers = ("state_dict",)
    input_normalization = "none"


@CHECKPOINT_FORMATS.register("places365")
class Places365Format(CheckpointFormat):
    description = "Places365 ResNet (CSAILVision/places365): module.* torchvision keys, 365-way fc dropped"
    layout = (
        "{'state_dict': {'module.conv1.weight' … 'module.layer4.*', 'module.fc.weight' (365×C), "
        "'module.fc.bias'}, 'epoch', 'arch', 'best_prec1'}"
    )
    containers = ("state_dict",)


@CHECKPOINT_FORMATS.register("timm")
class TimmFormat(CheckpointFormat):
    description = "timm ResNet weights (.pth/.bin or .safetensors): torchvision key names; fc.* dropped"
    layout = (
        "state dict (plain, or under 'state_dict'/'model'): conv1.*, bn1.*, layer1-4.*, fc.*; "
        "deep-stem / avg-down variants (resnet50d …) do not fit a torchvision ResNet and are reported"
    )


@CHECKPOINT_FORMATS.register("timm_vit")
class TimmVitFormat(CheckpointFormat):
    description = (
        "timm ViT weights (vit_*; .pth/.bin or .safetensors): timm's keys, head.* dropped; "
        "expects mean = std = 0.5 inputs (timm's augreg weights)"
    )
    layout = (
        "state dict (plain, or under 'state_dict'/'model'/'state_dict_ema'): cls_token, pos_embed (1, 1 + 14·14, D) "
        "at 224, patch_embed.proj.*, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*, norm.*, head.*"
    )
    containers = ("state_dict", "model", "state_dict_ema")
    drop_prefixes = ("head.",)
    input_normalization = "inception"
    default_arch = "vit_base_patch16_224"


@CHECKPOINT_FORMATS.register("timm_convnext")
class TimmConvnextFormat(CheckpointFormat):
    description = "timm ConvNeXt weights (convnext_*; .pth/.bin or .safetensors): timm's keys, head.fc.* dropped"
    layout = (
        "state dict (plain, or under 'state_dict'/'model'/'state_dict_ema'): stem.0/1.*, "
        "stages.N.downsample.*, stages.N.blocks.M.{gamma,conv_dw,norm,mlp.fc1,mlp.fc2}.*, head.norm.* (kept: "
        "the features' LayerNorm), head.fc.*"
    )
    containers = ("state_dict", "model", "state_dict_ema")
    drop_prefixes = ("head.fc.",)
    default_arch = "convnext_tiny"


_OPEN_CLIP_SWAPS = (
    ("conv1", "patch_embed.proj"),
    ("positional_embedding", "pos_embed"),
    ("transformer.resblocks.", "blocks."),
    ("ln_pre", "norm_pre"),
    ("ln_post", "norm"),
    ("ln_", "norm"),
    ("in_proj_", "qkv."),
    ("out_proj", "proj"),
    ("mlp.c_fc", "mlp.fc1"),
    ("mlp.c_proj", "mlp.fc2"),
)


def _open_clip_to_timm(key: str, value: Tensor) -> tuple[str, Tensor]:
    """One OpenCLIP image-tower key (``visual.`` removed) → timm's ViT name; reshapes only (values unchanged)."""
    for old, new in _OPEN_CLIP_SWAPS:
        key = key.replace(old, new)
    if key == "proj":  # (width, embed) applied as x @ proj → the weight of a Linear without bias
        return "head.weight", value.t()
    if key == "class_embedding":
        return "cls_token", value.reshape(1, 1, -1)
    if key == "pos_embed":
        return key, value.unsqueeze(0)
    return key, value


@CHECKPOINT_FORMATS.register("open_clip")
class OpenClipFormat(CheckpointFormat):
    description = (
        "OpenCLIP CLIP model (ViT image tower): visual.* kept and renamed to timm's ViT keys, text tower dropped; "
        "expects CLIP's mean/std"
    )
    layout = (
        "state dict (plain, or under 'state_dict'; module.* stripped): visual.{conv1.weight, class_embedding, "
        "positional_embedding, ln_pre.*, transformer.resblocks.N.{ln_1, attn.in_proj_weight/bias, attn.out_proj, "
        "ln_2, mlp.c_fc, mlp.c_proj}.*, ln_post.*, proj}; text: transformer.*, token_embedding.*, "
        "positional_embedding, ln_final.*, text_projection, logit_scale"
    )
    containers = ("state_dict", "model")
    prefix = "visual."
    drop_prefixes = ("transformer.", "token_embedding.", "positional_embedding", "ln_final.", "text_projection",
                     "logit_scale", "logit_bias", "text.", "input_resolution", "context_length", "vocab_size")
    input_normalization = "clip"
    default_arch = "openclip_vit_b16"

    def split(self, raw: dict[str, Tensor]) -> Conversion:
        """As the base class, then the image tower's keys renamed to timm's (values reshaped, never changed)."""
        conv = super().split(raw)
        conv.backbone = dict(_open_clip_to_timm(k, v) for k, v in conv.backbone.items())
        return conv

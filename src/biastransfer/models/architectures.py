"""Architectures: a backbone that maps images to features, plus a linear head.

Every architecture is registered by name and built as a :class:`Classifier`. Its factory's ``checkpoint_format``
names the checkpoint format whose key names its ``backbone`` uses: the ResNets follow torchvision's naming
(``conv1``, ``bn1``, ``layer1`` … ``layer4``; format ``torchvision``); the ViTs, ConvNeXts and OpenCLIP image
towers are timm's own modules (``timm`` is imported only when one is built, always with ``pretrained=False``), so
their backbone keys are timm's (formats ``timm_vit``, ``timm_convnext``; ``open_clip`` renames OpenCLIP's keys).
A backbone may name its freezable stages in order (``transfer_stages``) and its stem (``transfer_stem``), as dotted
module or parameter names; the ResNets need not (their stages are the children ``layerN``, see
:mod:`biastransfer.models.transfer`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
import torchvision
from torch import nn

from biastransfer.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ARCHITECTURES: Registry[Callable[..., tuple[nn.Module, int]]] = Registry("architecture")
"""name -> factory(in_channels) returning (backbone, feature_dim); the backbone ends in pooled features."""


class Classifier(nn.Module):
    """Normalisation + backbone + linear head.

    ``forward`` takes float images in [0, 1] of shape (B, C, H, W) and returns logits of shape
    (B, num_outputs); ``features`` returns the backbone's pooled features.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_outputs: int = 1,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
                 arch: str = "") -> None:
        super().__init__()
        self.arch = arch
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_outputs)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def replace_head(self, num_outputs: int = 1) -> None:
        """A fresh head for a new task (finetuning replaces the head and trains all layers)."""
        self.head = nn.Linear(self.feature_dim, num_outputs).to(self.mean.device)


def build_model(arch: str, num_outputs: int = 1, in_channels: int = 3) -> Classifier:
    """Build a randomly initialised classifier of a registered architecture."""
    factory = ARCHITECTURES.get(arch)
    backbone, dim = factory(in_channels)
    mean = IMAGENET_MEAN if in_channels == 3 else (0.5,) * in_channels
    std = IMAGENET_STD if in_channels == 3 else (0.25,) * in_channels
    return Classifier(backbone, dim, num_outputs, mean, std, arch=arch)


def _torchvision_resnet(name: str) -> Callable[[int], tuple[nn.Module, int]]:
    def factory(in_channels: int) -> tuple[nn.Module, int]:
        net = getattr(torchvision.models, name)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim

    factory.__doc__ = f"torchvision {name} (ImageNet layout, random initialisation)"
    factory.checkpoint_format = "torchvision"  # type: ignore[attr-defined]
    return factory


for _name in ("resnet18", "resnet34", "resnet50"):
    ARCHITECTURES.register(_name)(_torchvision_resnet(_name))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    """A CPU-friendly 3-stage ResNet for small images (the demo's default).

    Stem: 3×3 conv (stride 1) → stages of one basic block each with ``widths`` channels, the second and third
    downsampling by 2 → global average pool. About 0.2 M parameters at the default widths (16, 32, 64).
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(in_channels, w1, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _BasicBlock(w1, w1, 1)
        self.layer2 = _BasicBlock(w1, w2, 2)
        self.layer3 = _BasicBlock(w2, w3, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return torch.flatten(self.pool(x), 1)


@ARCHITECTURES.register("small_resnet")
def _small_resnet(in_channels: int) -> tuple[nn.Module, int]:
    """A 3-stage ResNet with widths (16, 32, 64): the demo's CPU-friendly default."""
    net = SmallResNet(in_channels)
    return net, net.out_dim


_small_resnet.checkpoint_format = "torchvision"  # type: ignore[attr-defined]


@ARCHITECTURES.register("small_resnet_wide")
def _small_resnet_wide(in_channels: int) -> tuple[nn.Module, int]:
    """A 3-stage ResNet with widths (32, 64, 128)."""
    net = SmallResNet(in_channels, (32, 64, 128))
    return net, net.out_dim


_small_resnet_wide.checkpoint_format = "torchvision"  # type: ignore[attr-defined]


def checkpoint_format_of(arch: str) -> str:
    """The checkpoint format whose key names ``arch``'s backbone uses (``torchvision``, ``timm_vit`` …)."""
    return str(getattr(ARCHITECTURES.get(arch), "checkpoint_format", "torchvision"))


# ------------------------------------------------------------------------------------------------ timm backbones


class _NoDropout(nn.Identity):
    """Stands in for an ``nn.Dropout`` of rate 0 (the identity in both modes); keeps ``p`` for timm's attention.

    With it, a frozen ViT/ConvNeXt backbone computes the same in train and eval mode and is recognised as such
    (the frozen-feature fast path looks for dropout and DropPath modules)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = 0.0


def _import_timm() -> ModuleType:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency; a broken install still gets a clear message
        raise ImportError(
            "the ViT and ConvNeXt architectures need the 'timm' package (a dependency of biastransfer): "
            "pip install 'timm>=1.0'"
        ) from None
    return timm


def _timm_model(name: str, in_channels: int, **kwargs: object) -> nn.Module:
    """timm's ``name`` without a classifier, randomly initialised: never downloads (``pretrained=False``)."""
    net = _import_timm().create_model(name, pretrained=False, num_classes=0, in_chans=in_channels,
                                      drop_rate=0.0, drop_path_rate=0.0, **kwargs)
    for parent in list(net.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout) and child.p == 0.0:
                setattr(parent, child_name, _NoDropout())
    return net


def _timm_vit(name: str) -> Callable[[int], tuple[nn.Module, int]]:
    def factory(in_channels: int) -> tuple[nn.Module, int]:
        # dynamic_img_size: the position embedding stays at the 224 grid of the published weights (so their files
        # load strictly) and is interpolated to the input's grid in forward, so the study's resolution works
        net = _timm_model(name, in_channels, dynamic_img_size=True)
        stages = [f"blocks.{i}" for i in range(len(net.blocks))]
        stem = [n for n, _ in net.named_parameters(recurse=False)] + ["patch_embed", "norm_pre"]
        net.transfer_stages, net.transfer_stem = stages, stem
        return net, int(net.num_features)

    factory.__doc__ = f"timm {name} (ViT, class-token features; any resolution divisible by the patch size)"
    factory.checkpoint_format = "timm_vit"  # type: ignore[attr-defined]
    return factory


def _timm_convnext(name: str) -> Callable[[int], tuple[nn.Module, int]]:
    def factory(in_channels: int) -> tuple[nn.Module, int]:
        net = _timm_model(name, in_channels)
        net.transfer_stages = [f"stages.{i}" for i in range(len(net.stages))]
        net.transfer_stem = ["stem"]
        return net, int(net.num_features)

    factory.__doc__ = f"timm {name} (ConvNeXt; features: pooled, then its LayerNorm head.norm)"
    factory.checkpoint_format = "timm_convnext"  # type: ignore[attr-defined]
    return factory


def _timm_clip(name: str, embed_dim: int) -> Callable[[int], tuple[nn.Module, int]]:
    def factory(in_channels: int) -> tuple[nn.Module, int]:
        net = _timm_model(name, in_channels, dynamic_img_size=True)
        # OpenCLIP's image tower ends in ``proj`` (no bias): the features are the image embedding (encode_image)
        net.head = nn.Linear(int(net.num_features), embed_dim, bias=False)
        net.transfer_stages = [f"blocks.{i}" for i in range(len(net.blocks))]
        net.transfer_stem = [n for n, _ in net.named_parameters(recurse=False)] + ["patch_embed", "norm_pre"]
        return net, embed_dim

    factory.__doc__ = f"OpenCLIP image tower as timm {name} (ViT, pre-norm; features: the {embed_dim}-d embedding)"
    factory.checkpoint_format = "open_clip"  # type: ignore[attr-defined]
    return factory


ARCHITECTURES.register("openclip_vit_b16")(_timm_clip("vit_base_patch16_clip_224", 512))
ARCHITECTURES.register("openclip_vit_b16_quickgelu")(_timm_clip("vit_base_patch16_clip_quickgelu_224", 512))
ARCHITECTURES.register("openclip_vit_b32")(_timm_clip("vit_base_patch32_clip_224", 512))
ARCHITECTURES.register("openclip_vit_b32_quickgelu")(_timm_clip("vit_base_patch32_clip_quickgelu_224", 512))
for _name in ("vit_small_patch16_224", "vit_base_patch16_224"):
    ARCHITECTURES.register(_name)(_timm_vit(_name))
for _name in ("convnext_tiny", "convnext_small", "convnext_base"):
    ARCHITECTURES.register(_name)(_timm_convnext(_name))

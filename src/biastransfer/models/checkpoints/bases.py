"""The base kinds ``checkpoint`` and ``torchvision_weights``, and torchvision weights from the local cache."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
import torchvision

from biastransfer.models.architectures import ARCHITECTURES, Classifier, build_model
from biastransfer.models.bases import BASES, Base, BaseContext
from biastransfer.models.checkpoints.formats import get_format
from biastransfer.models.checkpoints.loading import load_backbone
from biastransfer.models.checkpoints.reader import CheckpointReadError

__all__ = ["CheckpointBase", "TorchvisionWeightsBase", "torchvision_cached"]


# ------------------------------------------------------------------------------------------------------
# torchvision weights from the local torch hub cache

_HASH_RE = re.compile(r"-([a-f0-9]*)\.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def torchvision_cached(arch: str, weights_name: str, verify_hash: bool = True) -> Path:
    """The local file of torchvision's weights ``weights_name`` (``"IMAGENET1K_V1"``, ``"DEFAULT"`` …).

    Looks for the file torchvision would download (the basename of the weights' URL) in
    ``torch.hub.get_dir()/checkpoints``. Never downloads: if the file is absent, raises
    :class:`FileNotFoundError` saying where it looked. With ``verify_hash`` the file's SHA-256 must start
    with the hash in its name, as ``torch.hub`` checks on download (else :class:`CheckpointReadError`).
    """
    ARCHITECTURES.get(arch)  # an unknown arch raises UnknownNameError listing the architectures
    try:
        enum = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise ValueError(
            f"architecture {arch!r} has no torchvision weights (only torchvision models do)"
        ) from None
    try:
        weights = enum[weights_name]
    except KeyError:
        raise ValueError(
            f"unknown torchvision weights {weights_name!r} for {arch}; allowed: {', '.join(enum.__members__)}"
        ) from None
    filename = weights.url.rsplit("/", 1)[-1]
    path = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"torchvision weights {enum.__name__}.{weights.name} are not in the local torch cache: "
            f"looked for {path} (torch.hub.get_dir()/checkpoints; TORCH_HOME moves it). biastransfer never "
            f"downloads; put the file there yourself (it is published at {weights.url})."
        )
    match = _HASH_RE.search(filename)
    if verify_hash and match and match.group(1):
        sha = _sha256(path)
        if not sha.startswith(match.group(1)):
            raise CheckpointReadError(
                f"{path}: its SHA-256 {sha[:12]}… does not start with {match.group(1)} from its name; the "
                "file is damaged or is not the published weights"
            )
    return path


# ------------------------------------------------------------------------------------------------------
# Bases

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""The input normalisation of CLIP's (and OpenCLIP's) image towers."""


def _check_options(kind: str, options: dict[str, Any], required: set[str], optional: set[str]) -> None:
    unknown = sorted(set(options) - required - optional)
    if unknown:
        raise ValueError(
            f"base kind {kind!r}: unknown option(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(required | optional))}"
        )
    absent = sorted(required - set(options))
    if absent:
        raise ValueError(f"base kind {kind!r}: missing option(s) {', '.join(absent)}")


def _resolve_arch(kind: str, declared: str | None, ctx: BaseContext) -> str:
    if declared and ctx.arch and declared != ctx.arch:
        raise ValueError(
            f"base kind {kind!r}: the checkpoint is declared for arch {declared!r} but the study uses "
            f"{ctx.arch!r}"
        )
    return declared or ctx.arch


def _apply_normalization(model: Classifier, mode: str) -> None:
    """Set the classifier's input normalisation: ``imagenet`` (as built), ``inception`` (mean = std = 0.5, timm's
    ViT weights), ``clip`` (CLIP's mean/std, OpenCLIP weights) or ``none`` (raw [0, 1] pixels)."""
    if mode == "none":
        model.mean.zero_()
        model.std.fill_(1.0)
    elif mode == "inception":
        model.mean.fill_(0.5)
        model.std.fill_(0.5)
    elif mode == "clip":
        if model.mean.numel() != 3:
            raise ValueError("normalization 'clip' needs 3 input channels")
        model.mean.copy_(torch.tensor(CLIP_MEAN).view_as(model.mean))
        model.std.copy_(torch.tensor(CLIP_STD).view_as(model.std))
    elif mode != "imagenet":
        raise ValueError(
            f"normalization must be 'imagenet', 'inception', 'clip' or 'none' (or unset: the format's), not {mode!r}"
        )


@BASES.register("checkpoint")
class CheckpointBase(Base):
    """An off-the-shelf backbone from a local checkpoint file, with a fresh head.

    Options: ``format`` (a registered checkpoint format), ``path``, optional ``arch`` (must equal the
    study's arch if given) and optional ``normalization`` (``imagenet``, ``inception``, ``clip`` or ``none``;
    default: what the format expects, ``none`` for ``simclr_converted``, ``inception`` for ``timm_vit``, ``clip``
    for ``open_clip``).
    """

    description = "off-the-shelf backbone from a local checkpoint file (options: format, path, arch)"
    shorthand = "FORMAT:PATH"

    @classmethod
    def from_shorthand(cls, rest: str, arch: str) -> tuple[str, dict[str, Any]] | None:
        """``FORMAT:PATH`` → named after the file's stem; the file holds a backbone of the study's ``arch``."""
        fmt, _, path = rest.partition(":")
        if not (fmt and path):
            return None
        return Path(path).stem.split(".")[0] or cls.registry_name, {"format": fmt, "path": path, "arch": arch}

    def __init__(self, **options: Any) -> None:
        _check_options("checkpoint", options, {"format", "path"}, {"arch", "normalization"})
        get_format(options["format"])  # fail early on an unknown format
        super().__init__(**options)

    def check(self) -> None:
        path = Path(self.options["path"]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")

    def build(self, ctx: BaseContext) -> Classifier:
        """Build ``arch``, load the checkpoint's backbone strictly and return the model (fresh head)."""
        fmt = self.options["format"]
        arch = _resolve_arch("checkpoint", self.options.get("arch"), ctx)
        model = build_model(arch, in_channels=ctx.in_channels)
        load_backbone(model, fmt, Path(self.options["path"]).expanduser())
        _apply_normalization(model, self.options.get("normalization") or get_format(fmt).input_normalization)
        return model.to(ctx.device)


@BASES.register("torchvision_weights")
class TorchvisionWeightsBase(Base):
    """torchvision's published weights (``weights: IMAGENET1K_V1``) from the local torch cache only.

    Options: ``weights``, optional ``arch`` and ``verify_hash`` (default true).
    """

    description = "torchvision weights enum (e.g. IMAGENET1K_V1) from the local torch cache, never downloaded"

    def __init__(self, **options: Any) -> None:
        _check_options("torchvision_weights", options, {"weights"}, {"arch", "verify_hash"})
        super().__init__(**options)

    def build(self, ctx: BaseContext) -> Classifier:
        """Find the cached file, build ``arch`` and load its backbone strictly (fresh head)."""
        arch = _resolve_arch("torchvision_weights", self.options.get("arch"), ctx)
        path = torchvision_cached(arch, self.options["weights"], bool(self.options.get("verify_hash", True)))
        model = build_model(arch, in_channels=ctx.in_channels)
        load_backbone(model, "torchvision", path)
        return model.to(ctx.device)

"""Off-the-shelf bases read from local checkpoint files, with strict key coverage.

A *checkpoint format* knows one published file layout (which container holds the state dict, which prefix
the backbone keys carry, which keys are heads to drop) and converts the file's state dict to the key names of
a torchvision ResNet backbone without ``fc`` (``conv1.weight``, ``bn1.running_mean``,
``layer1.0.conv1.weight`` …), which is what :class:`~biastransfer.models.architectures.Classifier` backbones
use.

Loading is strict, unlike the original scripts (``strict=False`` and no check, so a mismatch silently left a
random backbone): every backbone key of the model must come from the file with the right shape, and every
key of the file must be either a backbone key or a head the format deliberately drops. Anything else raises
:class:`CheckpointMismatchError` listing the keys. Files are read with
``torch.load(..., weights_only=True)``, so a file that pickles arbitrary Python objects is refused rather
than executed; ``.safetensors`` files are read by a small built-in reader (no pickle at all). Nothing here
downloads anything.

Formats (``docs/checkpoints.md`` has the layouts and where each was verified):

======================  =================================================================================
``torchvision``         plain torchvision ResNet state dict (``fc.*`` dropped)
``moco_v3``             MoCo v3 ResNet: ``state_dict`` → ``module.base_encoder.*``
``simclr_port``         Spijkervet/SimCLR PyTorch port: ``encoder.*`` + ``projector.*``
``simclr_sthalles``     sthalles/SimCLR: ``state_dict`` → ``backbone.*``, projection MLP in ``backbone.fc``
``simclr_converted``    official TF SimCLR via tonylins/simclr-converter: ``state_dict`` → torchvision keys
``places365``           CSAILVision Places365: ``state_dict`` → ``module.*`` with a 365-way ``fc``
``timm``                timm ResNet weights (``.pth``/``.bin``/``.safetensors``): torchvision keys + ``fc``
======================  =================================================================================
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torchvision
from torch import Tensor

from biastransfer.models.architectures import ARCHITECTURES, Classifier, build_model
from biastransfer.models.bases import BASES, Base, BaseContext
from biastransfer.registry import Registry

__all__ = [
    "CHECKPOINT_FORMATS",
    "CheckpointBase",
    "CheckpointFormat",
    "CheckpointMismatchError",
    "CheckpointReadError",
    "Conversion",
    "CoverageReport",
    "TorchvisionWeightsBase",
    "check_checkpoint",
    "coverage",
    "get_format",
    "load_backbone",
    "read_checkpoint",
    "torchvision_cached",
]

_LIST_LIMIT = 12
"""How many keys of each kind an error message lists before summarising the rest as a count."""


class CheckpointReadError(ValueError):
    """A file could not be read as a checkpoint: corrupt, not a state dict, or refused by ``weights_only``."""


class CheckpointMismatchError(ValueError):
    """The converted checkpoint does not cover the model's backbone exactly; ``report`` has the details."""

    def __init__(self, report: CoverageReport) -> None:
        self.report = report
        super().__init__(report.describe())


# ------------------------------------------------------------------------------------------------------
# Reading files

_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

_REFUSED_RE = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _is_safetensors(path: Path) -> bool:
    """True for a ``.safetensors`` suffix, or a file starting with a u64 header length then ``{``."""
    if path.suffix == ".safetensors":
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) != 9 or head[8:9] != b"{":
        return False
    return 0 < struct.unpack("<Q", head[:8])[0] < 100_000_000


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file: u64 little-endian header length, JSON header, raw little-endian data."""

    def bad(why: str) -> CheckpointReadError:
        return CheckpointReadError(f"could not read checkpoint {path}: {why}")

    data = path.read_bytes()
    if len(data) < 8:
        raise bad("too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise bad("the safetensors header runs past the end of the file")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"bad safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise bad("bad safetensors header (not a JSON object)")
    body = memoryview(data)[8 + n :]
    out: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"unsupported or malformed safetensors entry {name!r}") from None
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= len(body) or end - begin != numel * itemsize:
            raise bad(f"safetensors entry {name!r} has bad data offsets")
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype).reshape(shape)
    return out


def read_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint file safely: ``torch.load(path, map_location='cpu', weights_only=True)``.

    ``.safetensors`` files (recognised by suffix or header) are read without pickle. Raises
    :class:`FileNotFoundError` if the file does not exist, and :class:`CheckpointReadError` naming the file
    if it is corrupt or pickles objects that ``weights_only`` refuses (a whole pickled model, an
    ``argparse.Namespace`` saved next to the weights …).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _REFUSED_RE.search(str(exc))
        if refused:
            raise CheckpointReadError(
                f"could not read checkpoint {path}: torch.load(weights_only=True) refused it because it "
                f"pickles the Python object {refused.group(1)}, not only tensors and plain containers. "
                "biastransfer never unpickles arbitrary objects; re-save only the state dict, e.g. "
                "torch.save(model.state_dict(), 'clean.pth')."
            ) from None
        raise CheckpointReadError(
            f"could not read checkpoint {path}: not a readable torch file (corrupt or another format)"
        ) from None
    except Exception as exc:  # corrupt zip, truncated file, random bytes …
        raise CheckpointReadError(
            f"could not read checkpoint {path}: not a readable torch file ({type(exc).__name__}: {exc})"
        ) from None


# ------------------------------------------------------------------------------------------------------
# Formats


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
    ``input_normalization`` is ``"imagenet"`` when the weights expect ImageNet mean/std normalised inputs and
    ``"none"`` when they expect raw [0, 1] pixels.
    """

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    containers: ClassVar[tuple[str, ...]] = ("state_dict", "model")
    prefix: ClassVar[str] = ""
    drop_prefixes: ClassVar[tuple[str, ...]] = ("fc.",)
    input_normalization: ClassVar[str] = "imagenet"

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


# ------------------------------------------------------------------------------------------------------
# Coverage


@dataclass
class CoverageReport:
    """How a converted checkpoint covers a model's backbone.

    ``matched``: backbone keys found with the right shape. ``missing``: backbone keys the file lacks.
    ``unexpected``: converted keys the backbone does not have. ``unrecognized``: file keys outside the
    format's layout. ``shape_mismatch``: ``(key, file_shape, model_shape)``. ``dropped``: file keys
    deliberately dropped (heads). ``filled``: BatchNorm ``num_batches_tracked`` counters absent from files
    saved by PyTorch < 0.4.1 (while the layer's running statistics are present), set to 0; they hold no
    learned weights.
    """

    fmt: str = ""
    path: str = ""
    arch: str = ""
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    unrecognized: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every backbone key is covered with the right shape and nothing is left over."""
        return not (self.missing or self.unexpected or self.unrecognized or self.shape_mismatch)

    def describe(self) -> str:
        """A message listing the problems (long lists truncated, with counts)."""
        what = f"{self.fmt} checkpoint" if self.fmt else "checkpoint"
        where = " ".join(filter(None, [what, self.path, f"for {self.arch}" if self.arch else ""]))
        if self.ok:
            return (
                f"{where}: all {len(self.matched)} backbone keys matched "
                f"({len(self.dropped)} head keys dropped)"
            )
        lines = [f"{where} does not match the backbone ({len(self.matched)} keys matched):"]
        if self.missing:
            lines.append(f"missing from the file ({len(self.missing)}): {_fmt_keys(self.missing)}")
        if self.unexpected:
            lines.append(
                f"unexpected, not in the backbone ({len(self.unexpected)}): {_fmt_keys(self.unexpected)}"
            )
        if self.unrecognized:
            lines.append(
                f"file keys outside the {self.fmt or 'format'} layout ({len(self.unrecognized)}): "
                f"{_fmt_keys(self.unrecognized)}"
            )
        if self.shape_mismatch:
            shown = [f"{k} file {tuple(a)} vs model {tuple(b)}" for k, a, b in self.shape_mismatch]
            lines.append(f"shape mismatch ({len(shown)}): {_fmt_keys(shown)}")
        return "\n  ".join(lines)


def _fmt_keys(keys: list[str], limit: int = _LIST_LIMIT) -> str:
    shown = ", ".join(keys[:limit])
    if len(keys) > limit:
        shown += f", … and {len(keys) - limit} more"
    return shown


def coverage(model: Classifier, conv: Conversion) -> tuple[CoverageReport, dict[str, Tensor]]:
    """Compare a conversion with ``model.backbone``; return the report and the state dict to load."""
    target = model.backbone.state_dict()
    source = dict(conv.backbone)
    report = CoverageReport(
        arch=getattr(model, "arch", ""), dropped=list(conv.dropped), unrecognized=list(conv.unrecognized)
    )
    for key, ref in target.items():
        if key not in source:
            sibling = key.removesuffix("num_batches_tracked") + "running_mean"
            if key.endswith("num_batches_tracked") and sibling in source:
                source[key] = torch.zeros_like(ref)
                report.filled.append(key)
            else:
                report.missing.append(key)
            continue
        got = source[key]
        if tuple(got.shape) != tuple(ref.shape):
            report.shape_mismatch.append((key, tuple(got.shape), tuple(ref.shape)))
        else:
            report.matched.append(key)
    report.unexpected = [k for k in source if k not in target]
    return report, source


def _read_and_split(fmt: str, path: Path) -> Conversion:
    converter = get_format(fmt)
    raw = converter.unwrap(read_checkpoint(path), source=str(path))
    return converter.split(raw)


def load_backbone(model: Classifier, fmt: str, path: str | Path) -> CoverageReport:
    """Load a checkpoint's backbone into ``model`` strictly; the head is left as it is.

    Raises :class:`FileNotFoundError`; :class:`CheckpointReadError` (unreadable, refused by
    ``weights_only``, or not a state dict; the message names the file);
    :class:`~biastransfer.registry.UnknownNameError` (unknown format); or :class:`CheckpointMismatchError`
    (any missing, unexpected or unrecognized key or shape mismatch; the message lists them). On success
    returns the :class:`CoverageReport`.
    """
    path = Path(path)
    report, state = coverage(model, _read_and_split(fmt, path))
    report.fmt, report.path = fmt, str(path)
    if not report.ok:
        raise CheckpointMismatchError(report)
    model.backbone.load_state_dict(state, strict=True)
    return report


def check_checkpoint(
    fmt: str, path: str | Path, arch: str = "resnet50", in_channels: int = 3
) -> CoverageReport:
    """The coverage of a checkpoint against a fresh ``arch`` backbone, without raising on a mismatch.

    Still raises for a missing or unreadable file, an unknown format or an unknown architecture.
    """
    converter = get_format(fmt)  # unknown format fails before the (possibly slow) model build
    model = build_model(arch, in_channels=in_channels)
    path = Path(path)
    raw = converter.unwrap(read_checkpoint(path), source=str(path))
    report, _ = coverage(model, converter.split(raw))
    report.fmt, report.path = fmt, str(path)
    return report


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
    """Set the classifier's input normalisation: ``imagenet`` (as built) or ``none`` (raw [0, 1] pixels)."""
    if mode == "none":
        model.mean.zero_()
        model.std.fill_(1.0)
    elif mode != "imagenet":
        raise ValueError(f"normalization must be 'imagenet' or 'none' (or unset: the format's), not {mode!r}")


@BASES.register("checkpoint")
class CheckpointBase(Base):
    """An off-the-shelf backbone from a local checkpoint file, with a fresh head.

    Options: ``format`` (a registered checkpoint format), ``path``, optional ``arch`` (must equal the
    study's arch if given) and optional ``normalization`` (``imagenet`` or ``none``; default: what the
    format expects, ``none`` for ``simclr_converted``).
    """

    description = "off-the-shelf backbone from a local checkpoint file (options: format, path, arch)"

    def __init__(self, **options: Any) -> None:
        _check_options("checkpoint", options, {"format", "path"}, {"arch", "normalization"})
        get_format(options["format"])  # fail early on an unknown format
        super().__init__(**options)

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

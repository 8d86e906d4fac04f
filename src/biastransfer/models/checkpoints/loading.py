"""Strict key coverage: compare a converted checkpoint with a model's backbone, and load it only if exact."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from biastransfer.models.architectures import Classifier, build_model
from biastransfer.models.checkpoints.formats import Conversion, get_format
from biastransfer.models.checkpoints.reader import read_checkpoint
from biastransfer.models.checkpoints.report import CheckpointMismatchError, CoverageReport

__all__ = ["check_checkpoint", "coverage", "load_backbone"]


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
    fmt: str, path: str | Path, arch: str | None = None, in_channels: int = 3
) -> CoverageReport:
    """The coverage of a checkpoint against a fresh ``arch`` backbone (default: the format's ``default_arch``),
    without raising on a mismatch.

    Still raises for a missing or unreadable file, an unknown format or an unknown architecture.
    """
    converter = get_format(fmt)  # unknown format fails before the (possibly slow) model build
    model = build_model(arch or converter.default_arch, in_channels=in_channels)
    path = Path(path)
    raw = converter.unwrap(read_checkpoint(path), source=str(path))
    report, _ = coverage(model, converter.split(raw))
    report.fmt, report.path = fmt, str(path)
    return report

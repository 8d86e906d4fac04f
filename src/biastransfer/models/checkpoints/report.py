"""The coverage report of a converted checkpoint against a backbone, and the error raised on a mismatch.

Kept apart from :mod:`~biastransfer.models.checkpoints.loading` so that the formats (which raise
:class:`CheckpointMismatchError` for keys outside their layout) and the coverage check can both use it
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CheckpointMismatchError", "CoverageReport"]

_LIST_LIMIT = 12
"""How many keys of each kind an error message lists before summarising the rest as a count."""


class CheckpointMismatchError(ValueError):
    """The converted checkpoint does not cover the model's backbone exactly; ``report`` has the details."""

    def __init__(self, report: CoverageReport) -> None:
        self.report = report
        super().__init__(report.describe())


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

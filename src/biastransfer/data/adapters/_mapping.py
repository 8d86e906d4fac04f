"""The class-mapping file of the ``mixture`` dataset: a CSV with the header ``class,<source>,<source>,…`` and one
row per class naming, in each source's column, that source's label (task column) showing the class.
:func:`parse_mapping` reads the text into a :class:`ClassMapping`; :func:`match_label` finds the task column a
label names. docs/datasets.md has the format."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from biastransfer.data.adapters._common import norm_value, slug
from biastransfer.data.table import DataError

TASK_PREFIXES = ("topic", "object", "class")  # adapters' prefixes of labels that clash with columns (topic_income)


@dataclass(frozen=True)
class MappingRow:
    """One cell of the mapping: ``label`` (as written) of ``source`` shows class ``cls``; from line ``line``."""
    cls: str
    source: str
    label: str
    line: int


@dataclass(frozen=True)
class ClassMapping:
    """A parsed mapping: the classes (in order of first appearance), its source columns and its cells."""
    where: str
    classes: tuple[str, ...]
    sources: tuple[str, ...]
    rows: tuple[MappingRow, ...]


def parse_mapping(text: str, where: str) -> ClassMapping:
    """Parse the CSV text of a mapping (``where`` names it in errors); lines starting with ``#`` are comments."""
    table = [(n, [c.strip() for c in cells]) for n, cells in enumerate(csv.reader(io.StringIO(text)), start=1)]
    table = [(n, cells) for n, cells in table if any(cells) and not cells[0].startswith("#")]
    if not table:
        raise DataError(f"{where}: empty mapping; expected a header class,<source>,… and one row per label")
    line, header = table[0]
    if header[0].lower() != "class" or len(header) < 2:
        raise DataError(f"{where}:{line}: the header must be class,<source name>,<source name>,… (e.g. "
                        f"class,dollarstreet,coco); got {','.join(header)}")
    sources = [h.lower() for h in header[1:]]
    for i, source in enumerate(sources):
        if not source or source in sources[:i]:
            raise DataError(f"{where}:{line}: " + (f"source {source!r} has two columns" if source else
                                                   f"column {i + 2} of the header has no source name"))
    classes: dict[str, str] = {}  # slug → the first spelling
    seen: dict[tuple[str, str], MappingRow] = {}
    for line, cells in table[1:]:
        if any(cells[len(header):]):
            raise DataError(f"{where}:{line}: {len(cells)} cells but the header has {len(header)} columns")
        cells = cells + [""] * (len(header) - len(cells))
        if not cells[0]:
            raise DataError(f"{where}:{line}: no class name in the first cell")
        labels = [(s, label) for s, label in zip(sources, cells[1:len(header)], strict=True) if label]
        if not labels:
            raise DataError(f"{where}:{line}: class {cells[0]!r} maps no label (every source cell is empty)")
        cls = classes.setdefault(slug(cells[0]), cells[0])
        for source, label in labels:
            before = seen.setdefault((source, norm_value(slug(label))), MappingRow(cls, source, label, line))
            if before.cls != cls:
                raise DataError(f"{where}:{line}: label {label!r} of {source!r} is mapped to {cls!r} here and to "
                                f"{before.cls!r} on line {before.line}; a label maps to one class")
    if not seen:
        raise DataError(f"{where}: no mapping rows under the header")
    return ClassMapping(where, tuple(classes.values()), tuple(sources), tuple(seen.values()))


def match_label(label: str, tasks: Sequence[str]) -> str | None:
    """The task column ``label`` names after the adapters' normalisation (``kids bed`` → ``kids_bed``; also a column
    an adapter prefixed to avoid a clash: ``topic_income`` for ``income``), or None."""
    by_key = {norm_value(t): t for t in tasks}
    key = norm_value(slug(label))
    for candidate in (key, *(norm_value(f"{p}_{key}") for p in TASK_PREFIXES)):
        if candidate in by_key:
            return by_key[candidate]
    return None

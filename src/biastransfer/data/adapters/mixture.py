"""Registered image datasets mixed into ONE multi-class object dataset by a class-mapping file (paper §5.2: Dollar
Street, the diverse domain, and COCO, the plentiful one; GeoDE as a pool bases pretrain on). docs/datasets.md
``mixture`` has the parameters, the mapping format, the columns and the splits. Each source is loaded with
:func:`~biastransfer.data.registry.load_dataset`; the kept rows of their stores are concatenated once into
``<cache_dir>/mixture-<key>.npy`` and memory-mapped. The mapping file's CSV format is parsed in
:mod:`biastransfer.data.adapters._mapping`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.adapters._common import COMMON_PARAMS, metadata_hash, slug
from biastransfer.data.adapters._mapping import (  # noqa: F401  (re-exported: the mapping's format)
    TASK_PREFIXES,
    ClassMapping,
    MappingRow,
    match_label,
    parse_mapping,
)
from biastransfer.data.registry import DATASETS, DatasetSource, load_dataset
from biastransfer.data.table import LABEL, DataError, ExampleTable, ImageStore, LoadedDataset
from biastransfer.registry import UnknownNameError

logger = logging.getLogger(__name__)

NAME = "mixture"
MIXTURE_VERSION = 1  # bump when the mixing changes, so that cached combined stores are not reused
BUNDLED_MAPPINGS: dict[str, str] = {"paper": "paper_15_objects.csv"}  # files of adapters/mappings/
SOURCE_KEYS = ("name", "root", "params", "split")
EVALUATION_SPLITS = ("train", "val", "test")  # a source's split: may not name these (each source keeps its own)
AMBIGUOUS = ("drop", "error")
# columns of the table; a class whose slug is one of these gets the task column class_<slug>
RESERVED = frozenset({"id", "split", "domain", "source", "source_split", "source_row", "class", LABEL, "diverse"})
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def read_mapping(mapping: Any, root: Path | None = None) -> ClassMapping:
    """Parse ``mapping``: a bundled name (``paper``) or the path of a CSV file (relative: to ``root`` if given)."""
    if not isinstance(mapping, str | os.PathLike) or not str(mapping).strip():
        raise DataError(f"dataset {NAME!r}: parameter 'mapping' must be one of {', '.join(BUNDLED_MAPPINGS)} (the "
                        f"bundled mappings) or the path of a CSV file; got {mapping!r}")
    if isinstance(mapping, str) and mapping in BUNDLED_MAPPINGS:
        text = resources.files("biastransfer.data.adapters").joinpath("mappings", BUNDLED_MAPPINGS[mapping])
        return parse_mapping(text.read_text(encoding="utf-8"),
                             f"{BUNDLED_MAPPINGS[mapping]} (the bundled mapping {mapping!r})")
    path = (Path() if root is None else Path(root).expanduser()) / Path(mapping).expanduser()  # relative: to root
    if not path.is_file():
        raise DataError(f"dataset {NAME!r}: parameter 'mapping': no file {path} (give the path of a CSV file with "
                        f"the header class,<source>,… or one of the bundled mappings: {', '.join(BUNDLED_MAPPINGS)})")
    return parse_mapping(path.read_text(encoding="utf-8-sig"), str(path))


@dataclass(frozen=True)
class SourceSpec:
    """One entry of ``sources``."""
    index: int
    name: str
    root: Path | None
    params: dict[str, Any]
    split: str | None

    @property
    def where(self) -> str:
        return f"dataset {NAME!r}: sources[{self.index}] ({self.name})"


def parse_sources(value: Any, root: Path | None, forwarded: Mapping[str, Any]) -> list[SourceSpec]:
    """Validate ``sources``; ``forwarded`` (decoding params given to the mixture) go to every source's params."""
    example = "e.g. [{name: dollarstreet, root: /data/dollarstreet}, {name: coco, root: /data/coco}]"
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence) or not value:
        raise DataError(f"dataset {NAME!r}: parameter 'sources' " + ("is required" if value is None else "must be")
                        + f" a non-empty list of {{name, root, params, split}} entries, {example}; got {value!r}")
    allowed = ", ".join(n for n in DATASETS.names() if n != NAME)
    specs: list[SourceSpec] = []
    for i, entry in enumerate(value):
        where = f"dataset {NAME!r}: sources[{i}]"
        if not isinstance(entry, Mapping):
            raise DataError(f"{where} must be a mapping with keys {', '.join(SOURCE_KEYS)}; got {entry!r}")
        unknown = [k for k in entry if k not in SOURCE_KEYS]
        if unknown:
            raise DataError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(SOURCE_KEYS)}")
        name = entry.get("name")
        if name == NAME:
            raise DataError(f"{where}: a mixture cannot be a source of a mixture; name one of {allowed}")
        if not isinstance(name, str) or name not in DATASETS:
            raise DataError(f"{where}: 'name' must be a registered dataset; got {name!r}; allowed: {allowed}")
        twice = [s.index for s in specs if s.name == name]
        if twice:
            raise DataError(f"{where}: dataset {name!r} is listed twice (also sources[{twice[0]}]); list each "
                            f"dataset once")
        params = entry.get("params") or {}
        if not isinstance(params, Mapping):
            raise DataError(f"{where} ({name}): 'params' must be a mapping of that dataset's parameters; got "
                            f"{params!r}")
        src_root = entry.get("root")
        if src_root is not None:
            if not isinstance(src_root, str | os.PathLike) or not str(src_root).strip():
                raise DataError(f"{where} ({name}): 'root' must be a folder path; got {src_root!r}")
            src_root = (Path() if root is None else Path(root).expanduser()) / Path(src_root).expanduser()
        split = entry.get("split")
        if split is not None and (not isinstance(split, str) or not _SPLIT_NAME.match(split)):
            raise DataError(f"{where} ({name}): 'split' must be a pool name of letters, digits, '_' and '-' (e.g. "
                            f"pretrain_geode); got {split!r}")
        if split in EVALUATION_SPLITS:
            raise DataError(f"{where} ({name}): 'split: {split}' is refused. 'split:' sends ALL of a source's images "
                            f"to one pool that bases train on (e.g. split: pretrain_geode, with the base's pool: "
                            f"pretrain_geode, or split: pretrain); {', '.join(EVALUATION_SPLITS)} are the finetuning "
                            f"and evaluation pools, where each source keeps its own split (drop 'split:' to keep it)")
        specs.append(SourceSpec(i, name, src_root, {**forwarded, **params}, split))
    if all(s.split is not None for s in specs):
        raise DataError(f"dataset {NAME!r}: every source has a 'split:', so nothing is left for the train, val and "
                        f"test pools; give 'split:' only to the source(s) that bases pretrain on")
    return specs


def load_source(spec: SourceSpec, cache_dir: Path, resolution: int) -> LoadedDataset:
    try:
        return load_dataset(spec.name, root=spec.root, cache_dir=cache_dir, resolution=resolution, params=spec.params)
    except (DataError, UnknownNameError, ValueError, TypeError) as exc:
        raise DataError(f"{spec.where}: {exc}") from exc


def _shown(labels: Sequence[str]) -> str:
    return ", ".join(labels[:20]) + (f", … ({len(labels)} in all)" if len(labels) > 20 else "")


def missing_column_message(spec: SourceSpec, mapping: ClassMapping, data: LoadedDataset) -> str:
    labels, columns = _shown(list(data.table.tasks)), ",".join(("class", *mapping.sources))
    if spec.split is not None:
        return (f"{spec.where}: the mapping {mapping.where} has no column {spec.name!r}, so no image of this "
                f"source (all bound for the pool {spec.split!r}) can get a class. Copy the mapping file, add a "
                f"column {spec.name!r} to its header ({columns},{spec.name}) and, on the row of each class this "
                f"source shows, the {spec.name} label of that class (one of: {labels}); add rows for labels of "
                f"classes not yet in the file. Then set mapping: <the path of your copy>")
    return (f"{spec.where}: the mapping {mapping.where} has no column {spec.name!r} (its columns: {columns}). Add a "
            f"column {spec.name!r} naming, for each class, the {spec.name} label (task column) that shows it; "
            f"{spec.name}'s labels: {labels}")


@dataclass(frozen=True)
class Mixed:
    """The kept rows of one source, their class indices, and the counts of dropped rows."""
    spec: SourceSpec
    data: LoadedDataset
    rows: np.ndarray
    labels: np.ndarray
    unmapped: int
    ambiguous: int
    example: str  # an ambiguous image and its classes

    def domains(self) -> np.ndarray:
        frame = self.data.table.frame
        domain = frame["domain"] if "domain" in frame.columns else pd.Series(self.spec.name, index=frame.index)
        return domain.astype(str).to_numpy()[self.rows]


def mix_source(spec: SourceSpec, data: LoadedDataset, mapping: ClassMapping) -> Mixed:
    """The class of every row of one source (the rows with exactly one distinct mapped class)."""
    if spec.name not in mapping.sources:
        raise DataError(missing_column_message(spec, mapping, data))
    tasks, frame = list(data.table.tasks), data.table.frame
    hits = np.zeros((len(frame), len(mapping.classes)), dtype=bool)
    for cell in (r for r in mapping.rows if r.source == spec.name):
        column = match_label(cell.label, tasks)
        if column is None:
            raise DataError(f"{mapping.where}:{cell.line}: {cell.label!r} is not a label of source {spec.name!r} "
                            f"(sources[{spec.index}]); its labels (task columns): {_shown(tasks)}")
        hits[:, mapping.classes.index(cell.cls)] |= frame[column].to_numpy() == 1
    distinct = hits.sum(axis=1)
    if not (distinct > 0).any():
        raise DataError(f"{spec.where}: none of its {len(frame)} images has a label of its column in the mapping "
                        f"{mapping.where}")
    ambiguous, rows = np.flatnonzero(distinct > 1), np.flatnonzero(distinct == 1)
    first = int(ambiguous[0]) if ambiguous.size else 0
    ident = frame["id"].iloc[first] if "id" in frame.columns else first
    example = f"{ident} ({', '.join(c for c, h in zip(mapping.classes, hits[first], strict=True) if h)})"
    return Mixed(spec, data, rows, hits[rows].argmax(axis=1), int((distinct == 0).sum()), int(ambiguous.size),
                 example if ambiguous.size else "")


def task_column(cls: str) -> str:
    name = slug(cls)
    return f"class_{name}" if name in RESERVED else name


def build_frame(parts: Sequence[Mixed], classes: Sequence[str], diverse: str) -> pd.DataFrame:
    frames = []
    for part in parts:
        src = part.data.table.frame
        ids = src["id"].astype(str).to_numpy()[part.rows] if "id" in src.columns else part.rows.astype(str)
        source_split = src["split"].astype(str).to_numpy()[part.rows]
        split = source_split if part.spec.split is None else np.full(part.rows.size, part.spec.split, dtype=object)
        frames.append(pd.DataFrame({"id": ids, "split": split, "domain": part.domains(), "source": part.spec.name,
                                    "source_split": source_split, "source_row": part.rows.astype(np.int64),
                                    LABEL: part.labels.astype(np.int64)}))
    frame = pd.concat(frames, ignore_index=True)
    labels = frame[LABEL].to_numpy()
    frame["class"] = np.asarray(classes, dtype=object)[labels]
    frame["diverse"] = (frame["domain"].to_numpy() == diverse).astype(np.int8)
    for k, cls in enumerate(classes):
        frame[task_column(cls)] = (labels == k).astype(np.int8)
    return frame


def combined_store(parts: Sequence[Mixed], cache_dir: Path, key: str) -> ImageStore:
    """The kept rows of each source's store, concatenated into ``<cache_dir>/mixture-<key>.npy`` (written once, under
    a temporary name renamed into place) and memory-mapped."""
    shape = (sum(p.rows.size for p in parts), *parts[0].data.images.array.shape[1:])
    path = Path(cache_dir) / f"{NAME}-{key}.npy"
    try:
        if path.is_file() and (store := ImageStore.open(path)).array.shape == shape:
            return store
    except DataError as exc:  # not a whole .npy file: written again below
        logger.warning("dataset %s: %s; writing it again", NAME, exc)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.partial.npy")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        start = 0
        for part in parts:
            out[start:start + part.rows.size] = part.data.images.array[part.rows]
            start += part.rows.size
        out.flush()
        del out
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return ImageStore.open(path)


@DATASETS.register(NAME)
class Mixture(DatasetSource):
    """Several registered datasets as one multi-class dataset (classes by a mapping file); a = the diverse domain."""

    description = ("several datasets as one multi-class object dataset by a class-mapping file (e.g. Dollar Street "
                   "+ COCO, paper §5.2); a = the diverse domain")
    needs_root = False
    carve_pretrain = ("give one source 'split: pretrain' in dataset.params.sources (ALL its images become the "
                      "'pretrain' pool, e.g. {name: geode, root: /data/geode, split: pretrain}, with a column for "
                      "it in the mapping), or set a 'pretrain_share' in a source's params (e.g. "
                      "sources[0].params.pretrain_share: 0.2); a source's 'split: pretrain_geode' makes a pool of "
                      "that name, for a base's 'pool: pretrain_geode'")
    PARAMS: ClassVar[dict[str, Any]] = {"sources": None, "mapping": "paper", "diverse": None, "ambiguous": "drop"}
    """Its own parameters; the decoding parameters of ``COMMON_PARAMS`` given here go to every source (a source's
    own ``params`` win)."""

    def tiny_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every source's params as that dataset's own :meth:`tiny_params` makes them."""
        out = dict(params)
        if isinstance(params.get("sources"), list):
            out["sources"] = [
                {**e, "params": DATASETS.get(e["name"])().tiny_params(dict(e.get("params") or {}))}
                if isinstance(e, Mapping) and e.get("name") in DATASETS and e.get("name") != NAME else e
                for e in params["sources"]]
        return out

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        allowed = {**COMMON_PARAMS, **self.PARAMS}
        for key in params:
            if key not in allowed:
                raise DataError(f"dataset {NAME!r}: unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}"
                                f" (a source's own parameters go in its entry of 'sources', under 'params')")
        opts = {**self.PARAMS, **params}
        if opts["ambiguous"] not in AMBIGUOUS:
            raise DataError(f"dataset {NAME!r}: parameter 'ambiguous' must be one of {', '.join(AMBIGUOUS)}; got "
                            f"{opts['ambiguous']!r}")
        specs = parse_sources(opts["sources"], root, {k: v for k, v in params.items() if k in COMMON_PARAMS})
        mapping = read_mapping(opts["mapping"], root)
        names = [s.name for s in specs]
        stray = [s for s in mapping.sources if s not in names]
        if stray:
            raise DataError(f"dataset {NAME!r}: the mapping {mapping.where} has a column for {', '.join(stray)}, "
                            f"which is not among the sources ({', '.join(names)}); add the source to 'sources' "
                            f"or use a mapping without that column")
        for spec in specs:  # before loading the others (the message lists the source's labels, so load it)
            if spec.name not in mapping.sources:
                raise DataError(missing_column_message(spec, mapping, load_source(spec, cache_dir, resolution)))

        parts = [mix_source(spec, load_source(spec, cache_dir, resolution), mapping) for spec in specs]
        shapes = {p.spec.name: tuple(p.data.images.array.shape[1:]) for p in parts}
        if len(set(shapes.values())) > 1:
            shown = ", ".join(f"{n}: {s[0]}×{s[1]}×{s[2]}" for n, s in shapes.items())
            raise DataError(f"dataset {NAME!r}: the sources' images differ in size or channels ({shown}); give "
                            f"them the same 'channels' (a parameter of the mixture passes it to every source)")
        ambiguous = [p for p in parts if p.ambiguous]
        if ambiguous:
            counts = "; ".join(f"{p.ambiguous} of {p.spec.name}, e.g. {p.example}" for p in ambiguous)
            total = sum(p.ambiguous for p in ambiguous)
            if opts["ambiguous"] == "error":
                raise DataError(f"dataset {NAME!r}: {total} image(s) have labels of two or more distinct classes of "
                                f"the mapping {mapping.where} ({counts}); set ambiguous: drop to drop them, or "
                                f"map those labels to one class")
            logger.warning("dataset %s: dropped %d ambiguous image(s) (labels of two or more distinct classes): %s",
                           NAME, total, counts)
        for p in parts:
            logger.info("dataset %s: %s: %d of %d images kept (%d without a mapped label, %d ambiguous)%s", NAME,
                        p.spec.name, p.rows.size, len(p.data.table), p.unmapped, p.ambiguous,
                        f", all in pool {p.spec.split!r}" if p.spec.split else "")

        domains = list(dict.fromkeys(d for p in parts for d in p.domains().tolist()))
        first = parts[0].data.table.frame
        default = str(first["domain"].iloc[0]) if "domain" in first.columns and len(first) else specs[0].name
        diverse = default if opts["diverse"] is None else str(opts["diverse"])
        if diverse not in domains:
            raise DataError(f"dataset {NAME!r}: parameter 'diverse' must be the domain of a source; got {diverse!r}; "
                            f"domains: {', '.join(domains)}")
        others = [d for d in domains if d != diverse]
        group_names = ("+".join(others) if others else f"not {diverse}", diverse)
        classes = mapping.classes
        frame = build_frame(parts, classes, diverse)
        tasks = tuple(task_column(c) for c in classes)
        inputs = {"version": MIXTURE_VERSION, "classes": list(classes), "diverse": diverse,
                  "ambiguous": opts["ambiguous"], "mapping": [[r.cls, r.source, r.label] for r in mapping.rows],
                  "sources": [{"name": p.spec.name, "fingerprint": p.data.fingerprint, "split": p.spec.split,
                               "shape": list(p.data.images.array.shape)} for p in parts]}
        key = hashlib.sha256((json.dumps(inputs, sort_keys=True) + "|" + metadata_hash(frame)).encode()).hexdigest()
        store = combined_store(parts, Path(cache_dir), key[:32])
        table = ExampleTable(frame=frame, sensitive="diverse", group_names=group_names, tasks=tasks,
                             attributes=("diverse", *tasks), classes=classes)
        return LoadedDataset(name=NAME, table=table, images=store, fingerprint=key[:16])

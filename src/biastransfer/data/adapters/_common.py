"""Helpers shared by the file-based dataset adapters: parameters, seeded splits, binary columns, assembly."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.cache import RESIZE_POLICIES, decode_images
from biastransfer.data.table import SPLITS, DataError, ExampleTable, LoadedDataset
from biastransfer.seeding import rng

logger = logging.getLogger("biastransfer.data.adapters")

COMMON_PARAMS: ClassVar[dict[str, Any]] = {
    "resize": "center_crop",
    "channels": 3,
    "skip_bad": False,
    "workers": None,
    "progress": True,
}
"""Parameters every file-based adapter accepts (decoding options of
:func:`biastransfer.data.cache.decode_images`)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def parse_params(dataset: str, params: Mapping[str, Any], specific: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``params`` over the defaults (common + ``specific``); an unknown name raises DataError."""
    allowed = {**COMMON_PARAMS, **specific}
    for key in params:
        if key not in allowed:
            raise DataError(f"dataset {dataset!r}: unknown parameter {key!r}; "
                            f"allowed: {', '.join(sorted(allowed))}")
    opts = {**allowed, **params}
    if opts["resize"] not in RESIZE_POLICIES:
        raise DataError(f"dataset {dataset!r}: parameter 'resize' must be one of "
                        f"{', '.join(RESIZE_POLICIES)}; got {opts['resize']!r}")
    if opts["channels"] not in (1, 3):
        raise DataError(f"dataset {dataset!r}: parameter 'channels' must be 1 or 3; got {opts['channels']!r}")
    for key, value in opts.items():
        if key.endswith("_share") and not (isinstance(value, int | float) and 0.0 <= float(value) < 1.0):
            raise DataError(f"dataset {dataset!r}: parameter {key!r} must be a number in [0, 1); "
                            f"got {value!r}")
    return opts


def require_root(dataset: str, root: Path | None) -> Path:
    """The dataset folder, which must exist."""
    if root is None:
        raise DataError(f"dataset {dataset!r} reads local files: give its folder with 'root' (--root)")
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset {dataset!r}: root folder {root} does not exist")
    return root


def find_file(dataset: str, root: Path, name: str, subdirs: Sequence[str] = ("",)) -> Path:
    """``root/<subdir>/name`` for the first subdir where it exists, else DataError naming the path."""
    for sub in subdirs:
        candidate = root / sub / name if sub else root / name
        if candidate.is_file():
            return candidate
    also = [str(root / s / name) for s in subdirs if s]
    extra = f" (also looked in {', '.join(also)})" if also else ""
    raise DataError(f"dataset {dataset!r}: missing metadata file {root / name}{extra}")


def read_csv(dataset: str, path: Path, *, rows_required: bool = True, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv(path, **kwargs)``; a 0-byte file, a file that is not CSV and (with ``rows_required``) one with
    a header but no rows raise DataError naming the file."""
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"dataset {dataset!r}: {path} is empty: it has no header and no rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"dataset {dataset!r}: cannot read {path} as CSV: {exc}") from None
    if rows_required and frame.empty:
        raise DataError(f"dataset {dataset!r}: {path} has no rows (only its header: "
                        f"{', '.join(map(str, frame.columns))})")
    return frame


def slug(text: str) -> str:
    """A column name from a label: lowercase, non-alphanumerics → ``_`` (``dining table``: dining_table)."""
    s = re.sub(r"[^0-9a-zA-Z]+", "_", str(text).strip()).strip("_").lower()
    return s or "unnamed"


def norm_value(text: object) -> str:
    """A loose form of a categorical value for matching (case, spaces, ``_`` and ``-`` ignored)."""
    return re.sub(r"[\s_\-]+", "", str(text)).lower()


def as_list(value: Any) -> list[Any]:
    """A parameter that may be one value or a list, as a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return list(value)
    return [value]


def binary_from_values(dataset: str, values: pd.Series, group1: Sequence[Any], what: str) -> np.ndarray:
    """1 where ``values`` is one of ``group1`` (loose match), 0 elsewhere, -1 where missing."""
    wanted = {norm_value(v) for v in group1}
    present = sorted({str(v) for v in values.dropna().unique()})
    if not wanted & {norm_value(v) for v in present}:
        raise DataError(f"dataset {dataset!r}: none of {list(group1)} occurs in {what}; values present: "
                        f"{', '.join(present[:40])}")
    out = np.array([norm_value(v) in wanted for v in values.fillna("")], dtype=np.int8)
    out[values.isna().to_numpy()] = -1
    return out


def assign_splits(units: np.ndarray | int, shares: Mapping[str, float], *, seed: int, dataset: str,
                  rest: str = "train", component: str = "split") -> np.ndarray:
    """Seeded random assignment of rows to pools.

    ``units`` is a row count, or one group id per row (rows of a group, e.g. one household, go together).
    ``shares`` gives the fraction of units per pool (in order); the remainder goes to ``rest``. The draw
    depends only on (seed, dataset, component) and the number of units.
    """
    groups = np.arange(int(units)) if isinstance(units, int | np.integer) else np.asarray(units)
    uniq, inverse = np.unique(groups, return_inverse=True)
    order = rng(seed, "dataset", dataset, component).permutation(len(uniq))
    unit_split = np.full(len(uniq), rest, dtype=object)
    start = 0
    for pool, share in shares.items():
        if pool not in SPLITS:
            raise DataError(f"unknown split {pool!r}; allowed: {', '.join(SPLITS)}")
        count = round(float(share) * len(uniq))
        unit_split[order[start:start + count]] = pool
        start += count
    if start > len(uniq):
        raise DataError(f"dataset {dataset!r}: split shares {dict(shares)} add up to more than 1")
    return unit_split[inverse]


def carve(split: np.ndarray, source: str, shares: Mapping[str, float], *, seed: int,
          dataset: str) -> np.ndarray:
    """Move seeded random shares of the ``source`` pool into other pools (e.g. pretrain/val out of train)."""
    split = np.asarray(split, dtype=object).copy()
    idx = np.flatnonzero(split == source)
    active = {k: v for k, v in shares.items() if v > 0}
    if active and idx.size:
        sub = assign_splits(idx.size, active, seed=seed, dataset=dataset, rest=source,
                            component=f"carve-{source}")
        split[idx] = sub
    return split


def one_hot(labels: Sequence[Any] | pd.Series, names: Sequence[str] | None = None,
            column: str = "{}") -> dict[str, np.ndarray]:
    """One int8 0/1 column per distinct label (``column`` formats the slugged label into a column name)."""
    values = pd.Series(list(labels), dtype=object)
    cats = list(names) if names is not None else sorted({str(v) for v in values.dropna()})
    out: dict[str, np.ndarray] = {}
    for cat in cats:
        out[column.format(slug(cat))] = (values.astype(str) == str(cat)).to_numpy().astype(np.int8)
    return out


def metadata_hash(frame: pd.DataFrame) -> str:
    """A hash of a table's columns and values."""
    h = hashlib.sha256("|".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def check_one_split_per_image(name: str, split: np.ndarray, paths: Sequence[Path]) -> None:
    """Refuse an image file listed in two pools (a manifest row repeated with another split, say): a base trained
    on ``pretrain`` would then see an image of the finetuning, validation or test pool."""
    first: dict[str, str] = {}
    clashes: dict[str, set[str]] = {}
    for path, pool in zip(paths, split, strict=True):
        ident = os.path.normcase(os.path.abspath(path))
        seen = first.setdefault(ident, pool)
        if seen != pool:
            clashes.setdefault(ident, {seen}).add(pool)
    if clashes:
        shown = "; ".join(f"{p} in {', '.join(sorted(s))}" for p, s in list(clashes.items())[:5])
        raise DataError(f"dataset {name!r}: {len(clashes)} image file(s) are listed in more than one split, e.g. "
                        f"{shown}; give every image one split (pools must be disjoint)")


def assemble(name: str, frame: pd.DataFrame, paths: Sequence[Path], *, sensitive: str,
             group_names: tuple[str, str], tasks: Sequence[str], cache_dir: Path, resolution: int,
             opts: Mapping[str, Any], attributes: Sequence[str] | None = None,
             classes: Sequence[str] = ()) -> LoadedDataset:
    """Decode ``paths`` through the image cache, drop the rows of bad images and build the LoadedDataset."""
    if len(frame) != len(paths):
        raise AssertionError("frame and paths differ in length")
    if len(frame) == 0:
        raise DataError(f"dataset {name!r}: no examples found")
    bad_split = sorted(set(frame["split"]) - set(SPLITS))
    if bad_split:
        raise DataError(f"dataset {name!r}: unknown split value(s) {bad_split}; allowed: {', '.join(SPLITS)}")
    check_one_split_per_image(name, frame["split"].to_numpy(), paths)
    decoded = decode_images(list(paths), cache_dir=Path(cache_dir), resolution=resolution,
                            resize=opts["resize"], channels=opts["channels"], skip_bad=opts["skip_bad"],
                            workers=opts["workers"], progress=opts["progress"], name=name)
    store, kept, dropped = decoded
    if dropped:
        frame = frame.iloc[kept].reset_index(drop=True)
        logger.warning("dataset %s: dropped %d bad image(s), e.g. %s (%s); recorded in %s", name,
                       len(dropped), dropped[0][0], dropped[0][1], decoded.cache_path.with_suffix(".json"))
    else:
        frame = frame.reset_index(drop=True)
    tasks = tuple(t for t in dict.fromkeys(tasks) if t != sensitive)
    attrs = tuple(dict.fromkeys([sensitive, *tasks, *(attributes or ())]))
    table = ExampleTable(frame=frame, sensitive=sensitive, group_names=tuple(group_names),  # type: ignore[arg-type]
                         tasks=tasks, attributes=attrs, classes=tuple(classes))
    fp = hashlib.sha256(f"{name}|{metadata_hash(frame)}|{store.fingerprint()}".encode()).hexdigest()[:16]
    return LoadedDataset(name=name, table=table, images=store, fingerprint=fp)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, case-insensitive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

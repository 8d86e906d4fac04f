"""CelebA (Liu et al. 2015) in its published layout: aligned JPEGs plus the attribute and partition lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.adapters._common import assemble, carve, find_file, parse_params, require_root
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import DataError, LoadedDataset

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
SUBDIRS = ("", "Anno", "Eval", "celeba")
"""Where the metadata files are looked for under root (flat, the Google-Drive ``Anno``/``Eval`` folders, or
torchvision's ``celeba`` folder)."""
IMAGE_PARENTS = ("", "Img", "celeba")
PARTITIONS = {0: "train", 1: "val", 2: "test"}
"""Official partitions; the official *test* partition is our test split (docs/protocols.md §9: not the val one)."""

SENSITIVE = "Female"
GROUP_NAMES = ("Men", "Women")


def _lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read().splitlines()


def parse_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Parse ``list_attr_celeba.txt``: (filenames, attribute names, int8 matrix of 1/-1).

    Format: line 1 the image count, line 2 the attribute names, then ``filename v1 ... vK`` per image
    (whitespace-separated, values 1 or -1). Errors name the file and the 1-based line.
    """
    lines = _lines(path)
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line; the file has "
                        f"{len(lines)} line(s)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}:1: expected the image count, got {lines[0].strip()[:60]!r}") from None
    names = lines[1].split()
    if not names:
        raise DataError(f"{path}:2: no attribute names")
    rows = [(i + 3, line.split()) for i, line in enumerate(lines[2:]) if line.strip()]
    width = len(names) + 1
    for lineno, tokens in rows:
        if len(tokens) != width:
            raise DataError(f"{path}:{lineno}: expected a file name and {len(names)} values, got "
                            f"{len(tokens)} field(s) (truncated or malformed line)")
    files = [tokens[0] for _, tokens in rows]
    text = np.array([tokens[1:] for _, tokens in rows], dtype="<U4").reshape(len(rows), len(names))
    ok = (text == "1") | (text == "-1")
    if not ok.all():
        r, k = (int(x[0]) for x in np.nonzero(~ok))
        raise DataError(f"{path}:{rows[r][0]}: value of {names[k]} must be 1 or -1, "
                        f"got {rows[r][1][k + 1]!r}")
    values = np.where(text == "1", 1, -1).astype(np.int8)
    if len(rows) != count:
        last = rows[-1][0] if rows else 2
        raise DataError(f"{path}: the header (line 1) says {count} images but the file has {len(rows)} rows, "
                        f"ending at line {last} (truncated file?)")
    return files, names, values


def parse_partition(path: Path) -> dict[str, int]:
    """Parse ``list_eval_partition.txt`` (``filename 0|1|2`` per line) into {filename: partition}."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{lineno}: expected 'filename 0|1|2', got {line.strip()[:80]!r}")
        out[tokens[0]] = int(tokens[1])
    return out


@DATASETS.register("celeba")
class CelebA(DatasetSource):
    """CelebA: 202,599 aligned faces, 40 binary attributes; a = Female (``Male`` inverted, a=1 Women)."""

    description = "CelebA faces, 40 attributes; a = Female (Women vs Men); official train/val/test partitions"
    needs_root = True
    carve_pretrain = ("set dataset.params.pretrain_share (e.g. 0.2: a seeded share of the official train "
                      "partition becomes 'pretrain')")
    PARAMS: ClassVar[dict[str, Any]] = {"pretrain_share": 0.0, "seed": 0, "sensitive": SENSITIVE}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = parse_params("celeba", params, self.PARAMS)
        root = require_root("celeba", root)
        attr_path = find_file("celeba", root, ATTR_FILE, SUBDIRS)
        part_path = find_file("celeba", root, PARTITION_FILE, SUBDIRS)
        image_dir = next((root / p / IMAGE_DIR for p in IMAGE_PARENTS if (root / p / IMAGE_DIR).is_dir()),
                         None)
        if image_dir is None:
            raise DataError(f"dataset 'celeba': missing image folder {root / IMAGE_DIR}")
        files, names, values = parse_attributes(attr_path)
        partition = parse_partition(part_path)
        missing = [f for f in files if f not in partition]
        if missing:
            raise DataError(f"{part_path}: no partition for {len(missing)} image(s) of {attr_path.name}, "
                            f"e.g. {missing[0]}")
        frame = pd.DataFrame({"id": files})
        for k, name in enumerate(names):
            frame[name] = (values[:, k] == 1).astype(np.int8)
        if "Male" not in frame.columns:
            raise DataError(f"{attr_path}:2: no 'Male' attribute; attributes: {', '.join(names)}")
        frame.insert(1, SENSITIVE, (1 - frame["Male"]).astype(np.int8))
        frame = frame.drop(columns=["Male"])
        split = np.array([PARTITIONS[partition[f]] for f in files], dtype=object)
        split = carve(split, "train", {"pretrain": float(opts["pretrain_share"])}, seed=int(opts["seed"]),
                      dataset="celeba")
        frame.insert(1, "split", split)
        sensitive = opts["sensitive"]
        binary = [c for c in frame.columns if c not in ("id", "split")]
        if sensitive not in binary:
            raise DataError(f"dataset 'celeba': parameter 'sensitive' names no attribute: {sensitive!r}; "
                            f"allowed: {', '.join(binary)}")
        group_names = GROUP_NAMES if sensitive == SENSITIVE else (f"not {sensitive}", sensitive)
        tasks = [c for c in binary if c != sensitive]
        return assemble("celeba", frame, [image_dir / f for f in files], sensitive=sensitive,
                        group_names=group_names, tasks=tasks, cache_dir=cache_dir, resolution=resolution,
                        opts=opts)

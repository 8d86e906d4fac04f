"""ImageNet-style class folders: ``root/<split>/<class>/*`` or ``root/<class>/*`` (then a seeded split).

Tasks are one-vs-rest per class. The sensitive attribute comes from one of two parameters:

- ``group_of_class``: a mapping ``{class: 0 or 1}`` (every class must be listed), so a is a property of the
  class (e.g. which of two super-categories it belongs to);
- ``sensitive_csv``: a CSV (relative to root, or absolute) with columns ``path`` (image path relative to root)
  and ``a`` (0/1) giving a per-image attribute; images not listed are an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.adapters._common import (
    IMAGE_EXTENSIONS,
    assemble,
    assign_splits,
    carve,
    list_images,
    parse_params,
    read_csv,
    require_root,
    slug,
)
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import SPLITS, DataError, LoadedDataset

RESERVED = {"id", "split", "path", "label", "a"}

log = logging.getLogger(__name__)


def scan(root: Path) -> tuple[list[tuple[str | None, str, Path]], bool]:
    """(split or None, class, file) for every image under root, and whether the layout has split folders.

    A class folder without images (or a split folder without class folders) is named in a warning and left
    out; when no image or fewer than two classes remain, :class:`DataError` names the empty folders."""
    if not root.is_dir():
        raise DataError(f"dataset 'imagefolder': root {root} is a file; give the folder that holds the class folders")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    has_splits = any(d.name in SPLITS for d in subdirs)
    found: list[tuple[str | None, str, Path]] = []
    empty: list[Path] = []
    if has_splits:
        others = [d.name for d in subdirs if d.name not in SPLITS]
        if others:
            raise DataError(f"dataset 'imagefolder': {root} mixes split folders with other folders "
                            f"{others[:5]}; split folders must be among {', '.join(SPLITS)}")
        for split_dir in subdirs:
            class_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
            if not class_dirs:
                empty.append(split_dir)
            for class_dir in class_dirs:
                images = list_images(class_dir)
                empty += [] if images else [class_dir]
                found += [(split_dir.name, class_dir.name, f) for f in images]
    else:
        for class_dir in subdirs:
            images = list_images(class_dir)
            empty += [] if images else [class_dir]
            found += [(None, class_dir.name, f) for f in images]
    shown = ", ".join(f"{d.relative_to(root).as_posix()}/" for d in empty[:10]) + (" …" if len(empty) > 10 else "")
    if not found:
        also = f"; these folders have none: {shown}" if empty else ""
        raise DataError(f"dataset 'imagefolder': no images under {root} (expected root/<class>/*.jpg or "
                        f"root/<split>/<class>/*.jpg, extensions {' '.join(IMAGE_EXTENSIONS)}){also}")
    classes = sorted({c for _, c, _ in found})
    if len(classes) < 2:
        also = f" (these folders have no images: {shown})" if empty else ""
        raise DataError(f"dataset 'imagefolder': only the class {classes[0]!r} has images under {root}{also}; "
                        "the tasks are one class against the rest, so at least two classes need images")
    if empty:
        log.warning("dataset 'imagefolder': %d folder(s) under %s have no image files (%s) and are left out: %s",
                    len(empty), root, " ".join(IMAGE_EXTENSIONS), shown)
    return found, has_splits


@DATASETS.register("imagefolder")
class ImageFolder(DatasetSource):
    """Images in class folders; one-vs-rest task per class; a from ``group_of_class`` or ``sensitive_csv``."""

    description = "class folders root/[split/]class/*; tasks one-vs-rest; a from group_of_class or a CSV"
    needs_root = True
    carve_pretrain = ("set dataset.params.pretrain_share (e.g. 0.2: a seeded share of train becomes "
                      "'pretrain'), or add a pretrain/ split folder")
    PARAMS: ClassVar[dict[str, Any]] = {"group_of_class": None, "sensitive_csv": None,
                                        "group_names": ["a=0", "a=1"], "val_share": 0.1, "test_share": 0.2,
                                        "pretrain_share": 0.0, "seed": 0}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = parse_params("imagefolder", params, self.PARAMS)
        root = require_root("imagefolder", root)
        found, has_splits = scan(root)
        rel = [f.relative_to(root).as_posix() for _, _, f in found]
        labels = [c for _, c, _ in found]
        frame = pd.DataFrame({"id": rel, "label": labels})
        seed = int(opts["seed"])
        if has_splits:
            split = np.array([s for s, _, _ in found], dtype=object)
            if not (split == "val").any():
                split = carve(split, "train", {"val": float(opts["val_share"])}, seed=seed,
                              dataset="imagefolder")
            split = carve(split, "train", {"pretrain": float(opts["pretrain_share"])}, seed=seed,
                          dataset="imagefolder")
        else:
            shares = {"test": float(opts["test_share"]), "val": float(opts["val_share"]),
                      "pretrain": float(opts["pretrain_share"])}
            split = assign_splits(len(found), shares, seed=seed, dataset="imagefolder")
        frame.insert(1, "split", split)
        frame["a"] = self._sensitive(root, opts, rel, labels)
        classes = sorted(set(labels))
        tasks = []
        for cls in classes:
            col = slug(cls)
            col = f"class_{col}" if col in RESERVED or col in frame.columns else col
            frame[col] = (frame["label"] == cls).to_numpy().astype(np.int8)
            tasks.append(col)
        names = list(opts["group_names"])
        if len(names) != 2:
            raise DataError(f"dataset 'imagefolder': parameter 'group_names' must list 2 names; "
                            f"got {names!r}")
        return assemble("imagefolder", frame, [f for _, _, f in found], sensitive="a",
                        group_names=(str(names[0]), str(names[1])), tasks=tasks, cache_dir=cache_dir,
                        resolution=resolution, opts=opts)

    @staticmethod
    def _sensitive(root: Path, opts: dict[str, Any], rel: list[str], labels: list[str]) -> np.ndarray:
        mapping, csv = opts["group_of_class"], opts["sensitive_csv"]
        if (mapping is None) == (csv is None):
            raise DataError("dataset 'imagefolder': give exactly one of the parameters 'group_of_class' "
                            "(a mapping class → 0/1) or 'sensitive_csv' (a CSV with columns path, a)")
        if mapping is not None:
            if not isinstance(mapping, dict):
                raise DataError("dataset 'imagefolder': parameter 'group_of_class' must be a mapping "
                                "class → 0/1")
            missing = sorted(set(labels) - set(map(str, mapping)))
            if missing:
                raise DataError(f"dataset 'imagefolder': parameter 'group_of_class' has no group for "
                                f"class(es) {', '.join(missing[:10])}")
            groups = {str(k): int(v) for k, v in mapping.items()}
            bad = {k: v for k, v in groups.items() if v not in (0, 1)}
            if bad:
                raise DataError(f"dataset 'imagefolder': parameter 'group_of_class' values must be 0 or 1; "
                                f"got {bad}")
            return np.array([groups[c] for c in labels], dtype=np.int8)
        csv_path = Path(csv) if Path(csv).is_absolute() else root / csv
        if not csv_path.is_file():
            raise DataError(f"dataset 'imagefolder': missing sensitive-attribute file {csv_path}")
        table = read_csv("imagefolder", csv_path, rows_required=False, dtype={"path": str})
        for col in ("path", "a"):
            if col not in table.columns:
                raise DataError(f"{csv_path}: no column {col!r}; "
                                f"columns: {', '.join(map(str, table.columns))}")
        values = dict(zip(table["path"].astype(str), table["a"], strict=True))
        out = np.empty(len(rel), dtype=np.int8)
        for i, p in enumerate(rel):
            if p not in values:
                raise DataError(f"{csv_path}: no row for image {p!r}")
            v = values[p]
            if v not in (0, 1):
                raise DataError(f"{csv_path}: value of 'a' for {p!r} must be 0 or 1; got {v!r}")
            out[i] = int(v)
        return out

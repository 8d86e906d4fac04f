"""GeoDE (Ramaswamy et al. 2023) in its published layout: ``index.csv`` and the ``images/`` folder.

``index.csv`` columns read: ``file_path`` (relative to ``images/``), ``object`` (one of 40 classes) and
``region`` (one of 6 world regions); other columns (e.g. ``ip_country``) are kept as metadata when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from biastransfer.data.adapters._common import (
    as_list,
    assemble,
    assign_splits,
    binary_from_values,
    find_file,
    one_hot,
    parse_params,
    read_csv,
    require_root,
)
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import DataError, LoadedDataset

INDEX = "index.csv"
IMAGE_DIR = "images"
REQUIRED = ("file_path", "object")
KEPT = ("region", "ip_country")


@DATASETS.register("geode")
class GeoDE(DatasetSource):
    """GeoDE: 61,940 crowd-sourced images of 40 objects from 6 regions; a = membership of a region group."""

    description = "GeoDE objects (40 tasks); a = image from the region group 'group1' (default Africa)"
    needs_root = True
    carve_pretrain = "set dataset.params.pretrain_share (e.g. 0.2: a seeded share of the images becomes 'pretrain')"
    PARAMS: ClassVar[dict[str, Any]] = {"sensitive_column": "region", "group1": ["Africa"], "val_share": 0.1,
                                        "test_share": 0.2, "pretrain_share": 0.0, "seed": 0}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = parse_params("geode", params, self.PARAMS)
        root = require_root("geode", root)
        index_path = find_file("geode", root, INDEX)
        meta = read_csv("geode", index_path)
        sens_col = str(opts["sensitive_column"])
        for col in (*REQUIRED, sens_col):
            if col not in meta.columns:
                raise DataError(f"{index_path}: no column {col!r}; "
                                f"columns: {', '.join(map(str, meta.columns))}")
        image_dir = root / IMAGE_DIR
        if not image_dir.is_dir():
            raise DataError(f"dataset 'geode': missing image folder {image_dir}")
        frame = pd.DataFrame({"id": meta["file_path"].astype(str).to_numpy()})
        for col in KEPT:
            if col in meta.columns:
                frame[col] = meta[col].astype(str).to_numpy()
        group1 = [str(g) for g in as_list(opts["group1"])]
        frame["region_group"] = binary_from_values("geode", meta[sens_col], group1,
                                                   f"column {sens_col!r} of {index_path}")
        tasks = []
        for col, values in one_hot(meta["object"].astype(str)).items():
            name = col if col not in frame.columns and col not in ("split", "domain") else f"object_{col}"
            frame[name] = values
            tasks.append(name)
        frame["domain"] = "geode"
        split = assign_splits(len(meta), {"test": float(opts["test_share"]), "val": float(opts["val_share"]),
                                          "pretrain": float(opts["pretrain_share"])},
                              seed=int(opts["seed"]), dataset="geode")
        frame.insert(1, "split", split)
        paths = [image_dir / p for p in frame["id"]]
        return assemble("geode", frame, paths, sensitive="region_group",
                        group_names=("other regions", "+".join(group1)), tasks=tasks, cache_dir=cache_dir,
                        resolution=resolution, opts=opts)


"""FairFace (Kärkkäinen & Joo 2021) in its published layout: two label CSVs, ``train/`` and ``val/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.adapters._common import (
    assemble,
    carve,
    find_file,
    parse_params,
    read_csv,
    require_root,
    slug,
)
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import DataError, LoadedDataset

LABEL_FILES = {"train": "fairface_label_train.csv", "val": "fairface_label_val.csv"}
COLUMNS = ("file", "age", "gender", "race")
RACES = ("White", "Black", "East Asian", "Southeast Asian", "Indian", "Middle Eastern", "Latino_Hispanic")
AGES = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70")
YOUNG = ("0-2", "3-9", "10-19", "20-29", "30-39")
"""Age buckets counted as ``Young`` (under 40), as in the paper's code."""


def age_column(bucket: str) -> str:
    """``"0-2"`` → ``age_0_2``; ``"more than 70"`` → ``age_70_plus``."""
    return "age_70_plus" if bucket == "more than 70" else f"age_{slug(bucket)}"


@DATASETS.register("fairface")
class FairFace(DatasetSource):
    """FairFace: 97,698 faces balanced over 7 race groups, with gender and 9 age buckets.

    FairFace publishes train and val only: its val is our **test** split, and ``val`` (and optionally
    ``pretrain``) are carved from its train set with a seeded split.
    """

    description = "FairFace faces; a = Female (default) or a race/age column; its val is our test split"
    needs_root = True
    carve_pretrain = ("set dataset.params.pretrain_share (e.g. 0.2: a seeded share of FairFace's train CSV "
                      "becomes 'pretrain')")
    PARAMS: ClassVar[dict[str, Any]] = {"sensitive": "gender", "val_share": 0.1, "pretrain_share": 0.0,
                                        "seed": 0}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = parse_params("fairface", params, self.PARAMS)
        root = require_root("fairface", root)
        parts = []
        for source, fname in LABEL_FILES.items():
            path = find_file("fairface", root, fname)
            df = read_csv("fairface", path, dtype=str)
            for col in COLUMNS:
                if col not in df.columns:
                    raise DataError(f"{path}: no column {col!r}; columns: {', '.join(df.columns)}")
            df["_source"] = source
            parts.append(df)
        meta = pd.concat(parts, ignore_index=True)
        for col in ("gender", "race", "age"):
            known = {"gender": ("Male", "Female"), "race": RACES, "age": AGES}[col]
            bad = sorted(set(meta[col].dropna()) - set(known))
            if bad:
                raise DataError(f"dataset 'fairface': unknown {col} value(s) {bad[:5]}; "
                                f"expected: {', '.join(known)}")
        frame = pd.DataFrame({"id": meta["file"].to_numpy()})
        frame["Female"] = (meta["gender"] == "Female").to_numpy().astype(np.int8)
        for race in RACES:
            frame[race.replace(" ", "_")] = (meta["race"] == race).to_numpy().astype(np.int8)
        for bucket in AGES:
            frame[age_column(bucket)] = (meta["age"] == bucket).to_numpy().astype(np.int8)
        frame["Young"] = meta["age"].isin(YOUNG).to_numpy().astype(np.int8)
        split = np.where(meta["_source"] == "val", "test", "train").astype(object)
        shares = {"pretrain": float(opts["pretrain_share"]), "val": float(opts["val_share"])}
        split = carve(split, "train", shares, seed=int(opts["seed"]), dataset="fairface")
        frame.insert(1, "split", split)
        binary = [c for c in frame.columns if c not in ("id", "split")]
        sensitive = "Female" if opts["sensitive"] == "gender" else opts["sensitive"]
        if sensitive not in binary:
            raise DataError(f"dataset 'fairface': parameter 'sensitive' must be 'gender' or one of "
                            f"{', '.join(binary)}; got {opts['sensitive']!r}")
        group_names = ("Men", "Women") if sensitive == "Female" else (f"not {sensitive}", sensitive)
        paths = [root / f for f in meta["file"]]
        return assemble("fairface", frame, paths, sensitive=sensitive, group_names=group_names,
                        tasks=[c for c in binary if c != sensitive], cache_dir=cache_dir,
                        resolution=resolution, opts=opts)


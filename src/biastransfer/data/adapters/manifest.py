"""A generic CSV manifest: one row per image with a path, 0/1 label columns and a sensitive attribute column.

Paths are relative to the CSV's folder (or absolute). Label and sensitive values are 0 or 1; an empty cell or
-1 means unknown (stored as -1). A split column (values among pretrain/train/val/test) is optional; without
it the rows are split at random (seeded). ``pretrain_share`` moves a seeded share of the train rows to
``pretrain`` when there is a split column. One image file listed in two splits is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.adapters._common import (
    as_list,
    assemble,
    assign_splits,
    carve,
    parse_params,
    read_csv,
    require_root,
)
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import SPLITS, DataError, LoadedDataset

MANIFEST = "manifest.csv"
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}
_UNKNOWN = {"", "-1", "-1.0", "nan", "none"}

log = logging.getLogger(__name__)


def binary_column(values: pd.Series, column: str, csv_path: Path) -> np.ndarray:
    """A manifest column as int8 0/1 (-1 unknown); other values raise DataError naming column and row."""
    text = values.astype(str).str.strip().str.lower()
    out = np.full(len(text), -1, dtype=np.int8)
    out[text.isin(_TRUE).to_numpy()] = 1
    out[text.isin(_FALSE).to_numpy()] = 0
    bad = ~(text.isin(_TRUE) | text.isin(_FALSE) | text.isin(_UNKNOWN) | values.isna())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{csv_path}: column {column!r} must hold 0/1 (or empty/-1 for unknown); "
                        f"row {row + 2} has {values.iloc[row]!r}")
    return out


def _is_binary(values: pd.Series) -> bool:
    text = values.dropna().astype(str).str.strip().str.lower()
    return len(text) > 0 and bool(text.isin(_TRUE | _FALSE | _UNKNOWN).all())


@DATASETS.register("manifest")
class Manifest(DatasetSource):
    """Images listed in a CSV with 0/1 label columns; the parameters name the columns."""

    description = "a CSV of image paths and 0/1 columns; params name path, sensitive, label, split columns"
    needs_root = True
    carve_pretrain = ("set dataset.params.pretrain_share (e.g. 0.2: a seeded share of the train rows, or of all "
                      "rows without a split column, becomes 'pretrain'), or mark rows 'pretrain' in the split "
                      "column")
    PARAMS: ClassVar[dict[str, Any]] = {"csv": MANIFEST, "path_column": "path", "sensitive": None,
                                        "labels": None, "split_column": "split", "group_names": None,
                                        "val_share": 0.1, "test_share": 0.2, "pretrain_share": 0.0, "seed": 0}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = parse_params("manifest", params, self.PARAMS)
        root = require_root("manifest", root)
        csv_path = root if root.is_file() else root / str(opts["csv"])
        if not csv_path.is_file():
            raise DataError(f"dataset 'manifest': missing metadata file {csv_path}")
        meta = read_csv("manifest", csv_path, dtype=str, keep_default_na=False)
        available = ", ".join(map(str, meta.columns))

        def need(column: str, param: str) -> str:
            if column not in meta.columns:
                raise DataError(f"{csv_path}: no column {column!r} (parameter {param!r}); "
                                f"columns: {available}")
            return column

        if opts["sensitive"] is None:
            raise DataError(f"dataset 'manifest': give parameter 'sensitive' naming the column of the "
                            f"sensitive attribute; columns: {available}")
        path_col = need(str(opts["path_column"]), "path_column")
        sens_col = need(str(opts["sensitive"]), "sensitive")
        split_col = str(opts["split_column"]) if opts["split_column"] else None
        if split_col and split_col not in meta.columns:
            if params.get("split_column"):
                need(split_col, "split_column")
            split_col = None
        reserved = {path_col, sens_col, *([split_col] if split_col else [])}
        if opts["labels"] is None:
            labels = [c for c in meta.columns if c not in reserved and _is_binary(meta[c])]
            skipped = [c for c in meta.columns if c not in reserved and c not in labels]
            if skipped:
                log.warning("dataset 'manifest': %s: column(s) %s hold values other than 0/1 (or empty/-1) and are "
                            "not used as tasks; name a column in the parameter 'labels' to see which value is "
                            "wrong", csv_path, ", ".join(map(repr, skipped)))
        else:
            labels = [need(str(c), "labels") for c in as_list(opts["labels"])]
        if not labels:
            raise DataError(f"{csv_path}: no 0/1 label columns besides the sensitive one; "
                            f"columns: {available}")
        frame = pd.DataFrame({"id": meta[path_col].to_numpy()})
        if split_col:
            split = meta[split_col].str.strip().to_numpy(dtype=object)
            bad = sorted(set(split) - set(SPLITS))
            if bad:
                raise DataError(f"{csv_path}: column {split_col!r} has value(s) {bad[:5]}; "
                                f"allowed: {', '.join(SPLITS)}")
            split = carve(split, "train", {"pretrain": float(opts["pretrain_share"])}, seed=int(opts["seed"]),
                          dataset="manifest")
        else:
            shares = {"test": float(opts["test_share"]), "val": float(opts["val_share"]),
                      "pretrain": float(opts["pretrain_share"])}
            split = assign_splits(len(meta), shares, seed=int(opts["seed"]), dataset="manifest")
        frame["split"] = split
        frame[sens_col] = binary_column(meta[sens_col], sens_col, csv_path)
        for col in labels:
            frame[col] = binary_column(meta[col], col, csv_path)
        names = opts["group_names"] or [f"{sens_col}=0", f"{sens_col}=1"]
        if len(names) != 2:
            raise DataError(f"dataset 'manifest': parameter 'group_names' must list 2 names; got {names!r}")
        base = csv_path.parent
        paths = [Path(p) if Path(p).is_absolute() else base / p for p in meta[path_col]]
        return assemble("manifest", frame, paths, sensitive=sens_col,
                        group_names=(str(names[0]), str(names[1])),
                        tasks=[c for c in labels if c != sens_col], cache_dir=cache_dir,
                        resolution=resolution, opts=opts)

"""Dollar Street (Gaviria Rojas et al. 2022) in the MLCommons release layout (``dataset_dollarstreet/``).

The metadata file ``images_v2.csv`` has one row per image; the columns read (names overridable with the
``columns`` parameter) are:

=================  =========================================================================================
role               default column and meaning
=================  =========================================================================================
``path``           ``imageRelPath``: image path relative to the ``dataset_dollarstreet`` folder
``topics``         ``topics``: the object label(s), a Python-list literal (``"['toothbrushes']"``) or one name
``income``         ``income``: the household's monthly income (USD, PPP); needed for ``sensitive: income``
``region``         ``region.id``: world region of the household; needed for ``sensitive: region``
``id``             ``id`` (optional; defaults to the path)
``place``          ``place`` (optional): household id; when present, splits keep a household's images together
``country``        ``country.name`` (optional, kept as metadata)
=================  =========================================================================================
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.adapters._common import (
    as_list,
    assemble,
    assign_splits,
    binary_from_values,
    find_file,
    norm_value,
    parse_params,
    read_csv,
    require_root,
    slug,
)
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import DataError, LoadedDataset

METADATA = "images_v2.csv"
DEFAULT_COLUMNS = {"path": "imageRelPath", "topics": "topics", "income": "income", "region": "region.id",
                   "id": "id", "place": "place", "country": "country.name"}
OPTIONAL_ROLES = ("id", "place", "country")

DOLLARSTREET_TO_COCO: dict[str, str] = {
    "beds": "bed", "kids_bed": "bed", "books": "book", "bowls": "bowl", "cars": "car", "cups": "cup",
    "kitchen_sinks": "sink", "motorcycles": "motorcycle", "ovens": "oven", "refrigerators": "refrigerator",
    "sofas": "couch", "tvs": "tv", "toilets": "toilet", "toothbrushes": "toothbrush", "wall_clocks": "clock",
}
"""The 15 Dollar Street topics the paper maps onto COCO categories (its released code), topic → COCO name."""

RESERVED = {"id", "split", "path", "domain", "income", "income_bucket", "region", "country", "place"}


def parse_topics(value: object) -> list[str]:
    """A topics cell as a list: a Python/JSON list literal, or a single name."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise DataError(f"cannot parse topics cell {text[:80]!r} "
                            f"(expected a list like \"['books']\")") from None
        return [str(t) for t in parsed]
    return [text] if text else []


@DATASETS.register("dollarstreet")
class DollarStreet(DatasetSource):
    """Dollar Street household objects; a = lower income (default) or a region group; seeded splits."""

    description = "Dollar Street objects (one task per topic); a = lower income or a region group"
    needs_root = True
    carve_pretrain = ("set dataset.params.pretrain_share (e.g. 0.2: a seeded share of the households (or "
                      "images) becomes 'pretrain')")
    PARAMS: ClassVar[dict[str, Any]] = {
        "metadata": METADATA, "columns": None, "sensitive": "income", "income_threshold": None,
        "group1": ["af"], "topics": None, "coco_labels": False, "val_share": 0.1, "test_share": 0.2,
        "pretrain_share": 0.0, "seed": 0,
    }

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = parse_params("dollarstreet", params, self.PARAMS)
        root = require_root("dollarstreet", root)
        if not (root / opts["metadata"]).is_file() and (root / "dataset_dollarstreet").is_dir():
            root = root / "dataset_dollarstreet"
        meta_path = find_file("dollarstreet", root, str(opts["metadata"]))
        meta = read_csv("dollarstreet", meta_path)
        columns = {**DEFAULT_COLUMNS, **(opts["columns"] or {})}
        unknown_roles = set(columns) - set(DEFAULT_COLUMNS)
        if unknown_roles:
            raise DataError(f"dataset 'dollarstreet': parameter 'columns' has unknown role(s) "
                            f"{sorted(unknown_roles)}; allowed: {', '.join(DEFAULT_COLUMNS)}")
        sensitive_kind = opts["sensitive"]
        if sensitive_kind not in ("income", "region"):
            raise DataError(f"dataset 'dollarstreet': parameter 'sensitive' must be 'income' or 'region'; "
                            f"got {sensitive_kind!r}")
        needed = ["path", "topics", sensitive_kind]
        for role in needed:
            if columns[role] not in meta.columns:
                raise DataError(f"{meta_path}: no column {columns[role]!r} ({role}); columns: "
                                f"{', '.join(map(str, meta.columns))}")
        topic_lists = [parse_topics(v) for v in meta[columns["topics"]]]
        wanted = as_list(opts["topics"])
        if wanted:
            wanted_norm = {norm_value(t) for t in wanted}
            topic_lists = [[t for t in ts if norm_value(t) in wanted_norm] for ts in topic_lists]
            keep = np.array([bool(ts) for ts in topic_lists])
            if not keep.any():
                raise DataError(f"dataset 'dollarstreet': no image has any of the topics {wanted}")
            meta = meta[keep].reset_index(drop=True)
            topic_lists = [ts for ts, k in zip(topic_lists, keep, strict=True) if k]
        ids = meta[columns["id"]] if columns["id"] in meta.columns else meta[columns["path"]]
        frame = pd.DataFrame({"id": ids.astype(str).to_numpy(), "path": meta[columns["path"]].astype(str)})
        for role in ("country", "region", "place", "income"):
            if columns[role] in meta.columns:
                frame[role] = meta[columns[role]].to_numpy()
        if sensitive_kind == "income":
            income = pd.to_numeric(meta[columns["income"]], errors="coerce")
            threshold = opts["income_threshold"]
            threshold = float(income.median()) if threshold is None else float(threshold)
            a = np.where(income.isna(), -1, (income < threshold)).astype(np.int8)
            frame["low_income"] = a
            # The paper's code buckets incomes as round(log(income) / 3), which gives 1, 2 or 3.
            with np.errstate(divide="ignore", invalid="ignore"):
                bucket = np.clip(np.round(np.log(income.clip(lower=1).to_numpy()) / 3), 1, 3)
            frame["income_bucket"] = np.where(income.isna(), -1, bucket).astype(np.int8)
            sensitive = "low_income"
            group_names = (f"income >= {threshold:g}", f"income < {threshold:g}")
        else:
            group1 = [str(g) for g in as_list(opts["group1"])]
            frame["region_group"] = binary_from_values("dollarstreet", meta[columns["region"]], group1,
                                                       f"column {columns['region']!r} of {meta_path}")
            sensitive = "region_group"
            group_names = ("other regions", "+".join(group1))
        all_topics = sorted({t for ts in topic_lists for t in ts})
        tasks: list[str] = []
        for topic in all_topics:
            col = slug(topic)
            col = f"topic_{col}" if col in RESERVED or col in frame.columns else col
            frame[col] = np.array([topic in ts for ts in topic_lists], dtype=np.int8)
            tasks.append(col)
        if opts["coco_labels"]:
            mapping = {norm_value(k): v for k, v in DOLLARSTREET_TO_COCO.items()}
            for coco_name in sorted(set(DOLLARSTREET_TO_COCO.values())):
                col = slug(coco_name)
                hit = [any(mapping.get(norm_value(t)) == coco_name for t in ts) for ts in topic_lists]
                if col in frame.columns:
                    frame[col] = frame[col] | np.array(hit, dtype=np.int8)
                else:
                    frame[col] = np.array(hit, dtype=np.int8)
                    tasks.append(col)
        frame["domain"] = "dollarstreet"
        has_place = columns["place"] in meta.columns
        groups = meta[columns["place"]].astype(str).to_numpy() if has_place else len(meta)
        split = assign_splits(groups, {"test": float(opts["test_share"]), "val": float(opts["val_share"]),
                                       "pretrain": float(opts["pretrain_share"])},
                              seed=int(opts["seed"]), dataset="dollarstreet")
        frame.insert(1, "split", split)
        paths = [root / p for p in frame["path"]]
        return assemble("dollarstreet", frame, paths, sensitive=sensitive, group_names=group_names,
                        tasks=tasks, cache_dir=cache_dir, resolution=resolution, opts=opts)

"""COCO (Lin et al. 2014) with gender derived from captions, as in the paper (following Zhao et al. 2017).

An image's group comes from the words of its (five) captions: a caption is lowercased, every run of characters
other than ``a-z0-9`` becomes a separator (so ``"man,"`` and ``"man's"`` both give the token ``man``; the
original script split on spaces only and missed words with punctuation attached, docs/protocols.md §9), and the tokens
are matched against :data:`MALE_WORDS` and :data:`FEMALE_WORDS`. Images whose captions use words of only one
list get a=0 (Men) or a=1 (Women); images with words of both lists, of neither, or without captions are
**excluded**.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.adapters._common import (
    as_list,
    assemble,
    carve,
    find_file,
    parse_params,
    require_root,
    slug,
)
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import DataError, LoadedDataset

MALE_WORDS: tuple[str, ...] = ("male", "boy", "man", "gentleman", "boys", "men", "males", "gentlemen")
FEMALE_WORDS: tuple[str, ...] = ("female", "girl", "woman", "lady", "girls", "women", "females", "ladies")
"""The gendered word lists of the paper's released COCO preprocessing (``dataset_files/coco_gender.py``)."""

logger = logging.getLogger(__name__)
_TOKEN = re.compile(r"[a-z0-9]+")
YEARS = (2014, 2017)


def tokens(caption: str) -> set[str]:
    """The lowercased alphanumeric tokens of a caption (punctuation stripped)."""
    return set(_TOKEN.findall(caption.lower()))


def caption_gender(captions: Iterable[str], male: Iterable[str] = MALE_WORDS,
                   female: Iterable[str] = FEMALE_WORDS) -> int | None:
    """1 (Women) if the captions use only female words, 0 (Men) if only male words, else None (excluded)."""
    male_set, female_set = set(male), set(female)
    words: set[str] = set()
    for cap in captions:
        words |= tokens(cap)
    m, f = bool(words & male_set), bool(words & female_set)
    if m == f:
        return None
    return 1 if f else 0


def _load_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if key not in data:
            raise DataError(f"{path}: no {key!r} key; keys: {', '.join(data)}")
    return data


@DATASETS.register("coco")
class Coco(DatasetSource):
    """COCO objects (80 binary tasks, one per category), caption-derived gender; official val is our test."""

    description = "COCO 2014/2017 objects (80 tasks); a = Women from caption words; official val as test"
    needs_root = True
    carve_pretrain = ("set dataset.params.pretrain_share (e.g. 0.2: a seeded share of official train becomes "
                      "'pretrain')")
    PARAMS: ClassVar[dict[str, Any]] = {"year": 2014, "val_share": 0.1, "pretrain_share": 0.0, "seed": 0,
                              "male_words": None, "female_words": None}

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        opts = parse_params("coco", params, self.PARAMS)
        root = require_root("coco", root)
        year = int(opts["year"])
        if year not in YEARS:
            raise DataError(f"dataset 'coco': parameter 'year' must be one of {YEARS}; got {opts['year']!r}")
        male = {w.lower() for w in as_list(opts["male_words"])} or set(MALE_WORDS)
        female = {w.lower() for w in as_list(opts["female_words"])} or set(FEMALE_WORDS)
        rows: list[dict[str, Any]] = []
        paths: list[Path] = []
        categories: dict[int, str] | None = None
        excluded = {"both": 0, "neither": 0}
        for source, split_name in (("train", "train"), ("val", "test")):
            inst = _load_json(find_file("coco", root, f"instances_{source}{year}.json", ("annotations", "")))
            caps = _load_json(find_file("coco", root, f"captions_{source}{year}.json", ("annotations", "")))
            cats = {int(c["id"]): str(c["name"]) for c in inst.get("categories", [])}
            if not cats:
                raise DataError(f"dataset 'coco': instances_{source}{year}.json has no categories")
            if categories is None:
                categories = cats
            elif cats != categories:
                raise DataError(f"dataset 'coco': categories differ between train{year} and val{year}")
            image_dir = root / f"{source}{year}"
            if not image_dir.is_dir():
                raise DataError(f"dataset 'coco': missing image folder {image_dir}")
            captions: dict[int, list[str]] = defaultdict(list)
            for ann in caps["annotations"]:
                captions[int(ann["image_id"])].append(str(ann.get("caption", "")))
            objects: dict[int, set[int]] = defaultdict(set)
            for ann in inst["annotations"]:
                objects[int(ann["image_id"])].add(int(ann["category_id"]))
            for img in sorted(inst["images"], key=lambda im: int(im["id"])):
                image_id = int(img["id"])
                words: set[str] = set()
                for cap in captions.get(image_id, ()):
                    words |= tokens(cap)
                m, f = bool(words & male), bool(words & female)
                if m == f:
                    excluded["both" if m else "neither"] += 1
                    continue
                row: dict[str, Any] = {"id": image_id, "split": split_name, "Female": int(f)}
                for cid in objects.get(image_id, ()):
                    if cid not in cats:
                        raise DataError(f"dataset 'coco': annotation of image {image_id} has unknown "
                                        f"category id {cid}")
                    row[cid] = 1
                rows.append(row)
                paths.append(image_dir / str(img["file_name"]))
        assert categories is not None
        logger.info("coco: %d images kept; excluded %d with words of both groups and %d with neither",
                    len(rows), excluded["both"], excluded["neither"])
        if not rows:
            raise DataError("dataset 'coco': no image has captions with words of exactly one gender group")
        names = {cid: slug(name) for cid, name in categories.items()}
        frame = pd.DataFrame(rows)
        for cid in categories:
            if cid not in frame.columns:
                frame[cid] = 0
        frame = frame[["id", "split", "Female", *categories]].rename(columns=names)
        frame[list(names.values())] = frame[list(names.values())].fillna(0).astype(np.int8)
        frame["Female"] = frame["Female"].astype(np.int8)
        frame["domain"] = "coco"
        frame["split"] = carve(frame["split"].to_numpy(), "train",
                               {"pretrain": float(opts["pretrain_share"]), "val": float(opts["val_share"])},
                               seed=int(opts["seed"]), dataset="coco")
        return assemble("coco", frame, paths, sensitive="Female", group_names=("Men", "Women"),
                        tasks=list(names.values()), cache_dir=cache_dir, resolution=resolution, opts=opts)

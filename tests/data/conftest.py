"""Tiny fixtures in the published layouts of the real datasets (a few generated images + exact metadata)."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CELEBA_NAMES = ("5_o_Clock_Shadow", "Blond_Hair", "Eyeglasses", "Male", "Young")


def write_image(path: Path, seed: int, size: tuple[int, int] = (20, 24), fmt: str | None = None) -> Path:
    """A small random RGB image (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return path


@pytest.fixture
def celeba_root(tmp_path: Path) -> Path:
    """CelebA layout: 10 images, list_attr_celeba.txt (5 attributes), list_eval_partition.txt."""
    root = tmp_path / "celeba"
    files = [f"{i:06d}.jpg" for i in range(1, 11)]
    for i, f in enumerate(files):
        write_image(root / "img_align_celeba" / f, i, size=(18, 22))
    # Male: images 1-4 are men; Blond_Hair: images 1, 5, 6, 7; partitions: 6 train, 2 val, 2 test.
    male = [1, 1, 1, 1, -1, -1, -1, -1, -1, -1]
    blond = [1, -1, -1, -1, 1, 1, 1, -1, -1, -1]
    lines = [str(len(files)), " ".join(CELEBA_NAMES) + " "]
    for i, f in enumerate(files):
        values = {"5_o_Clock_Shadow": -1, "Blond_Hair": blond[i], "Eyeglasses": 1 if i % 3 == 0 else -1,
                  "Male": male[i], "Young": 1}
        lines.append(f + " " + " ".join(f"{values[n]:2d}" for n in CELEBA_NAMES))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = [0, 0, 0, 1, 0, 0, 0, 1, 2, 2]
    partition = "".join(f"{f} {p}\n" for f, p in zip(files, parts, strict=True))
    (root / "list_eval_partition.txt").write_text(partition)
    return root


@pytest.fixture
def fairface_root(tmp_path: Path) -> Path:
    """FairFace layout: label CSVs for 8 train and 4 val images plus the image folders."""
    root = tmp_path / "fairface"
    races = ["White", "Black", "East Asian", "Indian", "Latino_Hispanic", "Middle Eastern", "Southeast Asian",
             "White"]
    ages = ["20-29", "0-2", "more than 70", "30-39", "40-49", "3-9", "50-59", "10-19"]
    for part, n in (("train", 8), ("val", 4)):
        rows = ["file,age,gender,race,service_test"]
        for i in range(n):
            write_image(root / part / f"{i + 1}.jpg", i + (100 if part == "val" else 0))
            gender = "Female" if i % 2 == 0 else "Male"
            rows.append(f"{part}/{i + 1}.jpg,{ages[i]},{gender},{races[i]},{'True' if i % 3 else 'False'}")
        (root / f"fairface_label_{part}.csv").write_text("\n".join(rows) + "\n")
    return root


def _coco_json(images: list[dict], annotations: list[dict], categories: list[dict] | None) -> dict:
    data: dict = {"info": {}, "licenses": [], "images": images, "annotations": annotations}
    if categories is not None:
        data["categories"] = categories
    return data


COCO_CATEGORIES = [{"id": 1, "name": "person", "supercategory": "person"},
                   {"id": 62, "name": "chair", "supercategory": "furniture"},
                   {"id": 67, "name": "dining table", "supercategory": "furniture"}]


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    """COCO 2014 layout: instances and captions JSON for train (6 images) and val (3 images)."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    captions = {
        # train
        1: ["A man sitting at a dining table.", "Someone eats."],          # Men
        2: ["A woman, smiling, holds a cup.", "The lady's chair."],         # Women (punctuation attached)
        3: ["A man and a woman talk."],                                     # both → excluded
        4: ["A cat on a chair."],                                           # neither → excluded
        5: ["Two girls at the table"],                                      # Women
        6: ["The gentlemen's club"],                                        # Men ("gentlemen's")
        # val
        7: ["a boy on a chair"],                                            # Men
        8: ["A WOMAN at a dining table!"],                                  # Women
        9: ["A dog."],                                                      # excluded
    }
    objects = {1: [1, 67], 2: [1, 62], 3: [1], 4: [62], 5: [67, 1], 6: [1], 7: [1, 62], 8: [1, 67], 9: []}
    for part, ids in (("train", [1, 2, 3, 4, 5, 6]), ("val", [7, 8, 9])):
        images = []
        for i in ids:
            fname = f"COCO_{part}2014_{i:012d}.jpg"
            write_image(root / f"{part}2014" / fname, i, size=(30, 20))
            images.append({"id": i, "file_name": fname, "width": 30, "height": 20})
        inst = [{"id": 100 * i + k, "image_id": i, "category_id": c, "bbox": [0, 0, 1, 1], "area": 1,
                 "iscrowd": 0} for i in ids for k, c in enumerate(objects[i])]
        caps = [{"id": 1000 * i + k, "image_id": i, "caption": c}
                for i in ids for k, c in enumerate(captions[i])]
        ann = root / "annotations"
        (ann / f"instances_{part}2014.json").write_text(json.dumps(_coco_json(images, inst, COCO_CATEGORIES)))
        (ann / f"captions_{part}2014.json").write_text(json.dumps(_coco_json(images, caps, None)))
    return root


@pytest.fixture
def dollarstreet_root(tmp_path: Path) -> Path:
    """Dollar Street (MLCommons) layout: dataset_dollarstreet/images_v2.csv + assets/."""
    root = tmp_path / "dollarstreet" / "dataset_dollarstreet"
    rows = ["id,country.id,country.name,region.id,topics,place,income,imageRelPath"]
    spec = [("['toothbrushes']", "af", 30.0, "p1"), ("['books', 'bowls']", "af", 45.0, "p1"),
            ("['toothbrushes']", "eu", 3000.0, "p2"), ("['sofas']", "as", 120.0, "p3"),
            ("['books']", "am", 900.0, "p4"), ("['bowls']", "eu", 5000.0, "p5"),
            ("['sofas']", "af", 10.0, "p6"), ("['toothbrushes']", "as", 200.0, "p7")]
    for i, (topics, region, income, place) in enumerate(spec):
        rel = f"assets/{place}/{i}.jpg"
        write_image(root / rel, i)
        rows.append(f'img{i},c{i},Country {i},{region},"{topics}",{place},{income},{rel}')
    (root / "images_v2.csv").write_text("\n".join(rows) + "\n")
    return root.parent


@pytest.fixture
def geode_root(tmp_path: Path) -> Path:
    """GeoDE layout: index.csv + images/<object>/<file>."""
    root = tmp_path / "geode"
    rows = ["file_path,object,region,ip_country,usersupplied_country"]
    spec = [("bag", "Africa"), ("bag", "Europe"), ("bicycle", "Africa"), ("bicycle", "EastAsia"),
            ("jug", "Americas"), ("jug", "Africa"), ("bag", "WestAsia"), ("jug", "SouthEastAsia")]
    for i, (obj, region) in enumerate(spec):
        rel = f"{obj}/{obj}_{i:03d}.jpg"
        write_image(root / "images" / rel, i)
        rows.append(f"{rel},{obj},{region},XX,YY")
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def imagefolder_root(tmp_path: Path) -> Path:
    """Class folders without split folders: cat (4), dog (4), owl (2) images; mixed JPEG and PNG."""
    root = tmp_path / "folder"
    k = 0
    for cls, n in (("cat", 4), ("dog", 4), ("owl", 2)):
        for i in range(n):
            write_image(root / cls / f"{i}.{'png' if i % 2 else 'jpg'}", k)
            k += 1
    return root


@pytest.fixture
def manifest_root(tmp_path: Path) -> Path:
    """A manifest.csv with path, split, female (sensitive), smiling and hat labels (one unknown)."""
    root = tmp_path / "manifest"
    rows = ["path,split,female,smiling,hat"]
    spec = [("train", 1, 1, 0), ("train", 0, 1, 1), ("train", 1, 0, ""), ("train", 0, 0, 0),
            ("val", 1, 1, 0), ("test", 0, 1, 1), ("test", 1, 0, 0)]
    for i, (split, f, s, h) in enumerate(spec):
        write_image(root / "imgs" / f"{i}.png", i)
        rows.append(f"imgs/{i}.png,{split},{f},{s},{h}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """Write ``array`` (uint8) in the idx format (magic 0x00 0x00 0x08 ndim, big-endian dims)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def idx_writer() -> Callable[..., Path]:
    """The :func:`write_idx` helper, for tests that write their own idx files."""
    return write_idx


@pytest.fixture
def fmnist_root(tmp_path: Path) -> Path:
    """Fashion-MNIST idx files (gz): 600 train and 100 test items, labels i % 10, varied intensity."""
    root = tmp_path / "fmnist"
    rng = np.random.default_rng(0)
    for part, n in (("train", 600), ("t10k", 100)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        scale = rng.uniform(0.2, 1.0, size=(n, 1, 1))
        images = (rng.integers(0, 256, size=(n, 28, 28)) * scale).astype(np.uint8)
        write_idx(root / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def image_files(tmp_path: Path) -> Callable[[int], list[Path]]:
    """A factory of n small image files (alternating JPEG/PNG, varied aspect ratios)."""

    def make(n: int, sizes: Sequence[tuple[int, int]] = ((20, 24), (30, 16), (17, 17))) -> list[Path]:
        return [write_image(tmp_path / "imgs" / f"{i:03d}.{'jpg' if i % 2 == 0 else 'png'}", i,
                            size=sizes[i % len(sizes)]) for i in range(n)]

    return make


@pytest.fixture
def mixture_root(dollarstreet_root: Path, coco_root: Path, tmp_path: Path) -> Path:
    """A folder whose relative source roots are the Dollar Street and COCO fixtures, with a 3-class mapping."""
    (tmp_path / "mixture.csv").write_text("class,dollarstreet,coco\nseat,sofas,chair\ntable,books,dining table\n"
                                          "brush,toothbrushes,\n")
    return tmp_path

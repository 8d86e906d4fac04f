"""The ``mixture`` dataset on the tiny Dollar Street, COCO and GeoDE fixtures of tests/data/conftest.py.

The Dollar Street fixture's topics are rewritten (:data:`DS_TOPICS`) so that its 8 images cover the cases of the
mapping :data:`MAPPING`; the COCO fixture keeps 6 images after the caption-gender rule (ids 1, 2, 5, 6 train and
7, 8 test, objects in ``COCO_OBJECTS``); GeoDE has bag (0, 1, 6), bicycle (2, 3) and jug (4, 5, 7).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import biastransfer.data.adapters  # noqa: F401  (registers the adapters)
from biastransfer.cli.datasets import datasets_app
from biastransfer.data.adapters import mixture
from biastransfer.data.adapters.dollarstreet import DOLLARSTREET_TO_COCO
from biastransfer.data.registry import DATASETS, load_dataset
from biastransfer.data.table import LABEL, DataError, LoadedDataset

RES = 8
DECODE = {"progress": False, "workers": 2}

DS_TOPICS = ["['beds']", "['kids_bed']", "['beds', 'kids_bed']", "['books']", "['beds', 'books']", "['bowls']",
             "['books']", "['toothbrushes']"]
"""Topics of Dollar Street images img0…img7: 0-2 bed (2 has beds AND kids_bed: one class, kept), 3 and 6 book,
4 beds+books (two classes: ambiguous), 5 and 7 unmapped (bowls, toothbrushes)."""

MAPPING = """class,dollarstreet,coco,geode
bed,beds,,
bed,kids_bed,,
book,books,,
chair,,chair,
table,,dining table,
bag,,,bag
bicycle,,,bicycle
"""
CLASSES = ("bed", "book", "chair", "table", "bag", "bicycle")

EXPECTED = [  # (domain, id, class) of every kept row, in order: sources in order, each in its own row order
    ("dollarstreet", "img0", "bed"), ("dollarstreet", "img1", "bed"), ("dollarstreet", "img2", "bed"),
    ("dollarstreet", "img3", "book"), ("dollarstreet", "img6", "book"),
    ("coco", "1", "table"), ("coco", "2", "chair"), ("coco", "5", "table"), ("coco", "7", "chair"),
    ("coco", "8", "table"),  # coco 6 has only person: unmapped
    ("geode", "bag/bag_000.jpg", "bag"), ("geode", "bag/bag_001.jpg", "bag"),
    ("geode", "bicycle/bicycle_002.jpg", "bicycle"), ("geode", "bicycle/bicycle_003.jpg", "bicycle"),
    ("geode", "bag/bag_006.jpg", "bag"),  # jugs 4, 5, 7: unmapped
]


@pytest.fixture
def roots(dollarstreet_root: Path, coco_root: Path, geode_root: Path, tmp_path: Path) -> dict[str, Path]:
    """The three fixture folders (Dollar Street with :data:`DS_TOPICS`) and the mapping file ``mapping``."""
    csv = dollarstreet_root / "dataset_dollarstreet" / "images_v2.csv"
    meta = pd.read_csv(csv)
    meta["topics"] = DS_TOPICS
    meta.to_csv(csv, index=False)
    (tmp_path / "mapping.csv").write_text(MAPPING)
    return {"dollarstreet": dollarstreet_root, "coco": coco_root, "geode": geode_root,
            "mapping": tmp_path / "mapping.csv"}


def sources(roots: dict[str, Path], geode_split: str | None = "pretrain_geode", **extra: Any) -> list[dict]:
    out: list[dict] = [{"name": "dollarstreet", "root": str(roots["dollarstreet"])},
                       {"name": "coco", "root": str(roots["coco"])}]
    if geode_split != "none":
        geode: dict[str, Any] = {"name": "geode", "root": str(roots["geode"])}
        if geode_split is not None:
            geode["split"] = geode_split
        out.append(geode)
    for entry in out:
        entry.update(extra.get(entry["name"], {}))
    return out


def load_mix(roots: dict[str, Path], tmp_path: Path, *, srcs: list[dict] | None = None, **params: Any
             ) -> LoadedDataset:
    params = {"sources": sources(roots) if srcs is None else srcs, "mapping": str(roots["mapping"]), **DECODE,
              **params}
    return load_dataset("mixture", cache_dir=tmp_path / "cache", resolution=RES, params=params)


def load_source(name: str, roots: dict[str, Path], tmp_path: Path) -> LoadedDataset:
    return load_dataset(name, root=roots[name], cache_dir=tmp_path / "cache", resolution=RES, params=DECODE)


# ---------------------------------------------------------------------------------------------------- classes


def test_classes_labels_and_counts_per_domain(roots: dict[str, Path], tmp_path: Path) -> None:
    data = load_mix(roots, tmp_path)
    t, f = data.table, data.table.frame
    assert data.name == "mixture" and t.classes == CLASSES
    assert list(zip(f["domain"], f["id"], f["class"], strict=True)) == EXPECTED
    assert list(f[LABEL]) == [CLASSES.index(c) for _, _, c in EXPECTED]
    assert f[LABEL].dtype == np.int64 and t.is_multiclass(LABEL)
    counts = f.groupby(["domain", "class"]).size().to_dict()
    assert counts == {("dollarstreet", "bed"): 3, ("dollarstreet", "book"): 2, ("coco", "chair"): 2,
                      ("coco", "table"): 3, ("geode", "bag"): 3, ("geode", "bicycle"): 2}
    # one binary task per class, named by its slug, 1 exactly on that class's rows
    assert t.tasks == CLASSES
    for k, cls in enumerate(CLASSES):
        assert f[cls].dtype == np.int8 and list(f[cls]) == list((f[LABEL] == k).astype(int))
    assert set(t.attributes) == {"diverse", *CLASSES, LABEL}


def test_beds_and_kids_bed_are_one_class(roots: dict[str, Path], tmp_path: Path) -> None:
    f = load_mix(roots, tmp_path).table.frame
    ds = f[f["domain"] == "dollarstreet"].set_index("id")["class"]
    assert ds["img0"] == ds["img1"] == "bed"  # beds; kids_bed
    assert ds["img2"] == "bed"                 # beds AND kids_bed: one distinct class, not ambiguous


def test_ambiguous_images_are_dropped_and_counted_or_refused(roots: dict[str, Path], tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="biastransfer"):
        data = load_mix(roots, tmp_path)
    assert "img4" not in set(data.table.frame["id"])
    assert "dropped 1 ambiguous image(s)" in caplog.text and "img4 (bed, book)" in caplog.text
    assert "dollarstreet: 5 of 8 images kept (2 without a mapped label, 1 ambiguous)" in caplog.text
    with pytest.raises(DataError, match=r"1 image\(s\) have labels of two or more distinct classes .*1 of "
                                        r"dollarstreet, e\.g\. img4 \(bed, book\).*ambiguous: drop"):
        load_mix(roots, tmp_path, ambiguous="error")
    with pytest.raises(DataError, match=r"parameter 'ambiguous' must be one of drop, error; got 'keep'"):
        load_mix(roots, tmp_path, ambiguous="keep")


def test_an_image_without_a_mapped_label_is_dropped(roots: dict[str, Path], tmp_path: Path) -> None:
    f = load_mix(roots, tmp_path).table.frame
    assert not {"img5", "img7"} & set(f.loc[f["domain"] == "dollarstreet", "id"])
    assert "6" not in set(f.loc[f["domain"] == "coco", "id"])  # only a person
    assert (f[LABEL] >= 0).all()


# ---------------------------------------------------------------------------------------------------- a, splits


def test_diverse_column_and_group_names(roots: dict[str, Path], tmp_path: Path) -> None:
    data = load_mix(roots, tmp_path)
    t, f = data.table, data.table.frame
    assert t.sensitive == "diverse" and t.group_names == ("coco+geode", "dollarstreet")  # default: first source
    assert f["diverse"].dtype == np.int8
    assert list(f["diverse"]) == list((f["domain"] == "dollarstreet").astype(int))
    other = load_mix(roots, tmp_path, diverse="coco")
    assert other.table.group_names == ("dollarstreet+geode", "coco")
    assert list(other.table.frame["diverse"]) == list((f["domain"] == "coco").astype(int))
    with pytest.raises(DataError, match=r"'diverse' must be the domain of a source; got 'mars'; domains: "
                                        r"dollarstreet, coco, geode"):
        load_mix(roots, tmp_path, diverse="mars")


def test_sources_keep_their_splits_and_a_split_override_takes_all_rows(roots: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    f = load_mix(roots, tmp_path).table.frame
    ds = load_source("dollarstreet", roots, tmp_path).table.frame.set_index("id")["split"]
    mine = f[f["domain"] == "dollarstreet"]
    assert list(mine["split"]) == [ds[i] for i in mine["id"]] == list(mine["source_split"])
    coco = f[f["domain"] == "coco"]
    assert list(coco["split"]) == ["train", "train", "train", "test", "test"]  # official val is coco's test
    geode = f[f["domain"] == "geode"]
    assert set(geode["split"]) == {"pretrain_geode"}
    geode_src = load_source("geode", roots, tmp_path).table.frame.set_index("id")["split"]
    assert list(geode["source_split"]) == [geode_src[i] for i in geode["id"]]
    assert not (f.loc[f["domain"] != "geode", "split"] == "pretrain_geode").any()
    # without the override GeoDE keeps its own seeded split
    free = load_mix(roots, tmp_path, srcs=sources(roots, geode_split=None)).table.frame
    assert list(free.loc[free["domain"] == "geode", "split"]) == list(geode["source_split"])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_split_override_onto_a_finetuning_or_evaluation_pool_is_refused(roots: dict[str, Path], tmp_path: Path,
                                                                         split: str) -> None:
    with pytest.raises(DataError, match=rf"sources\[2\] \(geode\): 'split: {split}' is refused.*pool: "
                                        r"pretrain_geode"):
        load_mix(roots, tmp_path, srcs=sources(roots, geode_split=split))
    with pytest.raises(DataError, match=r"'split' must be a pool name"):
        load_mix(roots, tmp_path, srcs=sources(roots, geode_split="pre train"))


def test_a_split_override_of_pretrain_gives_the_pool_a_trained_base_uses(roots: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    data = load_mix(roots, tmp_path, srcs=sources(roots, geode_split="pretrain"))
    assert list(data.table.split_indices("pretrain")) == list(range(10, 15))


# ---------------------------------------------------------------------------------------------------- the mapping


def test_unknown_label_lists_the_labels_of_its_source(roots: dict[str, Path], tmp_path: Path) -> None:
    roots["mapping"].write_text(MAPPING.replace("chair,,chair,", "chair,,armchair,"))
    with pytest.raises(DataError, match=r"mapping\.csv:5: 'armchair' is not a label of source 'coco' \(sources\[1\]"
                                        r"\); its labels \(task columns\): person, chair, dining_table"):
        load_mix(roots, tmp_path)


def test_labels_match_after_slug_normalisation(roots: dict[str, Path], tmp_path: Path) -> None:
    roots["mapping"].write_text(MAPPING.replace("kids_bed", "Kids Bed").replace("dining table", "dining_table"))
    f = load_mix(roots, tmp_path).table.frame
    assert list(f["class"]) == [c for _, _, c in EXPECTED]
    assert mixture.match_label("income", ["topic_income", "books"]) == "topic_income"  # an adapter's prefix
    assert mixture.match_label("id", ["object_id"]) == "object_id"
    assert mixture.match_label("sofa", ["sofas"]) is None


def test_a_source_without_a_mapping_column_is_refused(roots: dict[str, Path], tmp_path: Path) -> None:
    no_coco = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != 2)
                        for line in MAPPING.splitlines() if "chair" not in line and "table" not in line)
    roots["mapping"].write_text(no_coco + "\n")
    with pytest.raises(DataError, match=r"sources\[1\] \(coco\): the mapping .*mapping\.csv has no column 'coco' "
                                        r"\(its columns: class,dollarstreet,geode\).*labels: person, chair"):
        load_mix(roots, tmp_path)


def test_a_pool_source_without_a_mapping_column_says_to_add_one(roots: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_mix(roots, tmp_path, mapping="paper", srcs=sources(roots))
    message = str(info.value)
    assert message.startswith("dataset 'mixture': sources[2] (geode): the mapping paper_15_objects.csv (the "
                              "bundled mapping 'paper') has no column 'geode'"), message
    for part in ("has no column 'geode'", "all bound for the pool 'pretrain_geode'", "Copy the mapping file",
                 "(class,dollarstreet,coco,geode)", "one of: bag, bicycle, jug",
                 "set mapping: <the path of your copy>"):
        assert part in message, message


def test_a_mapping_column_for_a_source_not_loaded_is_refused(roots: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"has a column for geode, which is not among the sources "
                                        r"\(dollarstreet, coco\)"):
        load_mix(roots, tmp_path, srcs=sources(roots, geode_split="none"))


@pytest.mark.parametrize(("text", "error"), [
    ("label,dollarstreet\nbed,beds\n", r":1: the header must be class,<source name>"),
    ("class\nbed\n", r":1: the header must be class,<source name>"),
    ("class,coco,coco\nbed,bed,bed\n", r":1: source 'coco' has two columns"),
    ("class,dollarstreet,coco\nbed,,\n", r":2: class 'bed' maps no label"),
    ("class,dollarstreet,coco\n,beds,\n", r":2: no class name"),
    ("class,dollarstreet\nbed,beds\nbook,beds\n", r":3: label 'beds' of 'dollarstreet' is mapped to 'book' here "
                                                  r"and to 'bed' on line 2"),
    ("class,dollarstreet\nbed,beds,x\n", r":2: 3 cells but the header has 2 columns"),
    ("# only a comment\n", r"empty mapping"),
])
def test_malformed_mapping_files(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=error):
        mixture.read_mapping(str(path))


def test_mapping_file_comments_blank_lines_and_a_relative_path(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("# a comment\nclass, dollarstreet ,coco\n\nBed,beds,bed\nbed,kids_bed,\n")
    parsed = mixture.read_mapping("m.csv", root=tmp_path)
    assert parsed.classes == ("Bed",) and parsed.sources == ("dollarstreet", "coco")
    assert [(r.cls, r.source, r.label, r.line) for r in parsed.rows] == [
        ("Bed", "dollarstreet", "beds", 4), ("Bed", "coco", "bed", 4), ("Bed", "dollarstreet", "kids_bed", 5)]
    with pytest.raises(DataError, match=r"'mapping': no file .*nope\.csv .*bundled mappings: paper"):
        mixture.read_mapping(str(tmp_path / "nope.csv"))


def test_the_bundled_paper_mapping(roots: dict[str, Path], coco_root: Path, tmp_path: Path) -> None:
    paper = mixture.read_mapping("paper")
    # the paper's 15 Dollar Street topics, onto 14 COCO categories (beds and kids_bed are both bed)
    assert paper.sources == ("dollarstreet", "coco") and len(paper.classes) == 14
    topics = {r.label: r.cls for r in paper.rows if r.source == "dollarstreet"}
    assert topics == DOLLARSTREET_TO_COCO and len(topics) == 15
    assert {r.label: r.cls for r in paper.rows if r.source == "coco"} == {c: c for c in paper.classes}
    # it loads, once both fixtures have every label it names: Dollar Street img5 gets the 12 other topics (so it
    # is ambiguous), COCO's chair and dining table become couch and tv and the other categories are added
    csv = roots["dollarstreet"] / "dataset_dollarstreet" / "images_v2.csv"
    meta = pd.read_csv(csv)
    rest = [t for t in DOLLARSTREET_TO_COCO if t not in ("beds", "kids_bed", "books", "toothbrushes")]
    meta.loc[5, "topics"] = str(rest)
    meta.to_csv(csv, index=False)
    for path in (coco_root / "annotations").glob("instances_*.json"):
        data = json.loads(path.read_text())
        for cat in data["categories"]:
            cat["name"] = {"chair": "couch", "dining table": "tv"}.get(cat["name"], cat["name"])
        names = {c["name"] for c in data["categories"]}
        data["categories"] += [{"id": 100 + k, "name": c, "supercategory": "x"}
                               for k, c in enumerate(paper.classes) if c not in names]
        path.write_text(json.dumps(data))
    mixed = load_mix(roots, tmp_path, mapping="paper", srcs=sources(roots, geode_split="none"))
    assert mixed.table.classes == paper.classes
    f = mixed.table.frame
    assert f.groupby(["domain", "class"]).size().to_dict() == {
        ("dollarstreet", "bed"): 3, ("dollarstreet", "book"): 2, ("dollarstreet", "toothbrush"): 1,
        ("coco", "couch"): 2, ("coco", "tv"): 3}
    assert "img4" not in set(f["id"]) and "img5" not in set(f["id"])  # both ambiguous


# ---------------------------------------------------------------------------------------------------- params


@pytest.mark.parametrize(("params", "error"), [
    ({"colour": "red"}, r"unknown parameter 'colour'; allowed: .*ambiguous.*mapping.*sources"),
    ({"sources": None}, r"parameter 'sources' is required"),
    ({"sources": []}, r"'sources' must be a non-empty list"),
    ({"sources": "coco"}, r"'sources' must be a non-empty list"),
    ({"sources": [{"name": "coco", "path": "/x"}]}, r"sources\[0\]: unknown key 'path'; allowed: name, root, "
                                                    r"params, split"),
    ({"sources": [{"name": "imagenet"}]}, r"sources\[0\]: 'name' must be a registered dataset; got 'imagenet'; "
                                          r"allowed: celeba, coco"),
    ({"sources": [{"name": "mixture"}]}, r"a mixture cannot be a source of a mixture"),
    ({"sources": [{"name": "coco", "root": "/x"}, {"name": "coco", "root": "/y"}]},
     r"sources\[1\]: dataset 'coco' is listed twice \(also sources\[0\]\)"),
    ({"sources": [{"name": "coco", "params": [1]}]}, r"sources\[0\] \(coco\): 'params' must be a mapping"),
    ({"sources": [{"name": "coco", "root": "/x", "split": "pretrain"}]},
     r"every source has a 'split:', so nothing is left"),
    ({"mapping": 3}, r"parameter 'mapping' must be one of paper"),
])
def test_bad_params_name_the_field_and_allowed_values(roots: dict[str, Path], tmp_path: Path,
                                                      params: dict[str, Any], error: str) -> None:
    with pytest.raises(DataError, match=error):
        load_mix(roots, tmp_path, **params)


def test_errors_of_a_source_name_the_source(roots: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"sources\[1\] \(coco\): dataset 'coco': unknown parameter 'colour'"):
        load_mix(roots, tmp_path, srcs=sources(roots, coco={"params": {"colour": "red"}}))
    with pytest.raises(DataError, match=r"sources\[1\] \(coco\): dataset 'coco' reads local files"):
        load_mix(roots, tmp_path, srcs=[*sources(roots)[:1], {"name": "coco"}, *sources(roots)[2:]])


def test_sources_with_different_channels_are_refused(roots: dict[str, Path], tmp_path: Path) -> None:
    gray = sources(roots, dollarstreet={"params": {"channels": 1}})
    with pytest.raises(DataError, match=r"differ in size or channels \(dollarstreet: 8×8×1, coco: 8×8×3, "
                                        r"geode: 8×8×3\)"):
        load_mix(roots, tmp_path, srcs=gray)
    data = load_mix(roots, tmp_path, channels=1)  # a mixture's decoding params go to every source
    assert data.images.channels == 1


def test_relative_roots_resolve_against_the_mixture_root(roots: dict[str, Path], tmp_path: Path) -> None:
    rel = [{**s, "root": str(Path(s["root"]).relative_to(tmp_path))} for s in sources(roots)]
    data = load_dataset("mixture", root=tmp_path, cache_dir=tmp_path / "cache", resolution=RES,
                        params={"sources": rel, "mapping": "mapping.csv", **DECODE})
    assert list(data.table.frame["id"]) == [i for _, i, _ in EXPECTED]


def test_tiny_params_are_each_sources_own() -> None:
    params = {"sources": [{"name": "synthetic", "params": {"train": 9000}}, {"name": "coco", "root": "/c"}],
              "mapping": "m.csv"}
    tiny = DATASETS.get("mixture")().tiny_params(params)
    assert tiny["sources"][0]["params"]["train"] == 1200 and tiny["sources"][0]["params"]["test"] == 800
    assert tiny["sources"][1] == {"name": "coco", "root": "/c", "params": {}} and tiny["mapping"] == "m.csv"
    assert params["sources"][0]["params"] == {"train": 9000}  # not changed in place


# ------------------------------------------------------------------------------------------- images, fingerprint


def test_images_are_the_source_images_bit_for_bit(roots: dict[str, Path], tmp_path: Path) -> None:
    data = load_mix(roots, tmp_path)
    f = data.table.frame
    assert data.images.array.shape == (len(EXPECTED), RES, RES, 3)
    for name in ("dollarstreet", "coco", "geode"):
        src = load_source(name, roots, tmp_path)
        mine = np.flatnonzero(f["source"].to_numpy() == name)
        rows = f["source_row"].to_numpy()[mine]
        assert list(src.table.frame["id"].astype(str).to_numpy()[rows]) == list(f["id"].to_numpy()[mine])
        np.testing.assert_array_equal(data.images.array[mine], src.images.array[rows])
    assert not np.array_equal(data.images.array[0], data.images.array[1])  # rows are not all one image


def test_the_combined_store_is_cached_and_memory_mapped(roots: dict[str, Path], tmp_path: Path) -> None:
    first = load_mix(roots, tmp_path)
    files = sorted((tmp_path / "cache").glob("mixture-*.npy"))
    assert len(files) == 1 and isinstance(first.images.array, np.memmap)
    stamp = files[0].stat().st_mtime_ns
    again = load_mix(roots, tmp_path)
    assert files[0].stat().st_mtime_ns == stamp and isinstance(again.images.array, np.memmap)
    assert again.fingerprint == first.fingerprint and again.table.frame.equals(first.table.frame)
    assert not list((tmp_path / "cache").glob("*.partial.npy"))


def test_fingerprint_changes_with_the_mapping_and_row_params(roots: dict[str, Path], tmp_path: Path) -> None:
    base = load_mix(roots, tmp_path).fingerprint
    assert len(base) == 16 and load_mix(roots, tmp_path).fingerprint == base
    roots["mapping"].write_text(MAPPING.replace("bed,kids_bed,,\n", ""))
    fewer = load_mix(roots, tmp_path)
    assert fewer.fingerprint != base and "img1" not in set(fewer.table.frame["id"])
    roots["mapping"].write_text(MAPPING)
    assert load_mix(roots, tmp_path, srcs=sources(roots, geode_split="pretrain")).fingerprint != base
    assert load_mix(roots, tmp_path, diverse="coco").fingerprint != base
    assert load_mix(roots, tmp_path).fingerprint == base


# ---------------------------------------------------------------------------------------------------- CLI


def test_datasets_check_loads_a_mixture(roots: dict[str, Path], tmp_path: Path) -> None:
    app = typer.Typer()
    app.add_typer(datasets_app, name="datasets")
    srcs = "[" + ", ".join("{" + ", ".join(f"{k}: {v}" for k, v in s.items()) + "}" for s in sources(roots)) + "]"
    assert srcs.startswith("[{name: dollarstreet, root: /")  # YAML flow style, as in docs/datasets.md
    result = CliRunner().invoke(app, ["datasets", "check", "mixture", "--resolution", str(RES), "--cache-dir",
                                      str(tmp_path / "c"), "-p", f"sources={srcs}", "-p",
                                      f"mapping={roots['mapping']}", "-p", "progress=false"],
                                env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "mixture: 15 examples" in out
    assert "a = diverse (a=0: coco+geode, a=1: dollarstreet)" in out
    assert "pretrain_geode" in out and "6 classes" in out
    bed = [ln for ln in out.splitlines() if ln.startswith("│ bed ")]
    assert bed, out
    bad = CliRunner().invoke(app, ["datasets", "check", "mixture", "--cache-dir", str(tmp_path / "c"), "-p",
                                   f"sources={srcs}", "-p", "mapping=nope.csv"])
    assert bad.exit_code == 1 and "'mapping': no file nope.csv" in bad.output

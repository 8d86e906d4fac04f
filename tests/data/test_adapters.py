"""The real-format adapters on tiny fixtures in each published layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

import biastransfer.data.adapters  # noqa: F401  (registers the adapters)
from biastransfer.data.adapters import coco
from biastransfer.data.adapters._common import assign_splits, carve
from biastransfer.data.registry import DATASETS, load_dataset
from biastransfer.data.table import SPLITS, DataError, LoadedDataset

ADAPTERS = ("celeba", "fairface", "coco", "dollarstreet", "geode", "imagefolder", "manifest")


def cells(data: LoadedDataset, task: str, split: str | None = None) -> list[int]:
    """[a0y0, a0y1, a1y0, a1y1] counts."""
    f = data.table.frame if split is None else data.table.frame[data.table.frame["split"] == split]
    a, y = f[data.table.sensitive].to_numpy(), f[task].to_numpy()
    return [int(((a == i) & (y == j)).sum()) for i in (0, 1) for j in (0, 1)]


def load(name: str, root: Path, tmp_path: Path, **params) -> LoadedDataset:
    return load_dataset(name, root=root, cache_dir=tmp_path / "cache", resolution=8,
                        params={"progress": False, "workers": 2, **params})


def check_consistent(data: LoadedDataset) -> None:
    t = data.table
    assert len(t) == len(data.images) and data.images.array.shape[1:] == (8, 8, 3)
    assert set(t.frame["split"]) <= set(SPLITS)
    for col in t.attributes:
        assert set(np.unique(t.frame[col])) <= {-1, 0, 1}, col
    assert t.sensitive not in t.tasks


# ---------------------------------------------------------------- CelebA


def test_celeba_parses_layout(celeba_root: Path, tmp_path: Path) -> None:
    data = load("celeba", celeba_root, tmp_path)
    check_consistent(data)
    t = data.table
    assert t.sensitive == "Female" and t.group_names == ("Men", "Women")
    assert "Male" not in t.frame.columns and "Male" not in t.tasks
    assert set(t.tasks) == {"5_o_Clock_Shadow", "Blond_Hair", "Eyeglasses", "Young"}
    assert t.frame["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    # official partition 2 is our test split (docs/protocols.md §9)
    assert list(t.frame.loc[t.frame["split"] == "test", "id"]) == ["000009.jpg", "000010.jpg"]
    assert cells(data, "Blond_Hair") == [3, 1, 3, 3]
    assert len(data.fingerprint) == 16
    again = load("celeba", celeba_root, tmp_path)
    assert again.fingerprint == data.fingerprint


def test_celeba_pretrain_share_is_seeded_and_disjoint(celeba_root: Path, tmp_path: Path) -> None:
    a = load("celeba", celeba_root, tmp_path, pretrain_share=0.5, seed=3)
    b = load("celeba", celeba_root, tmp_path, pretrain_share=0.5, seed=3)
    counts = a.table.frame["split"].value_counts().to_dict()
    assert counts == {"pretrain": 3, "train": 3, "val": 2, "test": 2}
    assert list(a.table.frame["split"]) == list(b.table.frame["split"])
    assert a.fingerprint != load("celeba", celeba_root, tmp_path).fingerprint


def test_celeba_truncated_attribute_file(celeba_root: Path, tmp_path: Path) -> None:
    attr = celeba_root / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(lines[:-2]) + "\n")  # two rows missing
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt.*says 10 images but the file has 8 rows"):
        load("celeba", celeba_root, tmp_path)
    attr.write_text("\n".join([*lines[:-1], lines[-1][:20]]) + "\n")  # last row cut mid-line
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt:12: expected a file name and 5 values"):
        load("celeba", celeba_root, tmp_path)
    attr.write_text("\n".join([*lines[:5], lines[5].replace(" 1", " 7", 1), *lines[6:]]) + "\n")
    with pytest.raises(DataError, match=r"list_attr_celeba\.txt:6: value of .* must be 1 or -1"):
        load("celeba", celeba_root, tmp_path)


def test_celeba_missing_files(celeba_root: Path, tmp_path: Path) -> None:
    (celeba_root / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match=r"missing metadata file .*list_eval_partition\.txt"):
        load("celeba", celeba_root, tmp_path)


def test_missing_image_names_path_and_skip_bad_records_it(celeba_root: Path, tmp_path: Path, caplog) -> None:
    (celeba_root / "img_align_celeba" / "000005.jpg").unlink()
    with pytest.raises(DataError, match=r"img_align_celeba/000005\.jpg: missing file"):
        load("celeba", celeba_root, tmp_path)
    data = load("celeba", celeba_root, tmp_path, skip_bad=True)
    assert len(data.table) == 9 and "000005.jpg" not in set(data.table.frame["id"])
    assert "dropped 1 bad image" in caplog.text
    sidecars = list((tmp_path / "cache").glob("celeba-*.json"))
    assert len(sidecars) == 1 and "000005.jpg" in sidecars[0].read_text()


def test_celeba_second_load_reads_cache(celeba_root: Path, tmp_path: Path, monkeypatch) -> None:
    first = load("celeba", celeba_root, tmp_path)

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(PIL.Image, "open", boom)
    second = load("celeba", celeba_root, tmp_path, pretrain_share=0.3)  # split params do not touch the cache
    np.testing.assert_array_equal(first.images.array, second.images.array)


# ---------------------------------------------------------------- FairFace


def test_fairface(fairface_root: Path, tmp_path: Path) -> None:
    data = load("fairface", fairface_root, tmp_path, val_share=0.25)
    check_consistent(data)
    t = data.table
    assert t.sensitive == "Female" and t.group_names == ("Men", "Women")
    assert t.frame["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 4}
    assert set(t.frame.loc[t.frame["split"] == "test", "id"]) == {f"val/{i}.jpg" for i in range(1, 5)}
    for col in ("White", "East_Asian", "Latino_Hispanic", "age_0_2", "age_70_plus", "Young"):
        assert col in t.tasks
    assert int(t.frame["White"].sum()) == 2 + 1  # two train rows, one val row
    assert cells(data, "White") == [5, 1, 4, 2]
    by_race = load("fairface", fairface_root, tmp_path, sensitive="White")
    assert by_race.table.sensitive == "White" and "Female" in by_race.table.tasks
    with pytest.raises(DataError, match="parameter 'sensitive'"):
        load("fairface", fairface_root, tmp_path, sensitive="Purple")


def test_fairface_missing_csv_and_column(fairface_root: Path, tmp_path: Path) -> None:
    csv = fairface_root / "fairface_label_val.csv"
    text = csv.read_text()
    csv.write_text(text.replace("race", "ethnicity"))
    with pytest.raises(DataError, match=r"no column 'race'; columns: file, age, gender, ethnicity"):
        load("fairface", fairface_root, tmp_path)
    csv.unlink()
    with pytest.raises(DataError, match=r"missing metadata file .*fairface_label_val\.csv"):
        load("fairface", fairface_root, tmp_path)


# ---------------------------------------------------------------- COCO


def test_coco_caption_gender_rules() -> None:
    assert coco.caption_gender(["A man, eating."]) == 0
    assert coco.caption_gender(["The woman's hat"]) == 1
    assert coco.caption_gender(["A man and a woman"]) is None
    assert coco.caption_gender(["A man.", "A lady!"]) is None
    assert coco.caption_gender(["A dog"]) is None
    assert coco.caption_gender([]) is None
    assert "gentleman" in coco.MALE_WORDS and "ladies" in coco.FEMALE_WORDS


def test_coco(coco_root: Path, tmp_path: Path) -> None:
    data = load("coco", coco_root, tmp_path, val_share=0.0)
    check_consistent(data)
    t = data.table
    assert t.sensitive == "Female" and t.group_names == ("Men", "Women")
    assert list(t.frame["id"]) == [1, 2, 5, 6, 7, 8]  # 3 (both), 4 and 9 (neither) excluded
    assert list(t.frame["Female"]) == [0, 1, 1, 0, 0, 1]
    assert list(t.frame["split"]) == ["train"] * 4 + ["test"] * 2
    assert set(t.tasks) == {"person", "chair", "dining_table"}
    assert cells(data, "dining_table") == [2, 1, 1, 2]
    assert cells(data, "chair", "test") == [0, 1, 1, 0]
    assert (t.frame["domain"] == "coco").all()


def test_coco_missing_annotation_file(coco_root: Path, tmp_path: Path) -> None:
    (coco_root / "annotations" / "captions_val2014.json").unlink()
    with pytest.raises(DataError, match=r"missing metadata file .*captions_val2014\.json"):
        load("coco", coco_root, tmp_path)
    with pytest.raises(DataError, match="parameter 'year'"):
        load("coco", coco_root, tmp_path, year=2015)


# ---------------------------------------------------------------- Dollar Street


def test_dollarstreet_income(dollarstreet_root: Path, tmp_path: Path) -> None:
    data = load("dollarstreet", dollarstreet_root, tmp_path)
    check_consistent(data)
    t = data.table
    assert t.sensitive == "low_income"
    assert t.group_names == ("income >= 160", "income < 160")  # median of the 8 incomes
    assert set(t.tasks) == {"toothbrushes", "books", "bowls", "sofas"}
    assert list(t.frame["low_income"]) == [1, 1, 0, 1, 0, 0, 1, 0]
    assert cells(data, "toothbrushes") == [2, 2, 3, 1]
    assert list(t.frame["income_bucket"]) == [1, 1, 3, 2, 2, 3, 1, 2]
    # a household's images stay in one split
    f = t.frame
    assert f.loc[f["place"] == "p1", "split"].nunique() == 1


def test_dollarstreet_region_and_coco_labels(dollarstreet_root: Path, tmp_path: Path) -> None:
    data = load("dollarstreet", dollarstreet_root, tmp_path, sensitive="region", group1=["af"],
                coco_labels=True, topics=["toothbrushes", "sofas"])
    t = data.table
    assert len(t) == 5 and t.group_names == ("other regions", "af")
    assert list(t.frame["region_group"]) == [1, 0, 0, 1, 0]
    assert {"toothbrush", "couch"} <= set(t.tasks)
    assert list(t.frame["couch"]) == list(t.frame["sofas"])
    with pytest.raises(DataError, match=r"none of \['xx'\] occurs"):
        load("dollarstreet", dollarstreet_root, tmp_path, sensitive="region", group1="xx")


def test_dollarstreet_missing_column(dollarstreet_root: Path, tmp_path: Path) -> None:
    csv = dollarstreet_root / "dataset_dollarstreet" / "images_v2.csv"
    csv.write_text(csv.read_text().replace("imageRelPath", "image_path"))
    with pytest.raises(DataError, match=r"no column 'imageRelPath' \(path\); columns: .*image_path"):
        load("dollarstreet", dollarstreet_root, tmp_path)
    data = load("dollarstreet", dollarstreet_root, tmp_path, columns={"path": "image_path"})
    assert len(data.table) == 8


# ---------------------------------------------------------------- GeoDE


def test_geode(geode_root: Path, tmp_path: Path) -> None:
    data = load("geode", geode_root, tmp_path)
    check_consistent(data)
    t = data.table
    assert t.sensitive == "region_group" and t.group_names == ("other regions", "Africa")
    assert set(t.tasks) == {"bag", "bicycle", "jug"}
    assert list(t.frame["region_group"]) == [1, 0, 1, 0, 0, 1, 0, 0]
    assert cells(data, "bag") == [3, 2, 2, 1]
    two = load("geode", geode_root, tmp_path, group1=["east asia", "South East Asia"])
    assert int(two.table.frame["region_group"].sum()) == 2
    with pytest.raises(DataError, match=r"no column 'region_name'"):
        load("geode", geode_root, tmp_path, sensitive_column="region_name")


# ---------------------------------------------------------------- image folders


def test_imagefolder_class_layout(imagefolder_root: Path, tmp_path: Path) -> None:
    data = load("imagefolder", imagefolder_root, tmp_path, group_of_class={"cat": 0, "dog": 1, "owl": 1})
    check_consistent(data)
    t = data.table
    assert set(t.tasks) == {"cat", "dog", "owl"} and len(t) == 10
    assert cells(data, "dog") == [4, 0, 2, 4]
    assert set(t.frame["split"]) <= {"train", "val", "test"}
    with pytest.raises(DataError, match=r"no group for class.*owl"):
        load("imagefolder", imagefolder_root, tmp_path, group_of_class={"cat": 0, "dog": 1})
    with pytest.raises(DataError, match="exactly one of"):
        load("imagefolder", imagefolder_root, tmp_path)


def test_imagefolder_split_layout_and_csv(imagefolder_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "split_root"
    shutil.copytree(imagefolder_root, root / "train")
    shutil.copytree(imagefolder_root / "cat", root / "test" / "cat")
    rows = ["path,a"] + [f"{p.relative_to(root).as_posix()},{i % 2}"
                         for i, p in enumerate(sorted(root.rglob("*.*")))]
    (root / "groups.csv").write_text("\n".join(rows) + "\n")
    data = load("imagefolder", root, tmp_path, sensitive_csv="groups.csv", val_share=0.2)
    counts = data.table.frame["split"].value_counts().to_dict()
    assert counts == {"train": 8, "val": 2, "test": 4}
    assert sorted(data.table.frame["a"].unique()) == [0, 1]
    (root / "groups.csv").write_text("path,a\n")
    with pytest.raises(DataError, match=r"groups\.csv: no row for image"):
        load("imagefolder", root, tmp_path, sensitive_csv="groups.csv")


# ---------------------------------------------------------------- manifest


def test_manifest(manifest_root: Path, tmp_path: Path) -> None:
    data = load("manifest", manifest_root, tmp_path, sensitive="female", group_names=["Men", "Women"])
    check_consistent(data)
    t = data.table
    assert t.tasks == ("smiling", "hat") and t.group_names == ("Men", "Women")
    assert list(t.frame["hat"]) == [0, 1, -1, 0, 0, 1, 0]
    assert t.frame["split"].value_counts().to_dict() == {"train": 4, "val": 1, "test": 2}
    assert cells(data, "smiling") == [1, 2, 2, 2]
    csv_root = load("manifest", manifest_root / "manifest.csv", tmp_path, sensitive="female")
    assert len(csv_root.table) == 7


def test_manifest_errors(manifest_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no column 'gender' \(parameter 'sensitive'\); "
                                        r"columns: path, split, female, smiling, hat"):
        load("manifest", manifest_root, tmp_path, sensitive="gender")
    with pytest.raises(DataError, match=r"no column 'image' \(parameter 'path_column'\)"):
        load("manifest", manifest_root, tmp_path, sensitive="female", path_column="image")
    with pytest.raises(DataError, match="give parameter 'sensitive'"):
        load("manifest", manifest_root, tmp_path)
    csv = manifest_root / "manifest.csv"
    csv.write_text(csv.read_text().replace("imgs/2.png,train,1,0,", "imgs/2.png,train,1,0,maybe"))
    with pytest.raises(DataError, match=r"column 'hat' must hold 0/1.*row 4 has 'maybe'"):
        load("manifest", manifest_root, tmp_path, sensitive="female", labels=["smiling", "hat"])


def test_manifest_carves_a_pretrain_pool_from_its_train_rows(manifest_root: Path, tmp_path: Path) -> None:
    data = load("manifest", manifest_root, tmp_path, sensitive="female", pretrain_share=0.5)
    split = data.table.frame["split"]
    assert split.value_counts().to_dict() == {"pretrain": 2, "train": 2, "val": 1, "test": 2}
    assert set(split[:4]) == {"pretrain", "train"}  # only rows marked train move; val and test stay


def test_an_image_listed_in_two_splits_is_refused(manifest_root: Path, tmp_path: Path) -> None:
    """A manifest repeating an image under another split would let a base trained on pretrain see a test image."""
    csv = manifest_root / "manifest.csv"
    csv.write_text(csv.read_text() + "imgs/../imgs/6.png,pretrain,1,0,0\n")
    with pytest.raises(DataError, match=r"1 image file\(s\) are listed in more than one split, e\.g\. .*6\.png in "
                                        r"pretrain, test"):
        load("manifest", manifest_root, tmp_path, sensitive="female")


# ---------------------------------------------------------------- registry-wide


@pytest.mark.parametrize("name", ADAPTERS)
def test_unknown_param_is_named_with_allowed_list(name: str, tmp_path: Path) -> None:
    assert name in DATASETS and DATASETS.get(name).needs_root
    with pytest.raises(DataError, match=r"unknown parameter 'bogus'; allowed: .*resize"):
        load_dataset(name, root=tmp_path, cache_dir=tmp_path / "c", resolution=8, params={"bogus": 1})


@pytest.mark.parametrize("name", ADAPTERS)
def test_missing_root_or_metadata_is_named(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="root"):
        load_dataset(name, cache_dir=tmp_path, resolution=8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty)):
        load_dataset(name, root=empty, cache_dir=tmp_path / "c", resolution=8,
                     params={"sensitive": "x"} if name == "manifest" else None)


def test_seeded_split_helpers() -> None:
    s1 = assign_splits(100, {"test": 0.2, "val": 0.1}, seed=1, dataset="d")
    assert list(s1) == list(assign_splits(100, {"test": 0.2, "val": 0.1}, seed=1, dataset="d"))
    assert list(s1) != list(assign_splits(100, {"test": 0.2, "val": 0.1}, seed=2, dataset="d"))
    assert {k: int((s1 == k).sum()) for k in ("train", "val", "test")} == {"train": 70, "val": 10, "test": 20}
    groups = np.repeat(np.arange(10), 3)
    g = assign_splits(groups, {"test": 0.3}, seed=0, dataset="d")
    assert all(len(set(g[groups == k])) == 1 for k in range(10))
    carved = carve(np.array(["train"] * 10 + ["test"] * 5, dtype=object), "train", {"pretrain": 0.5},
                   seed=0, dataset="d")
    assert int((carved == "pretrain").sum()) == 5 and int((carved == "test").sum()) == 5


@pytest.mark.parametrize(("text", "message"), [
    ("", "is empty: it has no header and no rows"),
    ("path,split,female,smiling\n", r"has no rows \(only its header: path, split, female, smiling\)"),
])
def test_a_manifest_without_rows_is_named(text: str, message: str, tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "manifest.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        load("manifest", root, tmp_path, sensitive="female")


def test_a_manifest_column_that_is_not_binary_is_not_a_task_and_is_named(
        manifest_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = manifest_root / "manifest.csv"
    csv.write_text(csv.read_text().replace("imgs/2.png,train,1,0,", "imgs/2.png,train,1,0,maybe"))
    with caplog.at_level("WARNING"):
        data = load("manifest", manifest_root, tmp_path, sensitive="female")
    assert data.table.tasks == ("smiling",)
    assert "column(s) 'hat' hold values other than 0/1" in caplog.text

"""``datasets list`` and ``datasets check`` through a local Typer app that mounts datasets_app."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from biastransfer.cli.datasets import datasets_app, parse_param

app = typer.Typer()
app.add_typer(datasets_app, name="datasets")
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}


def run(*args: str):
    return CliRunner().invoke(app, ["datasets", *args], env=ENV)


def test_list_shows_every_dataset_and_root_need() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    for name in ("celeba", "fairface", "coco", "dollarstreet", "geode", "imagefolder", "manifest",
                 "fashion-mnist", "fashion-mnist-panels"):
        assert name in result.output
    assert "root/[split/]class/*" in result.output  # descriptions are not read as markup


def test_check_prints_splits_prevalence_and_cells(celeba_root: Path, tmp_path: Path) -> None:
    result = run("check", "celeba", "--root", str(celeba_root), "--cache-dir", str(tmp_path / "c"),
                 "--resolution", "8", "--param", "pretrain_share=0.5", "-p", "progress=false")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "examples per split" in out and "prevalence" in out and "a × y cells" in out
    assert "a=1: Women" in out
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in out.splitlines() if "│ Blond_Hair " in ln]
    assert rows[0][1] == "task"  # the prevalence row, then the cells row (a0y0, a0y1, a1y0, a1y1, c)
    assert rows[-1][1:] == ["3", "1", "3", "3", "0.750"]


def test_check_split_option(celeba_root: Path, tmp_path: Path) -> None:
    result = run("check", "celeba", "--root", str(celeba_root), "--cache-dir", str(tmp_path / "c"),
                 "--resolution", "8", "--split", "test")
    assert result.exit_code == 0, result.output
    assert "split 'test'" in result.output
    bad = run("check", "celeba", "--root", str(celeba_root), "--split", "holdout")
    assert bad.exit_code != 0 and "holdout" in bad.output


def test_check_reports_what_is_missing_or_malformed(celeba_root: Path, tmp_path: Path) -> None:
    no_root = run("check", "celeba", "--cache-dir", str(tmp_path / "c"))
    assert no_root.exit_code == 1 and "--root" in no_root.output
    unknown = run("check", "imagenet-21k", "--cache-dir", str(tmp_path / "c"))
    assert unknown.exit_code == 1 and "unknown dataset 'imagenet-21k'" in unknown.output
    bad_param = run("check", "celeba", "--root", str(celeba_root), "--param", "colour=red")
    assert bad_param.exit_code == 1 and "unknown parameter 'colour'" in bad_param.output
    (celeba_root / "img_align_celeba" / "000003.jpg").unlink()
    missing = run("check", "celeba", "--root", str(celeba_root), "--cache-dir", str(tmp_path / "c"))
    assert missing.exit_code == 1 and "000003.jpg: missing file" in missing.output
    skipped = run("check", "celeba", "--root", str(celeba_root), "--cache-dir", str(tmp_path / "c"),
                  "--skip-bad")
    assert skipped.exit_code == 0 and "9 examples" in skipped.output
    assert "dropped 1 bad image" in skipped.output
    attr = celeba_root / "list_attr_celeba.txt"
    attr.write_text("\n".join(attr.read_text().splitlines()[:-3]) + "\n")
    truncated = run("check", "celeba", "--root", str(celeba_root), "--cache-dir", str(tmp_path / "c"))
    assert truncated.exit_code == 1 and "list_attr_celeba.txt" in truncated.output
    assert "truncated" in truncated.output


def test_check_fashion_mnist_panels(fmnist_root: Path, tmp_path: Path) -> None:
    result = run("check", "fashion-mnist-panels", "--root", str(fmnist_root), "--cache-dir", str(tmp_path),
                 "--resolution", "8")
    assert result.exit_code == 0, result.output
    assert "second_bag" in result.output and "ankle_boot" in result.output


@pytest.mark.parametrize(("text", "expected"), [
    ("seed=3", ("seed", 3)), ("share=0.25", ("share", 0.25)), ("flag=true", ("flag", True)),
    ("group1=[af, as]", ("group1", ["af", "as"])), ("name=Blond_Hair", ("name", "Blond_Hair")),
    ("map={cat: 0, dog: 1}", ("map", {"cat": 0, "dog": 1})), ("empty=", ("empty", "")),
])
def test_parse_param(text: str, expected: tuple) -> None:
    assert parse_param(text) == expected


def test_parse_param_rejects_missing_equals() -> None:
    with pytest.raises(typer.BadParameter):
        parse_param("seed")


def test_check_decodes_where_run_reads(celeba_root: Path, tmp_path: Path, monkeypatch) -> None:
    """One cache folder for every command: after `datasets check`, a study's run finds the decoded images and does
    not decode them again."""
    import torch

    from biastransfer.backends.base import Resources
    from biastransfer.backends.workspace import Workspace
    from biastransfer.data import cache as cache_module
    from biastransfer.spec import RunSpec

    cache = tmp_path / "cache"
    result = run("check", "celeba", "--root", str(celeba_root), "--cache-dir", str(cache), "--resolution", "8",
                 "-p", "progress=false")
    assert result.exit_code == 0, result.output
    assert list((cache / "data").rglob("*.npy"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again: run did not find the images `datasets check` decoded")

    monkeypatch.setattr(cache_module, "decode_one", no_decoding)
    spec = RunSpec(experiment="e", kind="inheritance", arch="small_resnet", base_name="scratch",
                   base={"kind": "scratch"}, task="Blond_Hair", seed=0,
                   dataset={"name": "celeba", "root": str(celeba_root), "resolution": 8,
                            "params": {"progress": False}})
    data = Workspace(Resources(torch.device("cpu"), cache, tmp_path)).dataset(spec)
    assert len(data.images) == len(data.table)


def test_check_of_a_multiclass_dataset_counts_classes_per_split_and_takes_its_own_pools(tmp_path: Path) -> None:
    args = ("check", "synthetic-objects", "--cache-dir", str(tmp_path / "c"), "--resolution", "8",
            "-p", "classes=3", "-p", "pretrain=6", "-p", "pretrain_diverse=9", "-p", "train=6", "-p", "val=3",
            "-p", "test=3")
    result = run(*args, "--split", "pretrain_diverse")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "examples per class (3 classes, column 'label')" in out
    ring = [[c.strip() for c in ln.split("│")[1:-1]] for ln in out.splitlines() if ln.startswith("│ ring ")]
    # the per-class table: pretrain, train, val, test, then the dataset's own pool pretrain_diverse
    assert ["ring", "2", "4", "2", "2", "3"] in ring
    assert ["ring", "0", "0", "6", "3", "1.000"] in ring  # a × y cells of the pool given with --split
    assert not any(ln.startswith("│ label ") for ln in out.splitlines())  # a class index has no prevalence
    bad = run(*args, "--split", "nope")
    assert bad.exit_code != 0 and "unknown split 'nope'" in bad.output

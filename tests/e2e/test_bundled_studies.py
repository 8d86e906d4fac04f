"""Every bundled study runs end to end with ``biastransfer run NAME --tiny`` (the product's shrinking,
:mod:`biastransfer.tiny`) and its report. Fashion-MNIST studies read Debian's copy when it is installed (as in
CI); elsewhere they run the same shrunk study on a tiny fake copy (100 items per class, so smaller validation and
test sets). The CelebA study reads a fake CelebA and fake ResNet-50 checkpoints through its environment variables
(``CELEBA_ROOT``, ``BIASTRANSFER_CHECKPOINTS``), shrunk further for time: ResNet-18 instead of ResNet-50 (with
ResNet-18 checkpoints in the same four formats), one task and one seed per block, one sweep block with one
intervention (its tiny version has 340 ResNet-50 runs, about an hour on 2 cores)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from biastransfer.cli import app
from biastransfer.data.fashion_mnist import DEBIAN_ROOT
from biastransfer.store.sqlite import ResultStore
from biastransfer.tiny import shrink_study
from fake_celeba import write_fake_celeba, write_fake_checkpoints

pytestmark = pytest.mark.slow
STUDIES = sorted(p.name for p in resources.files("biastransfer.studies").iterdir() if p.name.endswith(".yaml"))
DEBIAN_PRESENT = (DEBIAN_ROOT / "train-images-idx3-ubyte.gz").exists()


@pytest.fixture(scope="session")
def fake_celeba(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment variables of celeba_paper.yaml, pointing at a fake CelebA and fake checkpoints."""
    root = tmp_path_factory.mktemp("fake-celeba")
    write_fake_celeba(root / "celeba")
    write_fake_checkpoints(root / "checkpoints", arch="resnet18")
    return {"CELEBA_ROOT": str(root / "celeba"), "BIASTRANSFER_CHECKPOINTS": str(root / "checkpoints")}


def _celeba_argument(name: str, tmp_path: Path, env: dict[str, str]) -> list[str]:
    from biastransfer.config import read_yaml

    data, _ = read_yaml(Path(str(resources.files("biastransfer.studies") / name)))  # ${…} expanded from env
    small = shrink_study(data)
    small["model"]["arch"] = "resnet18"
    small["experiments"] = [b for b in small["experiments"] if b["name"] != "sweep-eyebags"]  # as sweep-blond
    for block in small["experiments"]:
        block["tasks"], block["seeds"] = block["tasks"][:1], block["seeds"][:1]
        if "interventions" in block:
            block["interventions"] = block["interventions"][:1]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(small))
    return [str(path)]


def _study_argument(name: str, raw: dict, tmp_path: Path, fmnist: Path) -> list[str]:
    """``[NAME, --tiny]``; for a Fashion-MNIST study without Debian's copy, the shrunk study on the fake copy."""
    if raw.get("dataset", {}).get("name", "synthetic") == "synthetic" or DEBIAN_PRESENT:
        return [name.removesuffix(".yaml"), "--tiny"]
    small = shrink_study(raw)
    small["dataset"].update(root=str(fmnist), resolution=12)
    small["evaluation"]["test_size"] = 16
    for block in small["experiments"]:
        block["n_val"] = 8
    path = tmp_path / name
    path.write_text(yaml.safe_dump(small))
    return [str(path)]


@pytest.mark.parametrize("name", STUDIES)
def test_bundled_study_runs_with_tiny(name: str, tmp_path: Path, cache_dir: Path, fake_fmnist: Path,
                                      request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load((resources.files("biastransfer.studies") / name).read_text())
    if raw["dataset"]["name"] == "celeba":
        for key, value in request.getfixturevalue("fake_celeba").items():
            monkeypatch.setenv(key, value)
        args = _celeba_argument(name, tmp_path, dict(os.environ))
    else:
        args = _study_argument(name, raw, tmp_path, fake_fmnist)
    result = CliRunner().invoke(app, ["run", *args, "--out", str(tmp_path / "out"), "--quiet", "--workers", "1",
                                      "--cache-dir", str(cache_dir)])
    assert result.exit_code == 0, result.output
    store = ResultStore.open_existing(tmp_path / "out")
    kinds = {r["spec"]["kind"] for r in store.runs()}
    study = store.get_meta("study") or {}
    store.close()
    assert kinds == {b["kind"] for b in raw["experiments"]}
    assert study["name"] == f"{raw['name']}-tiny"
    text = (tmp_path / "out" / "report.html").read_text()
    assert '<section id="reading">' in text and '<section id="results">' in text

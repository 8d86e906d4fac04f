"""The bundled studies end to end, where a study brings something that no other test trains.

Every bundled study shrinks to a valid, expandable tiny study (tests/plan/test_tiny.py), and every experiment kind
is trained on the built-in benchmarks by tests/e2e/test_training_path.py. What a bundled study can add beyond
those is a dataset adapter or a kind of base that no study run of the suite trains; such studies
(:data:`TRAINED`) run here with ``biastransfer run … --tiny`` and write their report. The others (``demo``,
``paper``, ``multilabel`` …) use only what is trained elsewhere. The first test below checks that, so a new study
that brings a new dataset or base kind fails until it is trained here.

Fashion-MNIST studies run on a tiny fake copy (100 items per class; Debian's files are read by
tests/data/test_fashion_mnist.py), which decodes in a fraction of a second. The CelebA study reads a fake CelebA and
fake checkpoints through its environment variables (``CELEBA_ROOT``, ``BIASTRANSFER_CHECKPOINTS``), shrunk to
what it alone brings: its checkpoint bases in the four formats, on ResNet-18 instead of ResNet-50, in the one block
that finetunes them (one task, seed, intervention)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from biastransfer import plugins  # noqa: F401
from biastransfer.cli import app
from biastransfer.config import read_yaml
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.store.sqlite import ResultStore
from biastransfer.tiny import shrink_study
from fake_celeba import placeholder_paths, write_fake_celeba, write_fake_checkpoints
from tiny_study import kind_study_dict

STUDIES = sorted(p.name for p in resources.files("biastransfer.studies").iterdir() if p.name.endswith(".yaml"))

#: The bundled studies trained here, and what each brings that no other test trains in a study run.
TRAINED = {
    "celeba_paper.yaml": "the CelebA adapter; checkpoint bases in four published formats",
    "fashion_spurious.yaml": "the fashion-mnist-panels adapter",
    "fashion_underrep.yaml": "the fashion-mnist adapter",
}


def _raw(name: str) -> dict:
    return read_yaml(Path(str(resources.files("biastransfer.studies") / name)))[0]  # ${…} paths expanded


def _uses(study: dict) -> set[tuple[str, str]]:
    """What a study mapping trains with: ``("dataset", name)``, ``("kind", kind)``, ``("base", base kind)``."""
    datasets = [study.get("dataset", {}), *(study.get("datasets") or {}).values()]
    out = {("dataset", d.get("name", "synthetic")) for d in datasets}
    out |= {("kind", b["kind"]) for b in study["experiments"]}
    return out | {("base", b.get("kind")) for b in (study.get("bases") or {}).values()}


@pytest.mark.parametrize("name", STUDIES)
def test_what_every_bundled_study_uses_is_trained_by_some_test(name: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Each dataset, experiment kind and base kind of a bundled study is trained through a study run by the
    training-path tests (every kind's tiny study) or by one of the :data:`TRAINED` studies here."""
    placeholder_paths(monkeypatch, tmp_path)
    trained = set().union(*(_uses(kind_study_dict(kind)) for kind in EXPERIMENTS.names()))
    trained |= set().union(*(_uses(_raw(study)) for study in TRAINED))
    trained.add(("base", "scratch"))  # a study without `bases` finetunes from scratch
    missing = _uses(_raw(name)) - trained
    assert not missing, f"{name} uses {sorted(missing)}, which no test trains: add it to TRAINED here"


@pytest.fixture(scope="session")
def fake_celeba(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment variables of celeba_paper.yaml, pointing at a fake CelebA and fake checkpoints."""
    root = tmp_path_factory.mktemp("fake-celeba")
    write_fake_celeba(root / "celeba")
    write_fake_checkpoints(root / "checkpoints", arch="resnet18")
    return {"CELEBA_ROOT": str(root / "celeba"), "BIASTRANSFER_CHECKPOINTS": str(root / "checkpoints")}


def _celeba_study(raw: dict) -> dict:
    """The tiny CelebA study cut to its block of checkpoint bases (one task, seed and intervention), ResNet-18."""
    small = shrink_study(raw)
    small["model"]["arch"] = "resnet18"
    checkpoints = {n for n, b in small["bases"].items() if b.get("kind") not in ("trained", "scratch")}
    small["experiments"] = [next(b for b in small["experiments"] if checkpoints & set(b.get("bases", ())))]
    for block in small["experiments"]:
        block["tasks"], block["seeds"] = block["tasks"][:1], block["seeds"][:1]
        block["interventions"] = block.get("interventions", ["collect"])[:1]
    small["bases"] = {n: b for n, b in small["bases"].items() if n in small["experiments"][0]["bases"]}
    return small


def _fashion_study(raw: dict, fmnist: Path) -> dict:
    small = shrink_study(raw)
    small["dataset"].update(root=str(fmnist), resolution=12)
    small["evaluation"]["test_size"] = 16
    for block in small["experiments"]:
        block["n_val"] = 8
    return small


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRAINED))
def test_a_bundled_study_that_brings_its_own_data_or_bases_runs_with_tiny(
        name: str, tmp_path: Path, cache_dir: Path, fake_fmnist: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if "celeba" in name:
        for key, value in request.getfixturevalue("fake_celeba").items():
            monkeypatch.setenv(key, value)
        study = _celeba_study(_raw(name))
    else:
        study = _fashion_study(_raw(name), fake_fmnist)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(study))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--workers", "1",
                                      "--cache-dir", str(cache_dir)])
    assert result.exit_code == 0, result.output
    store = ResultStore.open_existing(tmp_path / "out")
    runs = store.runs()
    stored = store.get_meta("study") or {}
    store.close()
    assert {r["spec"]["kind"] for r in runs} == {b["kind"] for b in study["experiments"]}
    assert {r["spec"]["base"]["kind"] for r in runs} == {study["bases"][b]["kind"] for e in study["experiments"]
                                                        for b in e.get("bases", ["scratch"])}
    assert stored["name"] == study["name"]
    text = (tmp_path / "out" / "report.html").read_text()
    assert '<section id="reading">' in text and '<section id="results">' in text

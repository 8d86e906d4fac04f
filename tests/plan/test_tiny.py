"""``--tiny`` (biastransfer.tiny): every bundled study and every experiment kind's example shrinks to a valid
study with few, small, cheap runs; the study as written is not changed; bundled studies are found by name and
listed by ``biastransfer studies``."""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from biastransfer import plugins  # noqa: F401
from biastransfer.cli import app
from biastransfer.config import read_yaml
from biastransfer.data.registry import DATASETS
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.plan import parse_study, planned_trainings
from biastransfer.studies import bundled, find, resolve
from biastransfer.tiny import TINY_BASE_EXAMPLES, TINY_TEST_SIZE, shrink_study
from fake_celeba import placeholder_paths
from tiny_study import kind_study_dict

STUDIES = sorted(p.name for p in resources.files("biastransfer.studies").iterdir() if p.name.endswith(".yaml"))


def _raw(name: str) -> dict:
    return read_yaml(Path(str(resources.files("biastransfer.studies") / name)))[0]  # ${…} paths expanded


def _numbers(sizes: object) -> list[int]:
    return [int(n) for n in (sizes if isinstance(sizes, list) else [sizes]) if n != "full"]


LARGE_STUDIES = {"celeba_paper.yaml"}
"""Bundled studies of a real dataset at the paper's scale, whose tiny version is a longer smoke run."""


@pytest.mark.parametrize("name", STUDIES)
def test_every_bundled_study_shrinks_to_a_valid_small_study(name: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    placeholder_paths(monkeypatch, tmp_path)  # celeba_paper's ${…} paths
    raw = _raw(name)
    before = copy.deepcopy(raw)
    small = shrink_study(raw)
    assert raw == before  # the study as written is untouched
    study = parse_study(small, f"{name} (--tiny)")
    assert small["name"] == f"{raw['name']}-tiny" and "estimated_minutes" not in small
    assert small["dataset"]["resolution"] <= 16
    assert len(small["train"]["lr"]) == 1 and len(small["train"]["weight_decay"]) == 1
    assert small["train"]["max_epochs"] <= 2 and small["base_training"]["epochs"] == 1
    assert small["base_training"]["max_examples"] <= TINY_BASE_EXAMPLES
    assert small["evaluation"]["test_size"] <= TINY_TEST_SIZE
    assert [b["kind"] for b in small["experiments"]] == [b["kind"] for b in raw["experiments"]]
    for block, original in zip(small["experiments"], raw["experiments"], strict=True):
        assert len(block.get("seeds", [0])) <= 2
        assert all(n <= 64 for n in _numbers(block.get("n_train", [])))
        assert len(block.get("levels", [])) <= 2
        if block.get("test") in original.get("levels", []):
            assert block["test"] in block["levels"]  # a sweep keeps its reference level
    full, tiny = planned_trainings(parse_study(raw, name)), planned_trainings(study)
    # a smoke run: at most 100 runs, or 30 per block (the 8-block `paper` shrinks to 202 runs, about 20 s here);
    # the CelebA study keeps its 11 tasks and 5 bases: 340 ResNet-50 runs (docs/datasets.md: about an hour on CPU)
    bound = 340 if name in LARGE_STUDIES else max(100, 30 * len(raw["experiments"]))
    assert tiny["runs"] <= min(full["runs"], bound) and tiny["search_trainings"] == 0


@pytest.mark.parametrize("kind", EXPERIMENTS.names())
def test_every_kind_shrinks_its_example_block_to_a_valid_block(kind: str) -> None:
    """Registry-wide: a new kind's ``tiny_block`` (the default or its own) keeps its block valid."""
    study = kind_study_dict(kind)
    block = study["experiments"][0]
    study["experiments"] = [EXPERIMENTS.get(kind).tiny_block(block)]
    parse_study(study, f"tiny {kind}")
    assert study["experiments"][0]["kind"] == kind


def test_default_block_shrink() -> None:
    block = {"kind": "correlation_sweep", "seeds": [3, 4, 5], "n_train": [128, 512, 1024], "n_val": 1024,
             "levels": [0.3, 0.5, 0.8, 0.9], "test": 0.8}
    small = EXPERIMENTS.get("correlation_sweep").tiny_block(block)
    assert small == {"kind": "correlation_sweep", "seeds": [3, 4], "n_train": [32, 64], "n_val": 64,
                     "levels": [0.3, 0.8], "test": 0.8}
    assert block["seeds"] == [3, 4, 5]  # a copy
    assert EXPERIMENTS.get("inheritance").tiny_block({"n_train": 16, "levels": ["natural", 0.8, 0.9]})["levels"] \
        == ["natural", 0.9]


def test_finetune_number_chooses_its_control_at_a_size_it_keeps() -> None:
    small = EXPERIMENTS.get("finetune_number").tiny_block({"tasks": ["t5"], "options": {"control_at": 1024}})
    assert small["n_train"] == [16, 32] and small["options"] == {"control_at": 32}
    only_full = EXPERIMENTS.get("finetune_number").tiny_block({"tasks": ["t5"], "n_train": ["full"]})
    assert only_full["n_train"] == [32, "full"] and only_full["options"]["control_at"] == 32


def test_datasets_shrink_what_they_generate_and_keep_what_they_read() -> None:
    synthetic = DATASETS.get("synthetic")().tiny_params({"pretrain": 8000, "test": 100, "levels": [0.6] * 6})
    assert synthetic == {"pretrain": 600, "train": 1200, "val": 600, "test": 100, "levels": [0.6] * 6}
    params = {"pretrain_share": 0.4, "seed": 0}
    assert DATASETS.get("fashion-mnist")().tiny_params(params) == params


def test_bundled_studies_are_found_by_stem_or_name() -> None:
    stems = [s.stem for s in bundled()]
    assert stems == [n.removesuffix(".yaml") for n in STUDIES]
    assert find("fashion-spurious").stem == find("fashion_spurious").stem == "fashion_spurious"
    assert find("finetune-number").name == "finetune-number" and find("nope") is None
    assert resolve("demo").name == "demo.yaml" and resolve("nope") is None
    assert all(s.estimated_minutes for s in bundled())


def test_studies_lists_every_bundled_study_with_its_time_and_runs() -> None:
    result = CliRunner().invoke(app, ["studies"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for study in bundled():
        assert study.stem in result.output
    demo = next(line for line in result.output.splitlines() if "│ demo " in line)
    assert "≈8 min" in demo and "│ 77 " in demo
    assert "≈60 min" in next(line for line in result.output.splitlines() if "finetune_number" in line)


def test_run_names_the_bundled_studies_when_the_study_is_unknown(tmp_path) -> None:
    result = CliRunner().invoke(app, ["run", "no-such-study", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "study file not found: no-such-study, and no bundled study has that name" in result.output
    assert "demo_tiny" in result.output and "Traceback" not in result.output

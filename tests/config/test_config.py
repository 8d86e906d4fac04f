"""Study files: valid ones parse; every invalid one names the field and the allowed values."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from biastransfer.config import ConfigError, load_study, parse_study
from tiny_study import tiny_study_dict


def test_bundled_studies_are_valid():
    for name in ("demo.yaml", "demo_tiny.yaml"):
        with resources.as_file(resources.files("biastransfer.studies") / name) as path:
            study = load_study(path)
        assert study.experiments


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dataset": {"name": "imagenet-xl"}}, r"dataset.name: unknown dataset 'imagenet-xl'; allowed: .*synthetic"),
        ({"model": {"arch": "vgg"}}, r"model.arch: unknown architecture 'vgg'; allowed: .*small_resnet"),
        ({"bases": {**tiny_study_dict()["bases"], "b": {"kind": "magic"}}},
         r"bases.b.kind: unknown base kind 'magic'; allowed: .*scratch"),
        ({"train": {"lr": []}}, r"train.lr: .*at least one value"),
        ({"train": {"epochs": 3}}, r"train.epochs: unknown field"),
        ({"train": {"precision": "fp16"}}, r"train.precision: Input should be 'fp32' or 'bf16'"),
        ({"evaluation": {"threshold": "median"}}, r"evaluation.threshold: .*allowed: 'val', 'test' or a number"),
    ],
)
def test_invalid_top_level_fields(change, message):
    data = tiny_study_dict(**change)
    with pytest.raises(ConfigError, match=message):
        parse_study(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"levels": [1.3]}, r"experiments.0.levels: .*must be in \[0, 1\] or 'natural', got 1.3"),
        ({"test": -0.1}, r"experiments.0.test: .*must be in \[0, 1\]"),
        ({"kind": "magic"}, r"experiments.0.kind: unknown experiment 'magic'; allowed: correlation_sweep"),
        ({"interventions": ["oversample"]}, r"unknown intervention 'oversample'; allowed: collect"),
        ({"bases": ["nobody"]}, r"unknown base 'nobody'; defined in 'bases': gendered"),
        ({"seeds": [1, 1]}, r"seeds repeat"),
    ],
)
def test_invalid_experiment_fields(change, message):
    data = tiny_study_dict()
    data["experiments"][0].update(change)
    with pytest.raises(ConfigError, match=message):
        parse_study(data)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="study file not found"):
        load_study(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_study_dict()))
    assert load_study(good).name == "tiny"


def test_compile_and_precision_reach_the_engine_and_defaults_keep_run_keys():
    from biastransfer.experiments.finetune import fit_config
    from biastransfer.runner.execute import expand_study

    default = expand_study(parse_study(tiny_study_dict()))[0]
    assert "precision" not in default.train and "compile" not in default.train  # keys of existing studies unchanged
    assert fit_config(default, 0.1, 0.0).precision == "fp32"
    data = tiny_study_dict()
    data["train"].update(precision="bf16", compile=True)
    spec = expand_study(parse_study(data))[0]
    config = fit_config(spec, 0.1, 0.0)
    assert config.precision == "bf16" and config.compile is True
    assert spec.key != default.key

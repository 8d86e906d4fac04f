"""Study files: valid ones parse; every invalid one names the field and the allowed values."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from biastransfer.config import ConfigError
from biastransfer.plan import load_study, parse_study
from fake_celeba import placeholder_paths
from tiny_study import tiny_study_dict


def test_bundled_studies_are_valid(monkeypatch: pytest.MonkeyPatch, tmp_path):
    placeholder_paths(monkeypatch, tmp_path)  # celeba_paper's ${…} paths
    for path in resources.files("biastransfer.studies").iterdir():
        if path.name.endswith(".yaml"):
            with resources.as_file(path) as file:
                study = load_study(file)
            assert study.blocks and study.expand(), path.name


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
        ({"evaluation": {"threshold": "median"}},
         r"evaluation.threshold: .*allowed: 'val', 'val-unweighted', 'test' or a number"),
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
        ({"interventions": [{"name": "subselect", "start": 0.7}]},
         r"intervention 'subselect' has no option 'start'; allowed: start_level"),
        ({"interventions": [{"name": "subselect", "start_level": 1.7}]}, r"start_level: .*less than or equal to 1"),
        ({"interventions": ["subgroup_share"]},
         r"intervention 'subgroup_share' needs pool columns y, subgroup; experiment kind 'inheritance' provides y, a"),
        ({"bases": ["nobody"]}, r"unknown base 'nobody'; defined in 'bases': gendered"),
        ({"seeds": [1, 1]}, r"seeds repeat"),
        ({"levles": [0.5]}, r"experiments.0.levles: unknown field \(check the spelling; allowed: name, kind, .*levels"),
        ({"options": {"negatives": ["x"]}}, r"experiments.0.options.negatives: unknown field .*allowed: \(none\)"),
        ({"n_train": "full"}, r"experiments.0.n_train: .*'full' \(the whole pool\) is not a size this experiment kind"),
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


def test_salience_and_underrepresentation_options_are_typed():
    data = tiny_study_dict()
    data["experiments"][2]["options"] = {"test_sise": 100}
    with pytest.raises(ConfigError, match=r"experiments.2.options.test_sise: unknown field .*allowed: test_size, lr"):
        parse_study(data)
    data["experiments"][2]["options"] = {"test_size": 4}
    with pytest.raises(ConfigError, match=r"experiments.2.options.test_size: Input should be greater than or equal"):
        parse_study(data)
    data["experiments"][2]["options"] = {}
    data["experiments"][2]["levels"] = [0.5]  # salience draws its own sets: a level is not one of its fields
    with pytest.raises(ConfigError, match=r"experiments.2.levels: unknown field"):
        parse_study(data)


def test_a_base_role_must_be_known():
    data = tiny_study_dict()
    data["bases"]["gendered"]["role"] = "villain"
    with pytest.raises(ConfigError, match=r"bases.gendered.role: Input should be 'biased', 'control', 'scratch' or "
                                          r"'other'"):
        parse_study(data)


def test_intervention_options_reach_the_spec_and_change_the_key():
    data = tiny_study_dict()
    data["experiments"][1]["interventions"] = ["reweight", {"name": "reweight", "start_level": 0.5}]
    specs = [s for s in parse_study(data).expand() if s.kind == "correlation_sweep"]
    plain = [s for s in specs if not s.intervention_options]
    started = [s for s in specs if s.intervention_options == {"start_level": 0.5}]
    assert len(plain) == len(started) == 4
    assert {s.key for s in plain}.isdisjoint({s.key for s in started})


def test_compile_and_precision_reach_the_engine_and_defaults_keep_run_keys():
    from biastransfer.experiments.finetuning import fit_config

    default = parse_study(tiny_study_dict()).expand()[0]
    assert "precision" not in default.train and "compile" not in default.train  # keys of existing studies unchanged
    assert fit_config(default, 0.1, 0.0).precision == "fp32"
    data = tiny_study_dict()
    data["train"].update(precision="bf16", compile=True)
    spec = parse_study(data).expand()[0]
    config = fit_config(spec, 0.1, 0.0)
    assert config.precision == "bf16" and config.compile is True
    assert spec.key != default.key

"""The planted-trigger experiment (Salman et al.): blocks, sets shared by every mode, BatchNorm under the
fixed-feature modes, the ordering's reading, and a real tiny run with its golden report."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from inline_snapshot import snapshot

from biastransfer import plugins  # noqa: F401
from biastransfer.config import ConfigError
from biastransfer.data.registry import load_dataset
from biastransfer.data.table import LABEL
from biastransfer.driver import run_study
from biastransfer.experiments.base import EXPERIMENTS, RunInputs
from biastransfer.experiments.finetuning import finetune
from biastransfer.experiments.trigger_transfer.analysis import control_contrasts, orderings
from biastransfer.experiments.trigger_transfer.sets import draw_sets, target_task
from biastransfer.metrics.triggers import trigger_metrics
from biastransfer.models.architectures import build_model
from biastransfer.plan import parse_study, preflight
from biastransfer.store.sqlite import ResultStore
from biastransfer.triggers import get_trigger
from biastransfer.triggers.store import triggered_dataset
from report_snapshot import page_snapshot
from tiny_study import kind_study_dict

PARAMS = {"classes": 6, "pretrain": 60, "train": 60, "val": 40, "test": 30}


def _study(**block) -> dict:
    study = kind_study_dict("trigger_transfer")
    study["dataset"]["params"] = dict(PARAMS)
    study["bases"]["scratch"] = {"kind": "scratch"}
    study["experiments"][0].update(block)
    return study


@pytest.fixture(scope="module")
def objects(tmp_path_factory: pytest.TempPathFactory):
    return load_dataset("synthetic-objects", cache_dir=tmp_path_factory.mktemp("objects"), resolution=16, params=PARAMS)


# ------------------------------------------------------------------------------------------ blocks and specs
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modes": ["scratch", "frozen"]}, r"unknown transfer mode 'frozen'; allowed: scratch, fixed_feature"),
        ({"modes": [{"name": "scratch", "update_bn": True}]}, "mode 'scratch' takes no options"),
        ({"modes": [{"name": "fixed_feature", "update_bn": 1}]}, "update_bn must be true or false"),
        ({"modes": ["full", "full"]}, "modes repeat"),
        ({"rates": [0.0, 1.5]}, "a rate must be in"),
        ({"rates": []}, "at least one entry"),
        ({"bases": ["nowhere"]}, "unknown base 'nowhere'"),
        ({"options": {"max_test": 3}}, "max_test"),
        ({"trigger": {"kind": "patch", "colour": "mauve"}}, "colour"),
    ],
)
def test_block_validation_names_the_field(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_study(_study(**change))


def test_specs_cover_modes_rates_and_seeds_with_the_bases_trigger() -> None:
    study = parse_study(
        _study(
            modes=[
                "scratch",
                "fixed_feature",
                {"name": "fixed_feature", "update_bn": True},
                "linear_probe_then_finetune",
            ]
        )
    )
    specs = study.expand()
    assert len(specs) == 4 * 2 * 2
    modes = {s.options["mode"]: (s.base_name, s.transfer, s.transfer_options) for s in specs}
    assert modes == {
        "scratch": ("scratch", "full", {}),
        "fixed_feature": ("planted-pre", "fixed_feature", {}),
        "fixed_feature+update_bn": ("planted-pre", "fixed_feature", {"update_bn": True}),
        "linear_probe_then_finetune": ("planted-pre", "linear_probe_then_finetune", {}),
    }
    assert {s.options["trigger"]["colour"] for s in specs} == {"yellow"}
    assert {s.options["source_base"] for s in specs} == {"planted-pre"}
    assert {s.level for s in specs} == {0.0, 0.5} and {s.intervention for s in specs} == {"trigger_rate"}


def test_a_source_base_that_is_not_planted_needs_the_blocks_trigger(objects) -> None:
    study = _study(bases=["scratch"], modes=["scratch"])
    study["bases"]["scratch"] = {"kind": "scratch"}
    specs = parse_study(study).expand()
    with pytest.raises(ValueError, match="is not of kind 'planted': give the block a 'trigger'"):
        preflight(specs, lambda spec: objects)
    study["experiments"][0]["trigger"] = {"kind": "noise", "amplitude": 0.1}
    specs = parse_study(study).expand()
    assert specs[0].options["trigger"]["kind"] == "noise"
    preflight(specs, lambda spec: objects)


# ------------------------------------------------------------------------------------------ sets
def test_every_mode_gets_the_same_sets_and_the_trigger_share_is_exact_per_class(objects, tmp_path: Path) -> None:
    specs = parse_study(_study(modes=["scratch", "fixed_feature", "full"], n_train=30, n_val=20)).expand()
    by = {}
    for spec in specs:
        sets = draw_sets(spec, objects, spec.seed)
        by.setdefault((spec.level, spec.seed), []).append(sets)
        n = sets.n_clean
        y = sets.labels[sets.train_rows]
        triggered = sets.train_rows >= n
        for c in np.unique(y):
            n_c = int(np.count_nonzero(y == c))
            assert int(triggered[y == c].sum()) == round(spec.level * n_c)
        source = np.where(triggered, sets.train_rows - n, sets.train_rows)
        assert np.unique(source).size == source.size  # never both versions of an image
        assert (sets.test_rows < n).all() and (sets.labels[sets.test_rows] >= 0).all()
    for group in by.values():
        assert len(group) == 3
        for other in group[1:]:
            assert np.array_equal(other.train_rows, group[0].train_rows)
            assert np.array_equal(other.val_rows, group[0].val_rows)
    assert not np.array_equal(by[(0.5, 0)][0].train_rows, by[(0.5, 1)][0].train_rows)


def test_the_target_task_is_the_classes_the_source_did_not_use(objects) -> None:
    task = target_task(objects, {"source_classes": [0, 1, 2], "trigger_classes": [0]})
    assert task.classes == (3, 4, 5) and task.trigger_targets == ()
    task = target_task(
        objects, {"source_classes": [0, 1, 2], "trigger_classes": [0], "target_classes": ["ring", "tee", "ell"]}
    )
    assert task.classes == (0, 3, 4) and task.trigger_targets == (0,)
    with pytest.raises(ValueError, match="at least 2 classes"):
        target_task(objects, {"target_classes": [1]})


# ------------------------------------------------------------------------------------------ BatchNorm
def _bn_buffers(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k and k.startswith("backbone.")}


@pytest.mark.parametrize(
    ("mode", "moves"),
    [
        ({"name": "fixed_feature"}, False),
        ({"name": "fixed_feature", "update_bn": True}, True),
        ({"name": "full"}, True),
    ],
)
def test_batchnorm_statistics_stay_frozen_under_fixed_feature_unless_update_bn(
    objects, tmp_path: Path, mode: dict, moves: bool
) -> None:
    (spec, *_) = parse_study(_study(modes=[mode], n_train=30, n_val=20)).expand()
    torch.manual_seed(0)
    base = build_model("small_resnet", num_outputs=3, in_channels=3)
    for module in base.modules():  # statistics that a finetuning batch would certainly move
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.fill_(3.0)
            module.running_var.fill_(7.0)
    before = _bn_buffers(base)

    def new_model(spec, num_outputs: int = 1):
        model = copy.deepcopy(base)
        model.replace_head(num_outputs)
        return model

    sets = draw_sets(spec, objects, 0)
    data = triggered_dataset(objects, get_trigger(spec.options["trigger"]), tmp_path)
    inputs = RunInputs(dataset=data.dataset, device=torch.device("cpu"), new_model=new_model)
    model, _ = finetune(
        spec,
        inputs,
        SimpleNamespace(train_rows=sets.train_rows, val_rows=sets.val_rows),
        lr=0.05,
        weight_decay=0.0,
        seed=0,
        labels=sets.labels,
        num_outputs=3,
        classes=True,
    )
    after = _bn_buffers(model)
    assert before.keys() == after.keys() and before
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert bool(moved) == moves, moved


# ------------------------------------------------------------------------------------------ the reading
def _runs(asr: dict[str, list[float]], rate: float = 0.1) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "experiment": "trigger",
                "source_base": "src",
                "n_train": 500,
                "trigger_rate": rate,
                "mode": mode,
                "seed": seed,
                "attack_success_rate": value,
            }
            for mode, values in asr.items()
            for seed, value in enumerate(values)
        ]
    )


def test_the_ordering_holds_only_when_every_paired_interval_is_above_zero() -> None:
    (o,) = orderings(
        _runs({"fixed_feature": [0.8, 0.82, 0.85], "full": [0.3, 0.33, 0.31], "scratch": [0.05, 0.06, 0.04]})
    )
    assert o.holds and o.status == "holds" and [s.status for s in o.steps] == ["holds", "holds"]
    assert o.steps[0].mean == pytest.approx(np.mean([0.5, 0.49, 0.54]))
    assert "fixed_feature > full > scratch holds" in o.sentence()
    # paired: a constant offset on noisy values still holds; unpaired noise would not
    (o,) = orderings(_runs({"fixed_feature": [0.9, 0.5, 0.2], "full": [0.85, 0.45, 0.15]}))
    assert o.steps[0].status == "holds"
    (o,) = orderings(
        _runs({"fixed_feature": [0.3, 0.31, 0.29], "full": [0.5, 0.52, 0.49], "scratch": [0.01, 0.0, 0.02]})
    )
    assert o.steps[0].status == "reversed" and o.status == "does not hold"
    (o,) = orderings(_runs({"full": [0.1, 0.3, 0.0], "scratch": [0.05, 0.1, 0.2]}))
    assert o.status == "not established"
    assert orderings(_runs({"full": [0.1, 0.3]})) == []
    two_blocks = pd.concat(
        [
            _runs({"full": [0.3, 0.31, 0.32], "scratch": [0.0, 0.01, 0.0]}),
            _runs({"full": [0.0, 0.01, 0.0], "scratch": [0.3, 0.31, 0.32]}).assign(experiment="b"),
        ]
    )
    assert [(o.experiment, o.status) for o in orderings(two_blocks)] == [("b", "does not hold"), ("trigger", "holds")]
    (o,) = orderings(_runs({"full": [0.1], "scratch": [0.0]}))
    assert o.steps[0].status == "one seed"


def test_a_planted_source_is_set_against_a_control_source_paired_by_seed() -> None:
    planted = _runs({"fixed_feature": [0.8, 0.7, 0.9], "full": [0.1, 0.2, 0.1]}).assign(source_rate=1.0)
    control = _runs({"fixed_feature": [0.2, 0.1, 0.3], "full": [0.1, 0.2, 0.1]}).assign(
        source_base="ctl", source_rate=0.0, experiment="control"
    )
    scratch = _runs({"scratch": [0.0, 0.1, 0.0]}).assign(source_rate=math.nan)
    found = {c.mode: c for c in control_contrasts(pd.concat([planted, control, scratch]))}
    assert set(found) == {"fixed_feature", "full"}  # scratch has no source rate; blocks may differ
    ff = found["fixed_feature"]
    assert (ff.planted, ff.control) == ("src", "ctl") and ff.step.mean == pytest.approx(0.6)
    assert ff.step.status == "holds" and "adds +0.600" in ff.sentence() and "established" in ff.sentence()
    assert found["full"].step.status == "one seed" or found["full"].step.mean == 0.0
    assert control_contrasts(planted) == []


# ------------------------------------------------------------------------------------------ a real run
EXAMPLE = kind_study_dict("trigger_transfer")


@pytest.fixture(scope="module")
def finished_dir(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("trigger_transfer")
    run_study(parse_study(EXAMPLE), out, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True, workers="1")
    return out


def test_the_metrics_recompute_from_the_stored_scores(finished_dir: Path, cache_dir: Path) -> None:
    store = ResultStore.open_existing(finished_dir)
    runs = store.runs()
    assert len(runs) == 3 * 2 * 2  # modes × rates × seeds
    data = load_dataset(
        "synthetic-objects", cache_dir=cache_dir / "data", resolution=16, params=EXAMPLE["dataset"]["params"]
    )
    raw = data.table.frame[LABEL].to_numpy()
    flipped = []
    for run in runs:
        res, art = run["result"], store.artifacts(run["key"])
        clean, trig = art["test_scores_clean"], art["test_scores_triggered"]
        assert clean.shape == trig.shape == (art["test_rows"].size, 3)
        labels = raw[art["test_rows"]] - 3  # the target classes are 3, 4, 5 of the dataset, renumbered
        assert set(labels) <= {0, 1, 2}
        again = trigger_metrics(labels, clean.argmax(1), trig.argmax(1), 3)
        assert res["attack_success_rate"] == pytest.approx(again.attack_success_rate, nan_ok=True)
        assert res["prediction_shift"] == pytest.approx(again.prediction_shift)
        assert res["clean_accuracy"] == pytest.approx(again.clean_accuracy)
        assert math.isnan(res["targeted_rate"])  # the trigger's class (0) is not a target class
        assert (art["trigger_top"] == 0).all() and (art["trigger_left"] == 0).all()
        assert res["target_classes"] == list(data.table.classes[3:6])
        n = len(data.images)
        triggered = art["train_rows"] >= n
        assert res["trigger_share"] == pytest.approx(triggered.mean())
        assert (triggered.any()) == (run["spec"]["level"] > 0)
        flipped.append(bool((clean.argmax(1) != trig.argmax(1)).any()))
    assert any(flipped), "the triggered copies were never scored (clean rows scored twice?)"
    store.close()


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("trigger_transfer").html) == snapshot(
        {
            "summary": {"numbers": ["12", "12", "6", "2", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    ["40", "0.00", "0.155", "0.039", "0.036", "0.116", "-1.361", "1.593", "0.003", "-0.253", "0.259"],
                    ["40", "0.50", "0.108", "0.015", "0.048", "0.093", "-0.469", "0.655", "-0.033", "-0.234", "0.168"],
                ],
            },
            "trigger_transfer": {
                "headings": ["Planted trigger: does the source's bias survive transfer?"],
                "tables": [
                    [
                        [
                            "block",
                            "source",
                            "N",
                            "p",
                            "mode",
                            "seeds",
                            "attack success",
                            "clean accuracy",
                            "prediction shift",
                        ],
                        [
                            "trigger_transfer",
                            "planted-pre",
                            "40",
                            "0.00",
                            "fixed_feature",
                            "2",
                            "0.155 [-1.199, 1.509]",
                            "0.346 [0.293, 0.399]",
                            "0.092 [-0.650, 0.833]",
                        ],
                        [
                            "trigger_transfer",
                            "planted-pre",
                            "40",
                            "0.00",
                            "full",
                            "2",
                            "0.039 [-0.084, 0.162]",
                            "0.312 [-0.058, 0.683]",
                            "0.033 [0.033, 0.033]",
                        ],
                        [
                            "trigger_transfer",
                            "planted-pre",
                            "40",
                            "0.00",
                            "scratch",
                            "2",
                            "0.036 [-0.097, 0.169]",
                            "0.342 [0.130, 0.553]",
                            "0.058 [-0.153, 0.270]",
                        ],
                        [
                            "trigger_transfer",
                            "planted-pre",
                            "40",
                            "0.50",
                            "fixed_feature",
                            "2",
                            "0.108 [-0.641, 0.857]",
                            "0.346 [0.293, 0.399]",
                            "0.071 [-0.406, 0.547]",
                        ],
                        [
                            "trigger_transfer",
                            "planted-pre",
                            "40",
                            "0.50",
                            "full",
                            "2",
                            "0.015 [-0.172, 0.202]",
                            "0.308 [-0.009, 0.626]",
                            "0.013 [-0.040, 0.065]",
                        ],
                        [
                            "trigger_transfer",
                            "planted-pre",
                            "40",
                            "0.50",
                            "scratch",
                            "2",
                            "0.048 [0.033, 0.062]",
                            "0.350 [0.244, 0.456]",
                            "0.050 [-0.374, 0.474]",
                        ],
                    ]
                ],
                "figures": ["plots/trigger_transfer.png"],
                "numbers": [
                    ["95"],
                    ["40", "0.00", "0.155", "0.039", "0.036", "0.116", "-1.361", "1.593", "0.003", "-0.253", "0.259"],
                    ["40", "0.50", "0.108", "0.015", "0.048", "0.093", "-0.469", "0.655", "-0.033", "-0.234", "0.168"],
                ],
            },
            "results": {
                "headings": ["Results per setting", "trigger_transfer"],
                "tables": [
                    [
                        [
                            "task",
                            "base",
                            "base_role",
                            "mode",
                            "trigger_rate",
                            "seeds",
                            "attack_success_rate",
                            "targeted_rate",
                            "prediction_shift",
                            "clean_accuracy",
                            "triggered_accuracy",
                        ],
                        [
                            "label",
                            "planted-pre",
                            "biased",
                            "fixed_feature",
                            "0",
                            "2",
                            "0.155 [-1.199, 1.509]",
                            "—",
                            "0.092 [-0.650, 0.833]",
                            "0.346 [0.293, 0.399]",
                            "0.308 [0.097, 0.520]",
                        ],
                        [
                            "label",
                            "planted-pre",
                            "biased",
                            "fixed_feature",
                            "0.5",
                            "2",
                            "0.108 [-0.641, 0.857]",
                            "—",
                            "0.071 [-0.406, 0.547]",
                            "0.346 [0.293, 0.399]",
                            "0.325 [0.325, 0.325]",
                        ],
                        [
                            "label",
                            "planted-pre",
                            "biased",
                            "full",
                            "0",
                            "2",
                            "0.039 [-0.084, 0.162]",
                            "—",
                            "0.033 [0.033, 0.033]",
                            "0.312 [-0.058, 0.683]",
                            "0.312 [0.048, 0.577]",
                        ],
                        [
                            "label",
                            "planted-pre",
                            "biased",
                            "full",
                            "0.5",
                            "2",
                            "0.015 [-0.172, 0.202]",
                            "—",
                            "0.013 [-0.040, 0.065]",
                            "0.308 [-0.009, 0.626]",
                            "0.304 [-0.066, 0.675]",
                        ],
                        [
                            "label",
                            "scratch",
                            "other",
                            "scratch",
                            "0",
                            "2",
                            "0.036 [-0.097, 0.169]",
                            "—",
                            "0.058 [-0.153, 0.270]",
                            "0.342 [0.130, 0.553]",
                            "0.354 [-0.016, 0.725]",
                        ],
                        [
                            "label",
                            "scratch",
                            "other",
                            "scratch",
                            "0.5",
                            "2",
                            "0.048 [0.033, 0.062]",
                            "—",
                            "0.050 [-0.374, 0.474]",
                            "0.350 [0.244, 0.456]",
                            "0.363 [-0.114, 0.839]",
                        ],
                    ]
                ],
                "figures": [],
                "numbers": [["95"], []],
            },
            "hparams": {
                "headings": ["Chosen hyperparameters"],
                "tables": [
                    [
                        ["base", "task", "n_train", "lr", "weight_decay", "val_loss", "trials"],
                        ["scratch", "label", "40", "0.05", "0.0005", "—", "0"],
                        ["planted-pre", "label", "40", "0.05", "0.0005", "—", "0"],
                        ["planted-pre", "label", "40", "0.05", "0.0005", "—", "0"],
                    ]
                ],
                "figures": [],
                "numbers": [],
            },
        }
    )


def test_the_kind_is_registered_with_its_example() -> None:
    plugin = EXPERIMENTS.get("trigger_transfer")
    assert plugin.pool_columns == ("y", "triggered", "example")
    assert {c.name for c in plugin.columns} >= {
        "attack_success_rate",
        "targeted_rate",
        "prediction_shift",
        "clean_accuracy",
        "mode",
        "trigger_rate",
    }

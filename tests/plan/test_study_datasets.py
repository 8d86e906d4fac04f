"""A study with several datasets: blocks name one of the study's ``datasets``; the specs carry it, roles derive
from its sensitive attribute, the data check is per dataset, ``--tiny`` shrinks every dataset."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from biastransfer.config import ConfigError
from biastransfer.driver import other_data, run_study
from biastransfer.plan import parse_study, resolve_roles
from biastransfer.store.sqlite import ResultStore
from biastransfer.tiny import shrink_study
from tiny_study import TINY_PARAMS, tiny_study_dict

OBJECTS = {"name": "synthetic-objects", "resolution": 16,
           "params": {"classes": 4, "pretrain": 120, "train": 60, "val": 30, "test": 40}}


def two_dataset_study() -> dict:
    study = tiny_study_dict()
    study["experiments"] = study["experiments"][:1]  # inheritance on the synthetic benchmark
    study["datasets"] = {"objects": copy.deepcopy(OBJECTS)}
    study["bases"]["shapes"] = {"kind": "trained", "attribute": "label"}
    study["bases"]["on-domain"] = {"kind": "trained", "attribute": "diverse"}
    study["experiments"].append({"name": "mix", "kind": "domain_mixture", "dataset": "objects",
                                 "bases": ["shapes", "on-domain"], "shares": [0.25, 0.5], "n_train": 16,
                                 "n_val": 16, "seeds": [0], "options": {"top_k": 2}})
    return study


def test_a_block_runs_on_the_dataset_it_names() -> None:
    specs = parse_study(two_dataset_study()).expand()
    by_block = {s.experiment: s.dataset["name"] for s in specs}
    assert by_block == {"inheritance": "synthetic", "mix": "synthetic-objects"}
    assert {s.dataset["params"]["classes"] for s in specs if s.experiment == "mix"} == {4}


def test_an_unknown_dataset_name_is_an_error_naming_the_known_ones() -> None:
    study = two_dataset_study()
    study["experiments"][1]["dataset"] = "objets"
    with pytest.raises(ConfigError, match=r"dataset 'objets' is not among the study's 'datasets': objects"):
        parse_study(study)
    study = two_dataset_study()
    study["datasets"]["objects"]["name"] = "no-such-data"
    with pytest.raises(ConfigError, match=r"datasets\.objects\.name: unknown dataset 'no-such-data'"):
        parse_study(study)


def test_roles_derive_from_the_sensitive_attribute_of_each_base_s_dataset() -> None:
    config = parse_study(two_dataset_study()).config
    roles = resolve_roles(config, {"gendered": "a", "on-domain": "diverse", "shapes": "diverse", "": "a"})
    assert roles["gendered"] == "biased" and roles["on-domain"] == "biased"
    assert roles["shapes"] == "control" and roles["control-t0"] == "control"
    assert resolve_roles(config, "a")["on-domain"] == "control"  # one dataset: its attribute for every base


def test_tiny_shrinks_every_dataset() -> None:
    study = two_dataset_study()
    study["datasets"]["objects"] = {"name": "synthetic-objects", "resolution": 32, "params": {"train": 5000}}
    tiny = shrink_study(study)
    assert tiny["datasets"]["objects"]["resolution"] == 16
    assert tiny["datasets"]["objects"]["params"]["train"] == 300


def test_a_two_dataset_study_runs_and_checks_each_dataset_s_data(tmp_path: Path, cache_dir: Path) -> None:
    study = parse_study(two_dataset_study())
    summary = run_study(study, tmp_path, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True, workers="1")
    assert summary.ran == len(study.expand())
    store = ResultStore.open_existing(tmp_path)
    try:
        hashes = {r["spec"]["dataset"]["name"]: r["provenance"]["data_hash"] for r in store.runs()}
        assert len(set(hashes.values())) == 2
        assert store.get_meta("roles")["on-domain"] == "biased"  # trained on 'diverse', the objects' attribute
        objects = {**OBJECTS, "root": None}  # as the specs carry it
        assert store.data_hashes_of(objects) == {hashes["synthetic-objects"]}
        synthetic = {"name": "synthetic", "resolution": 16, "root": None, "params": dict(TINY_PARAMS)}
        as_stored = {json.dumps(objects, sort_keys=True): hashes["synthetic-objects"],
                     json.dumps(synthetic, sort_keys=True): hashes["synthetic"]}
        assert store.get_meta("data_fingerprints") == as_stored
        assert other_data(store, as_stored) == {}  # each dataset's own data: nothing else in the folder
        changed = {**as_stored, json.dumps(objects, sort_keys=True): "feedfacefeedface"}
        assert other_data(store, changed) == {json.dumps(objects, sort_keys=True): {hashes["synthetic-objects"]}}
    finally:
        store.close()
    again = run_study(study, tmp_path, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True, workers="1")
    assert again.ran == 0

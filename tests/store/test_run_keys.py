"""The run key: every field that changes a run's numbers is in it (field by field, in the spec and in the study
file), a field added with a default changes no existing key, and a results folder of release 0.1 keeps working
(nothing reruns, its searches are reused) or is refused with what to do — never mixed."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from biastransfer import spec as spec_module
from biastransfer.driver import run_study, split_runs, upgrade
from biastransfer.plan import Study, load_study, parse_study, plan_jobs
from biastransfer.spec import ADDED_FIELDS, RunSpec, prune_added
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore, StoreLayoutError
from tiny_study import tiny_study_dict

RELEASE_01 = Path(__file__).parent / "fixtures" / "release-0.1"
"""A results folder written by biastransfer 0.1 (commit dae4927) for ``study.yaml`` (the tiny study of that
release's test suite): 22 runs, 3 hyperparameter searches."""

BASE_SPEC = parse_study(tiny_study_dict()).expand()[0]


def _changed(value: Any) -> Any:
    """A different value of the same shape."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, value[0] if value else 1]
    if isinstance(value, dict):
        return {**value, "added": 1}
    if value is None:
        return 7
    raise TypeError(type(value))


def _leaves(d: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _leaves(v, (*prefix, k))
        out.append((*prefix, k))
    return out


def _set(d: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(d)
    node = d
    for name in path[:-1]:
        node = node[name]
    node[path[-1]] = value
    return d


def _get(d: dict[str, Any], path: tuple[str, ...]) -> Any:
    for name in path:
        d = d[name]
    return d


@pytest.mark.parametrize("path", _leaves({**BASE_SPEC.to_dict(), "train": BASE_SPEC.train}), ids=".".join)
def test_every_spec_field_is_in_the_key(path: tuple[str, ...]) -> None:
    """Changing any field of a RunSpec, nested settings included, changes its key."""
    data = BASE_SPEC.to_dict()
    changed = RunSpec.from_dict(_set(data, path, _changed(_get(data, path))))
    assert changed.key != BASE_SPEC.key, f"the run key ignores {'.'.join(path)}"


def test_added_fields_are_in_the_key_when_set() -> None:
    """At its default an added field is out of the payload; at another value it is in the key."""
    for path, default in ADDED_FIELDS.items():
        data = _set(BASE_SPEC.to_dict(), path, default)
        at_default = RunSpec.from_dict(data)
        assert path[-1] not in _get(at_default.key_payload(), path[:-1]), ".".join(path)
        assert RunSpec.from_dict(_set(data, path, _changed(default))).key != at_default.key, ".".join(path)


def test_a_field_added_with_a_default_changes_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a release that adds a training setting with a default: listed in ADDED_FIELDS, existing keys
    stay; set to another value, it gives a new key."""
    monkeypatch.setattr(spec_module, "ADDED_FIELDS", {**ADDED_FIELDS, ("train", "label_smoothing"): 0.0})
    plain = BASE_SPEC
    with_default = dataclasses.replace(plain, train={**plain.train, "label_smoothing": 0.0})
    with_value = dataclasses.replace(plain, train={**plain.train, "label_smoothing": 0.1})
    assert with_default.key == plain.key and with_value.key != plain.key
    assert with_default.hparam_key() == plain.hparam_key()


def _train_change(name: str, value: Any) -> Any:
    return lambda study: study["train"].update({name: value})


STUDY_CHANGES: dict[str, Any] = {
    "dataset.resolution": lambda s: s["dataset"].update(resolution=20),
    "dataset.params": lambda s: s["dataset"]["params"].update(seed=3),
    "dataset.root": lambda s: s["dataset"].update(root="/somewhere"),
    "model.arch": lambda s: s["model"].update(arch="small_resnet_wide"),
    "model.transfer": lambda s: s["model"].update(transfer="fixed_feature"),
    "model.transfer_options": lambda s: s["model"].update(transfer="fixed_feature",
                                                          transfer_options={"update_bn": True}),
    "base_training.epochs": lambda s: s["base_training"].update(epochs=2),
    "base_training.lr": lambda s: s["base_training"].update(lr=0.1),
    "base_training.max_examples": lambda s: s["base_training"].update(max_examples=100),
    "base_training.seed": lambda s: s["base_training"].update(seed=1),
    "bases.options": lambda s: s["bases"]["control-t0"].update(attribute="t1"),
    "evaluation.threshold": lambda s: s["evaluation"].update(threshold="test"),
    "evaluation.threshold.val-unweighted": lambda s: s["evaluation"].update(threshold="val-unweighted"),
    "evaluation.test_size": lambda s: s["evaluation"].update(test_size=300),
    "experiments.n_val": lambda s: [b.update(n_val=16) for b in s["experiments"]],
    "experiments.test": lambda s: s["experiments"][0].update(test=0.5),
    "experiments.interventions.options": lambda s: s["experiments"][1].update(
        interventions=["collect", {"name": "reweight", "start_level": 0.5}]),
    "experiments.options": lambda s: s["experiments"][2].update(options={"test_size": 100}),
    "experiments.objectives": lambda s: s["experiments"][1].update(objectives=["group_dro"]),
    "experiments.objectives.options": lambda s: s["experiments"][1].update(
        objectives=[{"name": "group_dro", "eta": 0.5}]),
    **{f"train.{name}": _train_change(name, value)
       for name, value in (("lr", [0.01]), ("weight_decay", [0.0]), ("momentum", 0.5), ("batch_size", 32),
                           ("max_epochs", 3), ("patience", 2), ("hp_seeds", 2), ("flip", False),
                           ("compile", True), ("precision", "bf16"))},
}


@pytest.mark.parametrize("field", sorted(STUDY_CHANGES))
def test_every_study_setting_that_reaches_a_run_changes_its_key(field: str) -> None:
    """A setting of the study file changes the spec of some runs, and every run whose spec changed has a new key
    (the setting reaches the run and its key)."""
    study = tiny_study_dict()
    STUDY_CHANGES[field](study)
    before, after = parse_study(tiny_study_dict()).expand(), parse_study(study).expand()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a.to_dict() != b.to_dict()]
    assert changed, f"{field} does not reach any run"
    assert all(a.key != b.key for a, b in changed), f"{field} reaches a run but not its key"


def _study_with_threshold(threshold: str | float | None) -> dict[str, Any]:
    study = tiny_study_dict()
    if threshold is None:
        del study["evaluation"]["threshold"]
    else:
        study["evaluation"]["threshold"] = threshold
    return study


def test_the_reweighted_default_val_never_shares_a_key_with_the_unweighted_val_of_01() -> None:
    """The threshold policy ``val`` now reweights the validation set to the test cells (docs/metrics.md): its
    runs get new keys. ``val-unweighted`` is 0.1's ``val``: the same spec (``threshold: "val"``, the added field
    ``calibration`` at its default, out of the payload), hence the same key. ``test`` and fixed thresholds keep
    their keys (no weights involved), and so do the runs of a kind that picks no threshold (salience)."""
    new = parse_study(_study_with_threshold(None)).expand()
    assert [s.key for s in parse_study(_study_with_threshold("val")).expand()] == [s.key for s in new]
    old = parse_study(_study_with_threshold("val-unweighted")).expand()
    unthresholded = [n.key == o.key for n, o in zip(new, old, strict=True) if n.kind == "salience"]
    assert unthresholded and all(unthresholded)
    new = [s for s in new if s.kind != "salience"]
    assert not {s.key for s in new} & {s.key for s in old}
    for spec in old:
        assert spec.threshold == "val" and spec.threshold_policy == "val-unweighted"
        legacy = {k: v for k, v in spec.to_dict().items() if k != "calibration"}  # a spec as 0.1 stored it
        assert RunSpec.from_dict(legacy).key == spec.key and spec.key_payload() == prune_added(legacy)
    assert {s.threshold_policy for s in new} == {"val"} and {s.calibration for s in new} == {"reweighted"}
    for policy in ("test", 0.25):
        specs = parse_study(_study_with_threshold(policy)).expand()
        assert all("calibration" not in s.key_payload() and s.threshold_policy == policy for s in specs)


def test_a_role_or_description_changes_no_key() -> None:
    study = tiny_study_dict(description="another description")
    study["bases"]["control-t0"]["role"] = "other"
    assert [s.key for s in parse_study(study).expand()] == [s.key for s in parse_study(tiny_study_dict()).expand()]


@pytest.fixture()
def release_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(RELEASE_01, out)
    return out


def release_study(folder: Path, threshold: str = "val-unweighted") -> Study:
    """The fixture's study with ``evaluation.threshold: val-unweighted``: what 0.1 meant by ``val``, which now
    reweights the validation set to the test cells and has other keys (docs/studies.md, "Folders of release
    0.1")."""
    raw = yaml.safe_load((folder / "study.yaml").read_text())
    raw["evaluation"]["threshold"] = threshold
    return parse_study(raw, str(folder / "study.yaml"))


def test_a_release_01_folder_reruns_nothing(release_folder: Path, cache_dir: Path) -> None:
    """Asked for ``val-unweighted`` (0.1's ``val``), the study finds all 22 runs of the folder. Its default
    ``val`` (reweighted) has none of the keys of the 20 thresholded runs, so it would rerun them instead of
    pooling with them; the 2 salience runs pick no threshold and keep their keys."""
    study = release_study(release_folder)
    done = ResultStore.open_existing(release_folder, check=False).done_keys()
    assert {s.key for s in study.expand()} == done
    default = load_study(release_folder / "study.yaml").expand()
    assert {s.key for s in default if s.kind == "salience"} <= done
    assert not {s.key for s in default if s.kind != "salience"} & done and len(default) == 22
    summary = run_study(study, release_folder, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    assert summary.ran == 0 and summary.skipped == 22
    store = ResultStore.open_existing(release_folder)  # upgraded: readable now
    assert store.layout()["upgraded_from"] == "0.1"
    assert store.get_meta("roles") == {"gendered": "biased", "control-t0": "control", "scratch": "scratch"}
    assert set(runs_frame(store)["threshold_policy"].dropna()) == {"val-unweighted"}  # never read as 'val'
    store.close()


def test_a_release_01_folder_reuses_its_hyperparameter_searches(release_folder: Path, cache_dir: Path) -> None:
    """Drop one run: the rerun trains exactly that run; its search is found under its 0.1 key."""
    conn = sqlite3.connect(release_folder / "results.db")
    key = conn.execute("SELECT key FROM runs WHERE kind = 'inheritance' LIMIT 1").fetchone()[0]
    conn.execute("DELETE FROM artifacts WHERE key = ?", (key,))
    conn.execute("DELETE FROM runs WHERE key = ?", (key,))
    conn.commit()
    conn.close()
    study = release_study(release_folder)
    store = ResultStore.open_existing(release_folder, check=False)
    todo = [s for s in study.expand() if s.key not in store.done_keys()]
    jobs = plan_jobs(todo, store.get_hparams)
    store.close()
    assert [job.kind for job in jobs] in (["run"], ["base", "run"])  # no search: found under its 0.1 key
    assert jobs[-1].given["hparams"]["lr"] == 0.05
    summary = run_study(study, release_folder, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    assert summary.ran == 1


def test_reading_a_release_01_folder_says_what_to_do(release_folder: Path) -> None:
    with pytest.raises(StoreLayoutError, match=r"written by biastransfer 0.1: run 'biastransfer upgrade .*'"):
        ResultStore.open_existing(release_folder)


def test_a_release_01_folder_with_other_keys_is_refused_not_mixed(release_folder: Path, cache_dir: Path) -> None:
    conn = sqlite3.connect(release_folder / "results.db")
    conn.execute("UPDATE runs SET key = 'not-a-key-of-this-version' WHERE rowid = 1")
    conn.commit()
    conn.close()
    study = release_study(release_folder)
    with pytest.raises(StoreLayoutError, match=r"1 of its 22 runs have keys this version computes differently"):
        run_study(study, release_folder, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True)
    conn = sqlite3.connect(release_folder / "results.db")
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 22
    assert conn.execute("SELECT value FROM meta WHERE name = 'layout'").fetchone() is None


def test_a_folder_of_another_key_version_is_refused(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.set_meta("layout", {"key_version": 99})
    store.close()
    with pytest.raises(StoreLayoutError, match="written by a newer biastransfer"):
        ResultStore.open_existing(tmp_path)


def test_upgrade_command(release_folder: Path, cache_dir: Path) -> None:
    from typer.testing import CliRunner

    from biastransfer.cli import app

    result = CliRunner().invoke(app, ["upgrade", str(release_folder), "--cache-dir", str(cache_dir)])
    assert result.exit_code == 0, result.output
    assert "22 runs checked" in " ".join(result.output.split())
    report = CliRunner().invoke(app, ["report", str(release_folder), "--quiet"])
    assert report.exit_code == 0, report.output
    text = (release_folder / "report.html").read_text()
    assert '<section id="inheritance">' in text and "biased (gendered)" in text


def test_the_fixture_is_what_its_study_says() -> None:
    raw = yaml.safe_load((RELEASE_01 / "study.yaml").read_text())
    assert raw["name"] == "tiny" and len(raw["experiments"]) == 3


def test_a_run_on_other_data_is_kept_rerun_and_never_pooled(release_folder: Path, cache_dir: Path) -> None:
    """Same setting, other pixels (the data under a root changed, or generation changed): the data's fingerprint
    is part of the key, so that run is computed again on the data as it is now, and the old one is kept in the
    folder but left out of the current study."""
    conn = sqlite3.connect(release_folder / "results.db")
    conn.execute("UPDATE runs SET provenance = json_set(provenance, '$.data_hash', 'feedfacefeedface') "
                 "WHERE rowid = 3")
    changed = conn.execute("SELECT key FROM runs WHERE rowid = 3").fetchone()[0]
    conn.commit()
    conn.close()
    summary = run_study(release_study(release_folder), release_folder, device=torch.device("cpu"),
                        cache_dir=cache_dir, quiet=True)
    assert summary.ran == 1 and summary.skipped == 21
    store = ResultStore.open_existing(release_folder)
    try:
        current, others = split_runs(store)
        assert len(current) == 22 and [r["provenance"]["data_hash"] for r in others] == ["feedfacefeedface"]
        assert RunSpec.from_dict(others[0]["spec"]).setting_key() == changed
    finally:
        store.close()


@pytest.mark.parametrize("stamped", [False, True], ids=["a 0.1 folder", "a folder upgraded before the fingerprint"])
def test_upgrading_puts_the_data_into_every_key(release_folder: Path, cache_dir: Path, stamped: bool) -> None:
    """Once, exactly: every run's spec gains the fingerprint its provenance records and is rekeyed with its
    artifacts; every search is rekeyed with its dataset's fingerprint; a second upgrade changes nothing. The same
    for a folder that an earlier 0.2 had already stamped with key version 1 (without ``data_in_keys``)."""
    if stamped:
        conn = sqlite3.connect(release_folder / "results.db")
        conn.execute("INSERT INTO meta (name, value) VALUES ('layout', ?)",
                     ('{"key_version": 1, "upgraded_from": "0.1"}',))
        conn.commit()
        conn.close()
    before = ResultStore.open_existing(release_folder, check=False)
    old = {r["key"]: r for r in before.runs()}
    old_searches = {h["key"] for h in before.all_hparams()}
    before.close()
    upgrade(release_folder, release_study(release_folder), cache_dir=cache_dir)
    store = ResultStore.open_existing(release_folder)
    try:
        runs = store.runs()
        assert len(runs) == len(old) == 22 and not {r["key"] for r in runs} & set(old)
        for run in runs:
            spec = RunSpec.from_dict(run["spec"])
            assert spec.data_fingerprint == run["provenance"]["data_hash"] and spec.key == run["key"]
            assert spec.setting_key() in old
            store.artifacts(run["key"])  # moved with the run
        searches = store.all_hparams()
        assert len(searches) == len(old_searches) and not {h["key"] for h in searches} & old_searches
        assert store.layout()["data_in_keys"] and store.layout()["data_keys_rewritten"]["runs"] == 22
        assert store.upgrade() == 0 and {r["key"] for r in store.runs()} == {r["key"] for r in runs}
    finally:
        store.close()

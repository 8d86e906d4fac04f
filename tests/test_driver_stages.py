"""The driver's stages called one by one (``biastransfer.driver.stages``), what a study run says (the runs already
done with ``--max-runs``, a resumed folder's other thread count), and one backend per study (made once, used by
every round of the adaptive loop, closed once, also when the study fails or is interrupted)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console

from biastransfer.backends import Resources
from biastransfer.backends.workspace import Workspace
from biastransfer.driver import execute, run_study
from biastransfer.driver.stages import (
    Selection,
    adopt_runs,
    check_runs,
    fingerprint_data,
    note_threads,
    record_study,
    replan,
    select_runs,
    upgrade_layout,
    with_fingerprints,
)
from biastransfer.plan import parse_study, result_key
from biastransfer.store.current import CURRENT_SETTINGS, split_runs
from biastransfer.store.sqlite import ResultStore
from tiny_study import tiny_study_dict

CPU = torch.device("cpu")
FAST = {"lr": [0.05], "weight_decay": [0.0005], "max_epochs": 1, "patience": 1}


def _sweep(**block) -> dict:
    """A sweep of 8 runs on the scratch base (collect and reweight at 0.5 and 0.8, seeds 0 and 1)."""
    study = tiny_study_dict(name="stages", train=dict(FAST), evaluation={"threshold": "val", "test_size": 100})
    study["bases"] = {"scratch": {"kind": "scratch"}}
    study["experiments"] = [{"name": "sweep", "kind": "correlation_sweep", "tasks": ["t3"], "bases": ["scratch"],
                             "interventions": ["collect", "reweight"], "levels": [0.5, 0.8], "n_train": 16,
                             "seeds": [0, 1], "test": 0.8, **block}]
    return study


def _recommend(**options) -> dict:
    """A recommendation on the scratch base (reweight @ 0.5 against collect @ 0.8, up to 2 seeds)."""
    study = _sweep()
    study["experiments"] = [{"name": "rec", "kind": "recommend", "task": "t3", "bases": ["scratch"],
                             "interventions": ["reweight"], "levels": [0.5], "n_train": 16, "test": 0.8,
                             "seeds": [0, 1], "options": {"min_seeds": 2, **options}}]
    return study


def _console() -> tuple[Console, io.StringIO]:
    text = io.StringIO()
    return Console(file=text, width=400, force_terminal=False, color_system=None), text


def _said(text: io.StringIO) -> str:
    return " ".join(text.getvalue().split())


def _fake_run(store: ResultStore, spec, threads: int = 1, **provenance) -> None:
    store.add_run(spec.key, spec.to_dict(), {"auc": 0.5}, {"torch_threads": threads, **provenance}, {}, 1.0)


def _workspace(tmp_path: Path, cache_dir: Path) -> Workspace:
    return Workspace(Resources(device=CPU, cache_dir=cache_dir, out_dir=tmp_path / "out"))


# ------------------------------------------------------------------------------------------ stages, one by one


def test_select_runs_counts_the_stored_runs_and_those_left_for_later(tmp_path: Path) -> None:
    study = parse_study(_sweep())
    specs = study.expand()
    store = ResultStore(tmp_path / "out")
    assert upgrade_layout(store) == 0
    for spec in specs[:2]:
        _fake_run(store, spec)
    selection = select_runs(store, study, specs, max_runs=3)
    assert (len(selection.specs), len(selection.done), len(selection.todo), selection.left) == (8, 2, 3, 3)
    assert [s.key for s in selection.todo] == [s.key for s in specs[2:5]]
    everything = select_runs(store, study, specs, max_runs=None)
    assert (len(everything.todo), everything.left, everything.searching) == (6, 0, [])
    jobs = replan(store, selection.todo)
    assert [job.kind for job in jobs] == ["hparams", "run", "run", "run"]  # scratch trains no base
    store.put_hparams(jobs[0].key.removeprefix("hparams:"), {}, {"lr": 0.05, "weight_decay": 0.0005})
    assert [job.kind for job in replan(store, selection.todo)] == ["run"] * 3  # the stored search is reused
    store.close()


def test_fingerprints_name_runs_on_other_data_and_the_study_records_its_settings(
    tmp_path: Path, cache_dir: Path
) -> None:
    study = parse_study(_sweep())
    specs = study.expand()
    store = ResultStore(tmp_path / "out")
    _fake_run(store, specs[0].replace(data_fingerprint="0ld"), data_hash="0ld")
    console, text = _console()
    fingerprints = fingerprint_data(store, specs, _workspace(tmp_path, cache_dir), console)
    assert len(fingerprints) == 1
    assert "were computed on other data (fingerprint 0ld" in _said(text)
    keyed = with_fingerprints(specs, fingerprints)
    begun = []
    real = store._transaction
    store._transaction = lambda: (begun.append(1), real())[1]
    record_study(store, study, keyed, fingerprints)
    store._transaction = real
    assert len(begun) == 1  # study, fingerprints and settings in one transaction: never a new study beside old keys
    assert store.get_meta(CURRENT_SETTINGS) == sorted(s.setting_key() for s in keyed)
    _fake_run(store, keyed[1], data_hash=keyed[1].data_fingerprint)
    current, others = split_runs(store)  # the run on other data is kept, never pooled
    assert ([r["key"] for r in current], [r["key"] for r in others]) == ([keyed[1].key], [specs[0].replace(
        data_fingerprint="0ld").key])
    store.close()


def test_check_runs_refuses_a_setting_the_data_cannot_give(tmp_path: Path, cache_dir: Path) -> None:
    study = parse_study(_sweep(n_train=100_000))
    store = ResultStore(tmp_path / "out")
    selection = select_runs(store, study, study.expand(), None)
    store.close()
    with pytest.raises(ValueError, match="sweep"):
        check_runs(selection, _workspace(tmp_path, cache_dir))


def test_adopt_runs_stores_an_adaptive_blocks_equal_run_instead_of_training_it(tmp_path: Path) -> None:
    study = _sweep()
    study["experiments"] += _recommend()["experiments"]
    study = parse_study(study)
    specs = study.expand()
    sweep = [s for s in specs if s.experiment == "sweep"]
    rec = {result_key(s): s for s in specs if s.experiment == "rec"}
    twin = next(s for s in sweep if result_key(s) in rec)
    store = ResultStore(tmp_path / "out")
    _fake_run(store, rec[result_key(twin)])
    selection = adopt_runs(store, select_runs(store, study, specs, None))
    assert selection.adopted == 1 and twin.key not in {s.key for s in selection.todo}
    assert len(selection.todo) == len(sweep) - 1
    adopted = next(r for r in store.runs() if r["key"] == twin.key)
    assert adopted["result"]["reused_from"] == rec[result_key(twin)].key
    store.close()


# ------------------------------------------------------------------------------- what a study run says


def test_max_runs_on_an_empty_folder_says_how_many_are_done_and_left(tmp_path: Path, cache_dir: Path) -> None:
    """``--max-runs 3`` on an empty folder of 8 runs: none already done (the truncated runs are not), 5 left for a
    later run; the next study run finds 3 done and leaves 2."""
    study = _sweep()
    console, text = _console()
    run_study(parse_study(study), tmp_path / "out", device=CPU, cache_dir=cache_dir, console=console, max_runs=3)
    said = _said(text)
    assert "8 runs, 0 already done, 3 to run on cpu" in said, said
    assert "5 left for a later run (--max-runs 3: rerun to go on)" in said, said
    console, text = _console()
    run_study(parse_study(study), tmp_path / "out", device=CPU, cache_dir=cache_dir, console=console, max_runs=3)
    said = _said(text)
    assert "8 runs, 3 already done, 3 to run" in said and "2 left for a later run" in said, said


def test_note_threads_names_both_thread_counts(tmp_path: Path) -> None:
    study = parse_study(_sweep())
    specs = study.expand()
    store = ResultStore(tmp_path / "out")
    for spec in specs[:3]:
        _fake_run(store, spec, threads=2)
    store.set_meta("last_run", {"workers": 1})
    selection = select_runs(store, study, specs, None)
    console, text = _console()
    assert note_threads(store, selection, 1, 2, console) == {2: 3}
    said = _said(text)
    assert "3 stored run(s) of the study computed on 1 worker(s), 3 with 2 threads per run" in said, said
    assert "use 1 thread per run (2 worker(s))" in said and "differ in the last digits" in said, said
    console, text = _console()
    note_threads(store, selection, 2, 1, console)  # the same thread count: nothing to say
    note_threads(store, Selection(specs, set(), specs, 0), 1, 2, console)  # nothing stored yet
    assert text.getvalue() == ""
    store.close()


def test_a_folder_resumed_with_another_thread_count_gets_a_note(tmp_path: Path, cache_dir: Path) -> None:
    study = _sweep()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run_study(parse_study(study), tmp_path / "out", device=CPU, cache_dir=cache_dir, quiet=True, max_runs=1)
        torch.set_num_threads(2)
        console, text = _console()
        run_study(parse_study(study), tmp_path / "out", device=CPU, cache_dir=cache_dir, console=console,
                  max_runs=1)
    finally:
        torch.set_num_threads(threads)
    said = _said(text)
    assert "1 with 1 thread per run; the runs trained now use 2 threads per run (1 worker(s))" in said, said
    store = ResultStore.open_existing(tmp_path / "out")
    assert store.get_meta("last_run")["threads"] == 2
    assert sorted(r["provenance"]["torch_threads"] for r in store.runs()) == [1, 2]
    store.close()


# ------------------------------------------------------------------------------------ one backend per study


@pytest.fixture
def backends(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Every backend the driver makes, with the number of ``run`` calls it got and whether it was closed."""
    made: list[dict] = []
    real = execute.make_backend

    def counted(*args, **kwargs):
        backend = real(*args, **kwargs)
        record = {"runs": 0, "closed": 0}
        made.append(record)
        run, close = backend.run, backend.close

        def counted_run(jobs):
            record["runs"] += 1
            return run(jobs)

        def counted_close():
            record["closed"] += 1
            close()

        backend.run, backend.close = counted_run, counted_close
        return backend

    monkeypatch.setattr(execute, "make_backend", counted)
    return made


def test_the_adaptive_loop_runs_every_round_on_one_backend(
    tmp_path: Path, cache_dir: Path, backends: list[dict]
) -> None:
    summary = run_study(parse_study(_recommend()), tmp_path / "out", device=CPU, cache_dir=cache_dir, quiet=True)
    assert summary.ran >= 4
    assert len(backends) == 1 and backends[0]["closed"] == 1
    assert backends[0]["runs"] >= 2  # several rounds: screen, then confirm


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_the_backend_is_closed_once_when_the_study_stops(
    tmp_path: Path, cache_dir: Path, backends: list[dict], monkeypatch: pytest.MonkeyPatch, error: type
) -> None:
    def interrupted(*args, **kwargs):
        raise error("stopped")

    monkeypatch.setattr("biastransfer.driver.study.drive", interrupted)
    with pytest.raises(error):
        run_study(parse_study(_sweep()), tmp_path / "out", device=CPU, cache_dir=cache_dir, quiet=True)
    assert len(backends) == 1 and backends[0]["closed"] == 1

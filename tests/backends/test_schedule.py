"""Job planning and dependency-aware scheduling (no phase barriers, dependencies and capacity respected)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from biastransfer.backends.base import Job
from biastransfer.backends.processes import schedule
from biastransfer.plan import parse_study, plan_jobs
from biastransfer.spec import RunSpec
from biastransfer.store.sqlite import ResultStore
from tiny_study import tiny_study_dict


@pytest.fixture()
def tiny_specs() -> list[RunSpec]:
    return parse_study(tiny_study_dict()).expand()


def test_plan_has_one_job_per_base_search_and_run_and_needs_point_backwards(tiny_specs, tmp_path):
    store = ResultStore(tmp_path)
    jobs = plan_jobs(tiny_specs, store.get_hparams)
    kinds = [job.kind for job in jobs]
    assert kinds == sorted(kinds, key=["base", "hparams", "run"].index)  # priority order
    assert kinds.count("base") == 2  # gendered, control-t0 (scratch needs no training)
    assert kinds.count("run") == len(tiny_specs) == 22
    # one search per (base, task, N): gendered, control-t0 and scratch on t3 (salience needs none)
    assert kinds.count("hparams") == 3
    assert len({job.key for job in jobs}) == len(jobs)
    seen: set[str] = set()
    for job in jobs:
        assert job.needs <= seen, f"{job.key} needs a later job"
        seen.add(job.key)
    for job in jobs:
        if job.kind == "run":
            trained = job.spec.base.get("kind") == "trained"
            assert sum(need.startswith("base:") for need in job.needs) == int(trained)
            assert sum(need.startswith("hparams:") for need in job.needs) == int(job.spec.kind != "salience")


def test_plan_skips_searches_the_store_already_has(tiny_specs, tmp_path):
    store = ResultStore(tmp_path)
    first = plan_jobs(tiny_specs, store.get_hparams)
    search = next(job for job in first if job.kind == "hparams")
    chosen = {"lr": 0.1, "weight_decay": 0.0}
    store.put_hparams(search.key.removeprefix("hparams:"), {"base_name": "x"}, chosen)
    second = plan_jobs(tiny_specs, store.get_hparams)
    assert [job.key for job in second if job.kind == "hparams"] == [
        job.key for job in first if job.kind == "hparams" and job.key != search.key]
    assert all(search.key not in job.needs for job in second)
    # the runs that needed the stored search receive its result as a given input
    given = [job for job in second if job.kind == "run" and job.given.get("hparams") == chosen]
    assert given and all(j.spec.base_name == search.spec.base_name for j in given)


def test_a_search_job_computes_with_the_first_run_that_needs_it(tiny_specs):
    """The search's numbers depend on its spec (seed, base name): it must be the first run's, as before."""
    jobs = plan_jobs(tiny_specs, lambda key: None)
    for search in (j for j in jobs if j.kind == "hparams"):
        first = next(j for j in jobs if j.kind == "run" and search.key in j.needs)
        assert search.spec == first.spec


def _job(key: str, *needs: str) -> Job:
    return Job("run", None, key, frozenset(needs))  # type: ignore[arg-type]


class Recorder:
    """Runs jobs on threads; a job named in ``hold`` blocks until released."""

    def __init__(self, hold: set[str] = frozenset(), fail: str | None = None) -> None:
        self.pool = ThreadPoolExecutor(4)
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.gates = {key: threading.Event() for key in hold}
        self.fail = fail
        self.running = 0
        self.max_running = 0

    def submit(self, job: Job):
        with self.lock:
            self.events.append(("start", job.key))
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        return self.pool.submit(self._body, job)

    def _body(self, job: Job) -> str:
        if job.key in self.gates:
            assert self.gates[job.key].wait(10)
        with self.lock:
            self.running -= 1
            self.events.append(("end", job.key))
        if job.key == self.fail:
            raise RuntimeError(f"{job.key} failed")
        return job.key.upper()

    def index(self, kind: str, key: str) -> int:
        return self.events.index((kind, key))


def test_a_ready_job_starts_while_an_unrelated_slow_job_is_still_running():
    jobs = [_job("base-slow"), _job("base-fast"), _job("run-slow", "base-slow"), _job("run-fast", "base-fast")]
    rec = Recorder(hold={"base-slow"})
    results = []
    for job, result in schedule(jobs, rec.submit, capacity=2):
        results.append((job.key, result))
        if job.key == "run-fast":  # ran while base-slow still trains: no barrier after the bases
            assert ("end", "base-slow") not in rec.events
            rec.gates["base-slow"].set()
    assert sorted(results) == sorted((j.key, j.key.upper()) for j in jobs)
    assert rec.index("end", "base-slow") < rec.index("start", "run-slow")
    assert rec.index("end", "base-fast") < rec.index("start", "run-fast")
    assert rec.max_running <= 2


def test_capacity_and_priority_order_among_ready_jobs():
    jobs = [_job(f"j{i}") for i in range(7)]
    rec = Recorder()
    done = [job.key for job, _ in schedule(jobs, rec.submit, capacity=1)]
    assert done == [f"j{i}" for i in range(7)]
    assert [key for kind, key in rec.events if kind == "start"] == done
    assert rec.max_running == 1
    rec3 = Recorder()
    assert len(list(schedule(jobs, rec3.submit, capacity=3))) == 7
    assert rec3.max_running <= 3


def test_a_failing_job_stops_the_schedule_and_nothing_after_it_starts():
    jobs = [_job("a"), _job("b", "a"), _job("c", "b")]
    rec = Recorder(fail="a")
    with pytest.raises(RuntimeError, match="a failed"):
        list(schedule(jobs, rec.submit, capacity=2))
    assert [key for kind, key in rec.events if kind == "start"] == ["a"]


def test_jobs_that_wait_on_each_other_are_reported():
    with pytest.raises(RuntimeError, match="wait on each other"):
        list(schedule([_job("x", "y"), _job("y", "x")], Recorder().submit, capacity=2))
    with pytest.raises(ValueError, match="capacity"):
        list(schedule([_job("x")], Recorder().submit, capacity=0))

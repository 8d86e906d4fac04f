"""The stages of a study run, in the order :func:`biastransfer.driver.run_study` calls them; each is a function a
test can call on its own:

1. :func:`upgrade_layout`: check or upgrade the folder's layout;
2. :func:`fingerprint_data`: the content fingerprint of every dataset the study uses (runs on other data named);
3. :func:`record_roles`: the bases' roles, kept in the store;
4. :func:`select_runs`: the runs to train now (the missing ones, truncated to ``--max-runs``) and the adaptive
   blocks' runs;
5. :func:`check_runs`: preflight, before anything trains or the stored study changes;
6. :func:`record_study` (once the backend is made): the study, its data's fingerprints and its setting keys;
7. :func:`note_threads`: a note when the stored runs computed with another thread count;
8. :func:`adopt_runs`: runs that an adaptive block already stored (equal ``result_key``) are adopted, not trained;
9. :func:`replan`: the jobs of the runs still missing;
10. :func:`run_adaptive`: each adaptive block's loop (:func:`biastransfer.adaptive.search_block`) on the same
    backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from biastransfer.adaptive import adopt, search_block, stored_index
from biastransfer.backends import Backend, Job
from biastransfer.backends.workspace import Workspace
from biastransfer.driver.execute import drive
from biastransfer.plan import Block, Study, adaptive_kind, plan_jobs, preflight, resolve_roles
from biastransfer.spec import RunSpec
from biastransfer.store.current import CURRENT_SETTINGS, dataset_key, thread_counts
from biastransfer.store.sqlite import ResultStore


def upgrade_layout(store: ResultStore) -> int:
    """Check the folder's layout, upgrading a folder of an earlier version (:meth:`ResultStore.upgrade`); return
    the number of runs checked."""
    return store.upgrade()


def data_fingerprints(specs: list[RunSpec], workspace: Workspace) -> dict[str, str]:
    """The content fingerprint of every dataset section the specs use (loading each once), by its canonical
    JSON."""
    out: dict[str, str] = {}
    for spec in specs:
        key = dataset_key(spec.dataset)
        if key not in out:
            out[key] = workspace.dataset(spec).fingerprint
    return out


def with_fingerprints(specs: list[RunSpec], fingerprints: dict[str, str]) -> list[RunSpec]:
    """The specs with their dataset's fingerprint in ``data_fingerprint`` (and so in their run and search keys)."""
    return [spec.replace(data_fingerprint=fingerprints[dataset_key(spec.dataset)]) for spec in specs]


def current_specs(study: Study, workspace: Workspace) -> list[RunSpec]:
    """The study's runs as they are keyed on the data as it is now."""
    specs = study.expand()
    return with_fingerprints(specs, data_fingerprints(specs, workspace))


def other_data(store: ResultStore, fingerprints: dict[str, str]) -> dict[str, set[str]]:
    """For each dataset section of the study whose stored runs were computed on other data (a changed dataset
    folder, edited labels, other generation parameters under the same name …): those runs' fingerprints. Their
    keys differ from the current runs' (the fingerprint is part of the key), so they are kept but never pooled."""
    out: dict[str, set[str]] = {}
    for key, fingerprint in fingerprints.items():
        stored = store.data_hashes_of(json.loads(key))  # runs on this section only, not other studies' datasets
        if stored - {fingerprint}:
            out[key] = stored - {fingerprint}
    return out


def fingerprint_data(store: ResultStore, specs: list[RunSpec], workspace: Workspace,
                     console: Console) -> dict[str, str]:
    """The fingerprint of each dataset the specs use (:func:`data_fingerprints`); names the datasets whose
    stored runs were computed on other data (:func:`other_data`)."""
    fingerprints = data_fingerprints(specs, workspace)
    for key, old in other_data(store, fingerprints).items():
        console.print(f"[yellow]note:[/] runs in {store.path} on {json.loads(key).get('name')} were computed on "
                      f"other data (fingerprint {', '.join(sorted(old))}; now {fingerprints[key]}): they are kept, "
                      f"not part of the current study, and never pooled with its runs", highlight=False)
    return fingerprints


def record_roles(store: ResultStore, study: Study, workspace: Workspace, specs: list | None = None) -> dict[str, str]:
    """Load the study's dataset(s), resolve the bases' roles (the sensitive attribute of the dataset a base is
    used with decides derived ones) and keep them in the store, merged with those of earlier studies run into the
    same folder."""
    specs = study.expand() if specs is None else specs
    if not specs:
        return {}
    first: dict[str, Any] = {}
    sensitive: dict[str, str] = {}
    for spec in specs:
        key = dataset_key(spec.dataset)
        if key not in first:
            first[key] = workspace.dataset(spec)
        sensitive.setdefault(spec.base_name, first[key].table.sensitive)
    sensitive[""] = next(iter(first.values())).table.sensitive
    roles = {**(store.get_meta("roles") or {}), **resolve_roles(study.config, sensitive)}
    store.set_meta("roles", roles)
    return roles


@dataclass
class Selection:
    """What a study run does with the study's runs (:func:`select_runs`)."""

    specs: list[RunSpec]
    """Every run of the study, keyed on the data as it is now."""
    done: set[str]
    """The study's keys the store had when the run started."""
    todo: list[RunSpec]
    """The runs of the non-adaptive blocks to train now (after ``--max-runs``; after adoption, those still missing)."""
    left: int
    """The non-adaptive blocks' missing runs that ``--max-runs`` leaves for a later run."""
    adaptive: dict[str, Block] = field(default_factory=dict)
    """The adaptive blocks, by name."""
    searching: list[RunSpec] = field(default_factory=list)
    """Every run the adaptive blocks may ask for."""
    adopted: int = 0
    """Runs of ``todo`` stored from an equal run of an adaptive block (:func:`adopt_runs`)."""

    @property
    def nothing_to_do(self) -> bool:
        return not self.todo and not self.searching


def select_runs(store: ResultStore, study: Study, specs: list[RunSpec], max_runs: int | None) -> Selection:
    """The runs the store lacks, the first ``max_runs`` of them to train now (the adaptive blocks' runs apart:
    they run after, within what ``max_runs`` leaves)."""
    keys = {s.key for s in specs}
    done = store.done_keys() & keys
    adaptive = {b.name: b for b in study.blocks if b.adaptive}
    missing = [s for s in specs if s.key not in done and s.experiment not in adaptive]
    todo = missing if max_runs is None else missing[:max_runs]
    return Selection(specs=specs, done=done, todo=todo, left=len(missing) - len(todo), adaptive=adaptive,
                     searching=[s for s in specs if s.experiment in adaptive])


def check_runs(selection: Selection, workspace: Workspace) -> None:
    """Preflight (:func:`biastransfer.plan.preflight`) of every run this study run may train."""
    preflight(selection.todo + selection.searching, workspace.dataset)


def record_study(store: ResultStore, study: Study, specs: list[RunSpec], fingerprints: dict[str, str]) -> None:
    """Keep the study (and its text) in the store, with its datasets' fingerprints and its runs' setting keys:
    what ``report`` describes, and what tells its runs from the folder's others
    (:func:`biastransfer.store.current.split_runs`, which then needs no file and no validation)."""
    entries = {"study": study.config.model_dump(mode="json"), "data_fingerprints": fingerprints,
               CURRENT_SETTINGS: sorted({spec.setting_key() for spec in specs})}
    if study.text is not None:
        entries["study_yaml"] = study.text
    store.set_metas(entries)  # one transaction: the read side never sees a new study beside old settings


def note_threads(store: ResultStore, selection: Selection, threads: int | None, workers: int,
                 console: Console) -> dict[int, int]:
    """When runs are to be trained with another torch thread count per run than the study's stored runs used
    (another ``--workers``), say so: the two can differ in the last digits, since the thread count decides the
    float summation order. Returns the stored runs' thread counts (thread count → runs)."""
    if threads is None or selection.nothing_to_do or not selection.done:
        return {}
    stored = thread_counts([r for r in store.runs() if r["key"] in selection.done])
    if not stored or set(stored) == {threads}:
        return stored
    last = (store.get_meta("last_run") or {}).get("workers")
    before = ", ".join(f"{n} with {t} thread{'s' if t > 1 else ''}" for t, n in stored.items())
    console.print(f"[yellow]note:[/] this folder's {sum(stored.values())} stored run(s) of the study computed "
                  f"{'' if last is None else f'on {last} worker(s), '}{before} per run; the runs trained now use "
                  f"{threads} thread{'s' if threads > 1 else ''} per run ({workers} worker(s)). Runs computed with "
                  "other thread counts can differ in the last digits (float summation order); rerun with the "
                  "same --workers to keep them bit for bit alike", highlight=False)
    return stored


def adopt_runs(store: ResultStore, selection: Selection) -> Selection:
    """Store, instead of training them, the runs of ``todo`` whose equal an adaptive block already stored
    (:func:`biastransfer.adaptive.adopt`; never those of another non-adaptive block); ``todo`` keeps the rest."""
    if not selection.todo:
        return selection
    adopted = adopt(store, selection.todo, stored_index(store, adaptive_kind))
    if adopted:
        done = store.done_keys()
        selection.todo = [s for s in selection.todo if s.key not in done]
    selection.adopted += adopted
    return selection


def replan(store: ResultStore, todo: list[RunSpec]) -> list[Job]:
    """The jobs of ``todo`` (:func:`biastransfer.plan.plan_jobs`) with the searches the store has now."""
    return plan_jobs(todo, store.get_hparams)


def announce(console: Console, study: Study, selection: Selection, runner: Backend, device: Any,
             max_runs: int | None) -> None:
    """What this study run will do: the study's runs, those already done (the stored keys of the study),
    adopted, to run now and left for a later run."""
    s = selection
    adopted = f", {s.adopted} taken from equal stored runs" if s.adopted else ""
    later = (f"; {s.left} left for a later run (--max-runs {max_runs}: rerun to go on)" if s.left else "")
    workers = f"{runner.workers} worker{'s' if runner.workers > 1 else ''}"
    if not s.searching:
        console.print(f"Study {study.name!r}: {len(s.specs)} runs, {len(s.done)} already done{adopted}, "
                      f"{len(s.todo)} to run on {device} ({workers}, backend {runner.registry_name}){later}")
    else:
        console.print(f"Study {study.name!r}: {len(s.done)} of {len(s.specs)} runs already done{adopted}; "
                      f"{len(s.todo)} runs to run, then {len(s.adaptive)} adaptive block(s) searching up to "
                      f"{len(s.searching)} runs on {device} ({workers}, backend {runner.registry_name}){later}")


def run_adaptive(store: ResultStore, runner: Backend, selection: Selection, max_new: int | None, console: Console,
                 quiet: bool) -> tuple[int, int, int]:
    """Each adaptive block's loop (:func:`biastransfer.adaptive.search_block`), every round on ``runner``, at most
    ``max_new`` new runs in all (None: no limit). Returns (new runs, trainings, runs adopted)."""
    ran = trainings = adopted = 0

    def train(room: list[RunSpec]) -> int:
        return drive(store, runner, replan(store, room), console, quiet)

    for block in selection.adaptive.values():
        left = None if max_new is None else max_new - ran
        r, t, a = search_block(store, block, [s for s in selection.searching if s.experiment == block.name], left,
                               train, console)
        ran, trainings, adopted = ran + r, trainings + t, adopted + a
    return ran, trainings, adopted

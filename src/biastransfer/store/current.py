"""The read side's view of a results folder: which finished runs belong to its current study.

A folder can hold runs of several versions of a study (another lr grid, other epochs …) and of its data (edited
labels …): they are kept, but must never be pooled with the current ones as extra seeds. ``run`` records what
the current study is when it stores it (the driver writes :data:`CURRENT_SETTINGS`, the setting keys of its
expansion, next to ``data_fingerprints``); ``report``, ``export``, the model card and the Python API split the
runs with :func:`split_runs`, a query of the store alone: no checkpoint file, dataset or registry option is
checked again, so what a report pools does not depend on files outside the store.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from biastransfer.spec import RunSpec
from biastransfer.store.sqlite import ResultStore

log = logging.getLogger("biastransfer")

CURRENT_SETTINGS = "current_settings"
"""The meta entry ``run`` writes: the sorted setting keys (:meth:`RunSpec.setting_key`, the run keys without the
data's fingerprint) of the current study's expansion."""


def dataset_key(dataset: Any) -> str:
    """A dataset section's canonical JSON: how ``data_fingerprints`` is keyed (the writer and the readers)."""
    return json.dumps(dataset, sort_keys=True, default=str)


def current_settings(store: ResultStore) -> set[str] | None:
    """The setting keys of the folder's current study, or ``None`` when the folder has no stored study (or one
    that no longer expands here: every run then counts as current).

    Read from :data:`CURRENT_SETTINGS`; a folder written before ``run`` recorded them gets them from its stored
    study, expanded without checking any file (``parse_study(..., check_files=False)``)."""
    recorded = store.get_meta(CURRENT_SETTINGS)
    if recorded is not None:
        return set(recorded)
    stored = store.get_meta("study")
    if not stored:
        return None
    from biastransfer.plan import parse_study  # only for folders written before the settings were recorded

    try:
        return {spec.setting_key() for spec in parse_study(stored, "the stored study", check_files=False).expand()}
    except (ValueError, KeyError, OSError) as exc:  # ConfigError is a ValueError
        log.warning("cannot expand the stored study (%s); every run in %s is reported", exc, store.path)
        return None


def split_runs(store: ResultStore) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The folder's finished runs that belong to its current study (the one stored by the last ``run``: the runs
    of its expansion, on the data its datasets held then), and the others: runs of an earlier version of the
    study or of its data. Without a stored study every run counts as current. Reads the store only."""
    runs = store.runs()
    settings = current_settings(store)
    if settings is None:
        return runs, []
    fingerprints: dict[str, str] | None = store.get_meta("data_fingerprints")

    def current(run: dict[str, Any]) -> bool:
        try:
            spec = RunSpec.from_dict(run["spec"])
        except (TypeError, ValueError):
            return False
        if spec.setting_key() not in settings:
            return False
        if fingerprints is None:  # stored before the fingerprints were: one version of the data per folder
            return True
        ran_on = spec.data_fingerprint or run["provenance"].get("data_hash")
        return fingerprints.get(dataset_key(spec.dataset)) == ran_on

    flags = [current(r) for r in runs]
    return [r for r, f in zip(runs, flags, strict=True) if f], [r for r, f in zip(runs, flags, strict=True) if not f]


def thread_counts(runs: list[dict[str, Any]]) -> dict[int, int]:
    """How many of ``runs`` computed with each torch thread count (from their provenance; runs that did not
    record one are not counted)."""
    out: dict[int, int] = {}
    for run in runs:
        threads = run["provenance"].get("torch_threads")
        if isinstance(threads, int) and not isinstance(threads, bool):
            out[threads] = out.get(threads, 0) + 1
    return dict(sorted(out.items()))

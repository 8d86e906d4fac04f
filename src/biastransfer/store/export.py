"""The store as tidy tables: one row per run (the report's and ``biastransfer export``'s input).

The columns come from the outcome schemas of the experiment plugins: the columns every run has
(:data:`~biastransfer.experiments.base.COMMON_COLUMNS`), then, for each kind present, the columns its plugin
declares (:attr:`~biastransfer.experiments.base.Experiment.columns`), then the timing. A column is typed as its
schema declares it (NaN where a run of another kind has no value).
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from biastransfer.experiments.base import COMMON_COLUMNS, EXPERIMENTS, TIMING_COLUMNS, Column
from biastransfer.store.sqlite import ResultStore

__all__ = ["frame_of", "hparams_frame", "kind_columns", "runs_frame"]


def kind_columns(kinds: list[str]) -> list[Column]:
    """Common columns, each kind's own (in registry order, each name once), timing."""
    out: dict[str, Column] = {c.name: c for c in COMMON_COLUMNS}
    for kind in EXPERIMENTS.names():
        if kind in kinds:
            for column in EXPERIMENTS.get(kind).columns:
                out.setdefault(column.name, column)
    for column in TIMING_COLUMNS:
        out.setdefault(column.name, column)
    return list(out.values())


def _typed(frame: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    for c in columns:
        if c.dtype in ("float", "int"):
            frame[c.name] = pd.to_numeric(frame[c.name], errors="coerce")
            if c.dtype == "int" and frame[c.name].notna().all():
                frame[c.name] = frame[c.name].astype("int64")
        elif c.dtype == "bool":
            frame[c.name] = frame[c.name].astype(object)
    return frame


def frame_of(runs: list[dict[str, Any]], study: str, roles: dict[str, str],
             blocks: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """Stored runs (``{key, spec, result, seconds}``) as a tidy frame. ``blocks`` are the experiment blocks of the
    study stored with the runs, by name: a column reads its run's block as ``run["block"]`` (``{}`` when the
    stored study has no block of that name), e.g. an analysis option that is in no run key."""
    kinds = sorted({r["spec"]["kind"] for r in runs})
    unknown = [k for k in kinds if k not in EXPERIMENTS]
    if unknown:
        warnings.warn(f"runs of unknown experiment kind(s) {', '.join(unknown)}: only their common columns are "
                      "exported", UserWarning, stacklevel=2)
    columns = kind_columns(kinds)
    own = {kind: {c.name for c in (EXPERIMENTS.get(kind).all_columns() if kind in EXPERIMENTS
                                   else (*COMMON_COLUMNS, *TIMING_COLUMNS))} for kind in kinds}
    rows = []
    for run in runs:
        context = {**run, "study": study, "roles": roles, "block": (blocks or {}).get(run["spec"]["experiment"], {})}
        mine = own[run["spec"]["kind"]]
        rows.append({c.name: c.value(context) if c.name in mine else None for c in columns})
    return _typed(pd.DataFrame(rows, columns=[c.name for c in columns]), columns)


def runs_frame(store: ResultStore, runs: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """One tidy row per finished run (see the module docstring for the columns); ``runs`` (stored runs) restricts
    it to those (default: every run in the store)."""
    study = store.get_meta("study") or {}
    blocks = {str(b.get("name")): b for b in study.get("experiments", []) if isinstance(b, dict)}
    return frame_of(store.runs() if runs is None else runs, study.get("name", ""), store.get_meta("roles") or {},
                    blocks)


def hparams_frame(store: ResultStore) -> pd.DataFrame:
    """The chosen hyperparameters per (base, task, N) with the number of trials."""
    rows = []
    for h in store.all_hparams():
        spec, res = h["spec"], h["result"]
        rows.append({"base": spec.get("base_name", spec["base"]["kind"]), "task": spec["task"],
                     "n_train": spec["n_train"], "lr": res["lr"], "weight_decay": res["weight_decay"],
                     "val_loss": res["val_loss"], "trials": len(res.get("trials", []))})
    return pd.DataFrame(rows, columns=["base", "task", "n_train", "lr", "weight_decay", "val_loss", "trials"])

"""The model card of a results folder (``biastransfer export DIR --format model-card``): the current study's metrics
per setting and group, in the ``quantitative_analysis`` shape of the Model Card Toolkit (MCT).

Every setting of the study (the runs of one kind that share every ``setting`` column of its outcome schema and
differ only in their seed) gives, for each metric, one entry of ``quantitative_analysis.performance_metrics``::

    {"type": "fpr", "value": 0.21, "slice": "experiment=inheritance, task=t3, base=gendered, level=0.8,
     group=a=1 (disc)", "confidence_interval": {"lower_bound": 0.18, "upper_bound": 0.24}}

``value`` is the mean over seeds and the interval the Student-t 95% interval over seeds, both from
:func:`biastransfer.analysis.aggregate.aggregate`. The field names are MCT's (``type``, ``value``, ``slice``,
``confidence_interval`` with ``lower_bound`` and ``upper_bound``, present in its schemas v0.0.1 and v0.0.2);
values are JSON numbers, and ``null`` where the number is NaN, with the reason in ``biastransfer.notes``.
Everything MCT has no field for is under the one top-level key ``biastransfer`` (provenance, settings with their
threshold policy and per-run thresholds, group names, metric definitions, notes); :func:`to_mct` gives the card
as MCT's schema v0.0.2 types it (strings, no ``biastransfer`` key), which ``ModelCard.from_json`` accepts.

Metrics, per setting: the kind's ``metric`` columns (our names: signed gaps ``fpr_diff``, ``tpr_diff`` are a=1
minus a=0); per group, the rates of every pair of float columns ``<rate>_a0``, ``<rate>_a1`` of the schema
(e.g. ``fpr``, ``tpr``); and the fairlearn metrics those rates define exactly, computed per run and then averaged
like the others: ``<fairlearn rate>_difference`` = max − min over the two groups = ``|rate(a=1) − rate(a=0)|``
(e.g. ``false_positive_rate_difference``) and, with both TPR and FPR, ``equalized_odds_difference`` (fairlearn's
defaults ``between_groups``, ``worst_case``) = the larger of the two. Where a group's rate is undefined the
fairlearn-named value is NaN (null): fairlearn would substitute 0 there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from biastransfer.analysis.aggregate import aggregate
from biastransfer.experiments.base import EXPERIMENTS, Column, Experiment
from biastransfer.metrics.intervals import DroppedValuesWarning
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore

__all__ = ["CARD_FORMAT", "FAIRLEARN_RATES", "fairlearn_metrics", "fairlearn_names", "group_rate_names", "model_card",
           "slice_columns", "to_mct"]

#: What the card's ``biastransfer.format`` says: this layout, version 1.
CARD_FORMAT = "biastransfer-model-card/1"

#: Our per-group rate names and fairlearn's names of the same rates (fairlearn.metrics).
FAIRLEARN_RATES = {"fpr": "false_positive_rate", "tpr": "true_positive_rate", "fnr": "false_negative_rate",
                   "tnr": "true_negative_rate", "positive_rate": "selection_rate"}

_FAIRLEARN_NAMES = {*(f"{n}_difference" for n in FAIRLEARN_RATES.values()), "equalized_odds_difference"}

#: The columns that name a setting in every slice (the others only when they vary and are not implied).
_SLICE_ALWAYS = ("experiment", "task", "base")


def group_rate_names(columns: Sequence[Column]) -> list[str]:
    """The rates an outcome schema holds per group: ``r`` for every float pair ``r_a0``, ``r_a1`` (schema order)."""
    floats = {c.name for c in columns if c.dtype == "float"}
    return [c.name[:-3] for c in columns
            if c.name.endswith("_a0") and c.dtype == "float" and f"{c.name[:-3]}_a1" in floats]


def fairlearn_names(rates: Sequence[str]) -> list[str]:
    """The fairlearn metrics :func:`fairlearn_metrics` computes from the group rates ``rates``."""
    names = [f"{FAIRLEARN_RATES[r]}_difference" for r in rates if r in FAIRLEARN_RATES]
    return [*names, "equalized_odds_difference"] if "tpr" in rates and "fpr" in rates else names


def fairlearn_metrics(rates: pd.DataFrame | dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """fairlearn's disparity metrics of runs, from their group rates (columns or keys ``<r>_a0``, ``<r>_a1`` for
    each ``r`` of ``names``): ``<fairlearn name of r>_difference = |r_a1 − r_a0|`` (max − min over two groups)
    for every ``r`` fairlearn names, and ``equalized_odds_difference`` = the larger of the TPR and FPR
    differences when both are there (NaN when either is NaN, where fairlearn would substitute 0)."""
    out: dict[str, Any] = {}
    for r in names:
        if r in FAIRLEARN_RATES:
            out[f"{FAIRLEARN_RATES[r]}_difference"] = np.abs(np.asarray(rates[f"{r}_a1"], dtype=float)
                                                            - np.asarray(rates[f"{r}_a0"], dtype=float))
    if "tpr" in names and "fpr" in names:
        tpr, fpr = out["true_positive_rate_difference"], out["false_positive_rate_difference"]
        out["equalized_odds_difference"] = np.where(np.isnan(tpr) | np.isnan(fpr), np.nan, np.maximum(tpr, fpr))
    if isinstance(rates, dict):
        return {k: float(v) for k, v in out.items()}
    return out


def _number(value: Any) -> float | int | None:
    """A JSON number: NaN and ±inf are None."""
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    """A setting's value as JSON (numpy scalars to Python; NaN to None)."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return _number(value)


def _shown(value: Any) -> str:
    """A setting's value in a slice name: a float as short as tells it apart (``0.8``; ``repr`` beyond 6 digits)."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return "NaN" if math.isnan(value) else (f"{value:g}" if float(f"{value:g}") == value else repr(value))
    return str(value)


def _determined(agg: pd.DataFrame, chosen: list[str], column: str) -> bool:
    """Whether ``column`` takes one value in each group of ``chosen`` (it adds nothing to a slice)."""
    if not chosen:
        return agg[column].nunique(dropna=False) <= 1
    return bool(agg.groupby(chosen, dropna=False)[column].nunique(dropna=False).max() <= 1)


def slice_columns(agg: pd.DataFrame, plugin: type[Experiment]) -> list[str]:
    """The settings a slice names: experiment, task and base, then each other setting that varies and is not
    implied by those already named (text columns first, so ``level_label`` names the level, not ``level``).
    Together they tell every setting of ``agg`` apart."""
    dtypes = {c.name: c.dtype for c in plugin.all_columns()}
    present = [c for c in plugin.settings() if c in agg.columns]
    chosen = [c for c in _SLICE_ALWAYS if c in present]
    for column in sorted((c for c in present if c not in chosen), key=lambda c: dtypes[c] != "str"):
        if not _determined(agg, chosen, column):
            chosen.append(column)
    return chosen


def _slice(row: Any, columns: list[str]) -> str:
    """``name=value, …`` of ``columns`` in ``row`` (a ``*_label`` column is named without the suffix)."""
    names: list[str] = []
    parts = []
    for c in columns:
        name = c[: -len("_label")] if c.endswith("_label") and c[: -len("_label")] not in names else c
        names.append(name)
        parts.append(f"{name}={_shown(row[c])}")
    return ", ".join(parts)


def _groups(results: list[dict[str, Any]]) -> dict[str, str]:
    """Group code → name, from the runs' stored ``group_names`` (default ``a=0``, ``a=1``)."""
    names = next((r["group_names"] for r in results if len(r.get("group_names") or ()) == 2), ["a=0", "a=1"])
    return {"a=0": str(names[0]), "a=1": str(names[1])}


def _group_slice(code: str, groups: dict[str, str]) -> str:
    return f"group={code}" if groups[code] == code else f"group={code} ({groups[code]})"


def _note(metric: str, n: int, n_seeds: int, value: float, low: float,
          group: bool) -> tuple[list[str], str] | None:
    """The fields of a metric that are null and why (or a note that seeds were left out); None when complete.
    ``group``: the metric is a group rate or computed from them."""
    if math.isnan(value):
        reason = (f"NaN for every seed ({n_seeds} run(s)): {metric} is undefined in this setting or does not "
                  "apply to it (see its definition)")
        if group:
            reason += ("; a group rate is undefined when the group has no negatives (FPR, TNR) or no positives "
                       "(TPR, FNR)")
        if metric in _FAIRLEARN_NAMES:
            reason += "; fairlearn would substitute 0 for the undefined group rate and report a number"
        return ["value", "lower_bound", "upper_bound"], reason
    if n == 1:
        return (["lower_bound", "upper_bound"],
                "one seed has a finite value: no interval can be claimed from one seed (Student-t needs n ≥ 2)")
    if math.isnan(low):
        return ["lower_bound", "upper_bound"], "the interval is undefined"
    if n < n_seeds:
        return [], f"{n_seeds - n} of {n_seeds} seeds are NaN and left out of the mean and the interval"
    return None


def _define(definitions: dict[str, dict[str, Any]], plugin: type[Experiment], rates: list[str]) -> None:
    """Add what each metric of ``plugin``'s card entries means to ``definitions`` (first definition kept)."""
    columns = {c.name: c for c in plugin.all_columns()}
    for m in plugin.metrics():
        definitions.setdefault(m, {"definition": columns[m].doc, "source": "biastransfer"})
    for r in rates:
        doc = columns[f"{r}_a0"].doc
        definitions.setdefault(r, {"definition": doc.replace("group a=0", "the slice's group")
                                   if "group a=0" in doc else f"{r} of the slice's group",
                                   "source": "biastransfer", "fairlearn": FAIRLEARN_RATES.get(r)})
        if r in FAIRLEARN_RATES:
            name = f"{FAIRLEARN_RATES[r]}_difference"
            definitions.setdefault(name, {
                "definition": f"fairlearn's {name}: max − min of {FAIRLEARN_RATES[r]} over the groups (unsigned) "
                              f"= |{r}(a=1) − {r}(a=0)|; per run, then the mean over seeds",
                "source": f"fairlearn.metrics.{name}"})
    if "equalized_odds_difference" in fairlearn_names(rates):
        definitions.setdefault("equalized_odds_difference", {
            "definition": "fairlearn's equalized_odds_difference (method='between_groups', agg='worst_case'): the "
                          "larger of true_positive_rate_difference and false_positive_rate_difference (each max − "
                          "min over the groups, unsigned); per run, then the mean over seeds",
            "source": "fairlearn.metrics.equalized_odds_difference"})


def _kind_section(plugin: type[Experiment], frame: pd.DataFrame, results: dict[str, dict[str, Any]],
                  card: dict[str, list], definitions: dict[str, dict[str, Any]]) -> None:
    """Add one kind's performance metrics, settings and notes to ``card`` (lists ``metrics``, ``settings``,
    ``notes``) and its metric definitions to ``definitions``."""
    rates = group_rate_names(plugin.all_columns())
    frame = frame.assign(**fairlearn_metrics(frame, rates)) if rates else frame
    own, fair = plugin.metrics(), fairlearn_names(rates)
    per_group = [f"{r}_a{g}" for r in rates for g in (0, 1)]
    settings = [c for c in plugin.settings() if c in frame.columns]
    named = slice_columns(frame[settings].drop_duplicates(), plugin)
    frame = frame.assign(_slice=[_slice(row, named) for _, row in frame.iterrows()])
    with warnings.catch_warnings():  # a seed's NaN left out of the mean is a note of the card
        warnings.simplefilter("ignore", DroppedValuesWarning)
        agg = aggregate(frame, [*own, *per_group, *fair], [*settings, "_slice"])
    if not agg["_slice"].is_unique:  # slice_columns tells the settings apart, so this is a bug
        raise RuntimeError(f"two settings of {plugin.registry_name} share a slice name: {list(agg['_slice'])}")
    _define(definitions, plugin, rates)
    for _, row in agg.iterrows():
        setting = row["_slice"]
        runs = frame[frame["_slice"] == setting].sort_values("seed")
        groups = _groups([results[k] for k in runs["run_key"]])
        n_seeds = int(row["n_seeds"])
        entries = [(m, m, setting) for m in (*own, *fair)]
        entries += [(f"{r}_a{g}", r, f"{setting}, {_group_slice(f'a={g}', groups)}") for g in (0, 1) for r in rates]
        for column, kind, where in entries:
            value, low, high = (float(row[f"{column}_{s}"]) for s in ("mean", "low", "high"))
            card["metrics"].append({"type": kind, "value": _number(value), "slice": where,
                                    "confidence_interval": {"lower_bound": _number(low),
                                                            "upper_bound": _number(high)}})
            note = _note(kind, int(row[f"{column}_n"]), n_seeds, value, low, column in (*per_group, *fair))
            if note is not None:
                card["notes"].append({"type": kind, "slice": where, "null_fields": note[0], "reason": note[1]})
        entry: dict[str, Any] = {
            "slice": setting, "experiment_kind": plugin.registry_name, "n_seeds": n_seeds,
            "settings": {c: _plain(row[c]) for c in settings},
            "runs": [{"seed": int(r["seed"]), "run_key": r["run_key"],
                      **({"threshold": _number(r["threshold"])} if "threshold" in runs.columns else {})}
                     for _, r in runs.iterrows()],
        }
        if rates or "gap_label" in runs.columns:
            entry["groups"] = groups
            entry["reference_group"] = f"a=0 ({groups['a=0']})"
            entry["gaps"] = (f"signed gaps (fpr_diff, tpr_diff …) are a=1 − a=0 = {groups['a=1']} − "
                             f"{groups['a=0']}; fairlearn-named differences are unsigned")
        card["settings"].append(entry)


def _provenance(store: ResultStore, runs: list[dict[str, Any]], left_out: int) -> dict[str, Any]:
    """What the store records about the study and how its runs were computed."""
    study = store.get_meta("study") or {}
    versions: list[dict[str, Any]] = []
    for run in runs:
        v = run.get("provenance", {}).get("versions")
        if v and v not in versions:
            versions.append(v)
    return {
        "study": study.get("name", ""), "description": study.get("description", ""),
        "runs": len(runs), "runs_left_out": left_out,
        "seeds": sorted({int(r["spec"]["seed"]) for r in runs}),
        "versions": versions,
        "data_fingerprints": store.get_meta("data_fingerprints") or {},
        "data_hashes": sorted({str(r.get("provenance", {}).get("data_hash", "")) for r in runs} - {""}),
        "base_roles": store.get_meta("roles") or {},
        "last_run": store.get_meta("last_run") or {},
        "study_config": study,
    }


def model_card(store: ResultStore, runs: list[dict[str, Any]] | None = None, *, left_out: int = 0) -> dict[str, Any]:
    """The model card of the stored ``runs`` (default: every run of the store), as a JSON-able dict without NaN.

    ``left_out`` is the number of the folder's runs not in ``runs`` (another version of the study), recorded in
    the provenance. Keys: ``model_details`` (MCT's ``name``, ``overview``, ``version``),
    ``quantitative_analysis.performance_metrics`` (see the module docstring) and ``biastransfer``: ``format``,
    ``provenance`` (study, seeds, package versions, data fingerprints, base roles, the stored study),
    ``settings`` (per slice: its setting columns, seeds, per-run thresholds, group names and the reference group
    of the signed gaps), ``metric_definitions`` and ``notes`` (every null and why; seeds left out)."""
    runs = store.runs() if runs is None else runs
    frame = runs_frame(store, runs)
    results = {r["key"]: r["result"] for r in runs}
    card: dict[str, list] = {"metrics": [], "settings": [], "notes": []}
    definitions: dict[str, dict[str, Any]] = {}
    kinds = set(frame["experiment_kind"]) if not frame.empty else set()
    for kind in EXPERIMENTS.names():
        if kind in kinds:
            plugin = EXPERIMENTS.get(kind)
            _kind_section(plugin, frame[frame["experiment_kind"] == kind], results, card, definitions)
    unknown = sorted(k for k in kinds if k not in EXPERIMENTS)
    if unknown:
        card["notes"].append({"type": "", "slice": "", "null_fields": [],
                              "reason": f"runs of unknown experiment kind(s) {', '.join(unknown)} are left out"})
    provenance = _provenance(store, runs, left_out)
    versions = sorted({v.get("biastransfer", "?") for v in provenance["versions"]})
    return {
        "model_details": {
            "name": f"{provenance['study'] or 'biastransfer study'}: finetuned models",
            "overview": (f"Group metrics of the models finetuned in the study {provenance['study']!r}: "
                         f"{len(runs)} runs, {len(card['settings'])} settings, each value the mean over the seeds "
                         "of a setting with a Student-t 95% interval over them (biastransfer)."),
            "version": {"name": f"biastransfer {', '.join(versions) or '?'}"},
        },
        "quantitative_analysis": {"performance_metrics": card["metrics"]},
        "biastransfer": {
            "format": CARD_FORMAT,
            "about": "value: mean over the seeds of a setting; confidence_interval: Student-t 95% over them; "
                     "null: NaN, see notes",
            "provenance": provenance,
            "settings": card["settings"],
            "metric_definitions": definitions,
            "notes": card["notes"],
        },
    }


def to_mct(card: dict[str, Any]) -> dict[str, Any]:
    """The card as MCT's schema v0.0.2 types it: ``schema_version`` "0.0.2", no ``biastransfer`` key, numbers as
    strings (``repr``), null values and bounds left out (an interval without bounds is dropped)."""
    metrics = []
    for m in card["quantitative_analysis"]["performance_metrics"]:
        out = {"type": m["type"], "slice": m["slice"]}
        if m["value"] is not None:
            out["value"] = repr(m["value"])
        bounds = {k: repr(v) for k, v in m["confidence_interval"].items() if v is not None}
        if bounds:
            out["confidence_interval"] = bounds
        metrics.append(out)
    return {"schema_version": "0.0.2", "model_details": dict(card["model_details"]),
            "quantitative_analysis": {"performance_metrics": metrics}}

"""The store as tidy tables: one row per run (the report's and ``biastransfer export``'s input)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from biastransfer.runner.store import ResultStore

RUN_COLUMNS = [
    "run_key", "study", "experiment", "experiment_kind", "dataset", "task", "base", "base_kind", "base_attribute",
    "intervention", "level", "level_label", "test_level", "test_label", "n_train", "seed", "auc", "fpr_diff",
    "tpr_diff", "eo_diff", "fpr_a0", "fpr_a1", "tpr_a0", "tpr_a1", "threshold", "threshold_policy", "gap_label",
    "lr", "weight_decay", "epochs", "val_loss", "seconds", "auc_a", "auc_x", "salience", "inverse",
    "auc_t1", "auc_t2", "share",
]


def _label(value: Any) -> str:
    return "natural" if value == "natural" else f"{float(value):g}"


def run_row(study: str, run: dict[str, Any]) -> dict[str, Any]:
    spec, res = run["spec"], run["result"]
    from biastransfer.experiments.base import EXPERIMENTS

    exp_cls = EXPERIMENTS.get(spec["kind"]) if spec["kind"] in EXPERIMENTS else None
    level = spec["level"]
    level_value = res.get("natural_level", math.nan) if level == "natural" else float(level)
    test = spec["test"]
    return {
        "run_key": run["key"], "study": study, "experiment": spec["experiment"],
        "experiment_kind": exp_cls.report_kind if exp_cls else spec["kind"], "dataset": spec["dataset"]["name"],
        "task": spec["task"], "base": spec["base_name"], "base_kind": spec["base"]["kind"],
        "base_attribute": spec["base"].get("attribute", ""), "intervention": spec["intervention"],
        "level": level_value, "level_label": _label(level), "test_level": math.nan if test == "natural" else test,
        "test_label": _label(test), "n_train": res.get("n_train_used", spec["n_train"]), "seed": spec["seed"],
        **{k: res.get(k, math.nan) for k in ("auc", "fpr_diff", "tpr_diff", "eo_diff", "fpr_a0", "fpr_a1",
                                              "tpr_a0", "tpr_a1", "threshold", "lr", "weight_decay", "epochs",
                                              "val_loss", "auc_a", "auc_x", "salience", "auc_t1", "auc_t2",
                                              "share")},
        "threshold_policy": res.get("threshold_policy", str(spec["threshold"])),
        "gap_label": res.get("gap_label", "a=1 − a=0"), "seconds": run["seconds"],
        "inverse": res.get("inverse", False),
    }


def runs_frame(store: ResultStore) -> pd.DataFrame:
    """One tidy row per finished run (columns :data:`RUN_COLUMNS`)."""
    study = (store.get_meta("study") or {}).get("name", "")
    rows = [run_row(study, r) for r in store.runs()]
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    # None (NaN from JSON) → float NaN in numeric columns
    for col in ("auc", "fpr_diff", "tpr_diff", "eo_diff", "fpr_a0", "fpr_a1", "tpr_a0", "tpr_a1", "threshold",
                "level", "test_level", "auc_a", "auc_x", "salience", "val_loss", "auc_t1", "auc_t2", "share"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def hparams_frame(store: ResultStore) -> pd.DataFrame:
    """The chosen hyperparameters per (base, task, N) with the number of trials."""
    rows = []
    for h in store.all_hparams():
        spec, res = h["spec"], h["result"]
        rows.append({"base": spec.get("base_name", spec["base"]["kind"]), "task": spec["task"],
                     "n_train": spec["n_train"], "lr": res["lr"], "weight_decay": res["weight_decay"],
                     "val_loss": res["val_loss"], "trials": len(res.get("trials", []))})
    return pd.DataFrame(rows, columns=["base", "task", "n_train", "lr", "weight_decay", "val_loss", "trials"])

"""Builders of small synthetic ``runs`` frames whose aggregates are known exactly.

Each setting gets seeds whose values are ``mean + spread · (−1, 0, +1)``: the mean is exact and the sample
standard deviation equals ``spread``.

Every row carries a ``base_role`` (``biased``, ``control``, ``scratch`` or ``other``) derived from ``base_kind``
and ``base_attribute`` as :func:`biastransfer.roles.derive_role` does, with ``a`` the sensitive attribute; a
caller may pass ``base_role`` to override it (a role declared in the study).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from biastransfer.roles import derive_role

#: The sensitive attribute of the synthetic runs.
SENSITIVE = "a"

OFFSETS = (-1.0, 0.0, 1.0)

BASE_INFO = {
    "gendered": ("trained", "a"),
    "control-hat": ("trained", "Wearing_Hat"),
    "control-bangs": ("trained", "Bangs"),
    "control-chubby": ("trained", "Chubby"),
    "scratch": ("scratch", ""),
    "moco": ("checkpoint", ""),
}


def role_of(base_kind: object, base_attribute: object) -> str:
    """The role a study derives for a base of this kind and attribute (``a`` is the sensitive attribute)."""
    return derive_role({"kind": base_kind, "attribute": base_attribute}, SENSITIVE)


def run_row(**kw: object) -> dict[str, object]:
    """One run with every column of the runner's frame (defaults for those not given).

    ``base_role`` is derived from ``base_kind`` and ``base_attribute`` unless given."""
    fpr = float(kw.get("fpr_diff", 0.0))
    row: dict[str, object] = {
        "run_key": "",
        "study": "test-study",
        "experiment": "inheritance",
        "experiment_kind": "inheritance",
        "dataset": "synthetic",
        "task": "T",
        "base": "gendered",
        "base_kind": "trained",
        "base_attribute": "a",
        "base_role": "",  # derived below unless given
        "intervention": "natural",
        "level": 0.8,
        "level_label": "natural",
        "test_level": np.nan,
        "test_label": "natural",
        "n_train": 1024,
        "seed": 0,
        "auc": 0.85,
        "fpr_diff": fpr,
        "tpr_diff": 0.5 * fpr,
        "eo_diff": abs(fpr),
        "fpr_a0": 0.2,
        "fpr_a1": 0.2 + fpr,
        "tpr_a0": 0.7,
        "tpr_a1": 0.7 + 0.5 * fpr,
        "threshold": 0.5,
        "threshold_policy": "val-calibrated",
        "gap_label": "Women − Men",
        "lr": 0.01,
        "weight_decay": 1e-4,
        "epochs": 5,
        "val_loss": 0.4,
        "seconds": 1.0,
        "auc_a": np.nan,
        "auc_x": np.nan,
        "salience": np.nan,
        "inverse": np.nan,
    }
    row.update(kw)
    if "base_role" not in kw:
        row["base_role"] = role_of(row["base_kind"], row["base_attribute"])
    row["run_key"] = "|".join(str(row[k]) for k in ("experiment", "task", "base", "level_label", "seed"))
    return row


def inheritance_runs(
    values: dict[tuple[str, str], tuple[float, float]],
    *,
    levels: dict[str, float] | None = None,
    spread: float = 0.01,
    auc: float = 0.85,
    bases: dict[str, tuple[str, str]] | None = None,
    roles: dict[str, str] | None = None,
    jitter: dict[tuple[str, str], Sequence[float]] | None = None,
    directions: dict[tuple[str, str], float] | None = None,
) -> pd.DataFrame:
    """Inheritance runs: ``values[(task, base)] = (mean fpr_diff at natural, mean at 0.8)``.

    ``levels`` gives each task's natural level (default 0.8 for all); 3 seeds per setting. ``bases`` adds or
    replaces ``(base_kind, base_attribute)`` of bases by name (default :data:`BASE_INFO`); ``roles`` declares
    the role of bases by name (default: derived from kind and attribute). ``jitter[(task, base)]`` adds one
    offset per seed (so paired differences vary by seed); ``directions[(task, level label)]`` (+1, −1 or NaN)
    adds the columns ``fpr_diff_signed = d · fpr_diff`` and ``fpr_diff_abs`` to those runs.
    """
    info = {**BASE_INFO, **(bases or {})}
    declared = roles or {}
    rows = []
    for (task, base), (nat, fixed) in values.items():
        kind, attr = info[base]
        role = {"base_role": declared[base]} if base in declared else {}
        natural_level = (levels or {}).get(task, 0.8)
        for label, level, mean in (("natural", natural_level, nat), ("0.8", 0.8, fixed)):
            if mean is None or np.isnan(mean):
                continue
            extra = (jitter or {}).get((task, base), (0.0,) * len(OFFSETS))
            signs = {"d": directions[(task, label)]} if (task, label) in (directions or {}) else {}
            for seed, off in enumerate(OFFSETS):
                fpr = mean + spread * off + extra[seed]
                signed = {"fpr_diff_signed": signs["d"] * fpr, "fpr_diff_abs": abs(fpr)} if signs else {}
                rows.append(
                    run_row(
                        task=task,
                        base=base,
                        base_kind=kind,
                        base_attribute=attr,
                        intervention="natural" if label == "natural" else "collect",
                        level=level,
                        level_label=label,
                        seed=seed,
                        fpr_diff=fpr,
                        auc=auc + 0.001 * off,
                        **signed,
                        **role,
                    )
                )
    return pd.DataFrame(rows)


def sweep_runs(
    lines: dict[tuple[str, str], Sequence[tuple[float, float, float]]],
    *,
    task: str = "Blond_Hair",
    test_level: float = 0.8,
    spread: float = 0.005,
    roles: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Sweep runs: ``lines[(base, intervention)] = [(level, mean auc, mean fpr_diff), …]``; 3 seeds each.

    ``roles`` declares the role of bases by name (default: derived from kind and attribute)."""
    declared = roles or {}
    rows = []
    for (base, intervention), points in lines.items():
        kind, attr = BASE_INFO[base]
        role = {"base_role": declared[base]} if base in declared else {}
        for level, auc, fpr in points:
            for seed, off in enumerate(OFFSETS):
                rows.append(
                    run_row(
                        experiment="sweep",
                        experiment_kind="correlation_sweep",
                        task=task,
                        base=base,
                        base_kind=kind,
                        base_attribute=attr,
                        intervention=intervention,
                        level=level,
                        level_label=f"{level:g}",
                        test_level=test_level,
                        test_label=f"{test_level:g}",
                        seed=seed,
                        auc=auc + 0.001 * off,
                        fpr_diff=fpr + spread * off,
                        **role,
                    )
                )
    return pd.DataFrame(rows)


def salience_runs(saliences: dict[str, float], *, auc_x: float = 0.8, gap: float = 0.02) -> pd.DataFrame:
    """Salience runs (set and inverse set, 3 seeds) with mean salience exactly ``saliences[task]``.

    The set is ``gap`` below and the inverse set ``gap`` above the target, per seed.
    """
    rows = []
    for task, sal in saliences.items():
        for inverse, shift in ((False, -gap), (True, gap)):
            for seed, off in enumerate(OFFSETS):
                auc_a = auc_x + sal - 0.5 + shift + 0.01 * off
                rows.append(
                    run_row(
                        experiment="salience",
                        experiment_kind="salience",
                        task=task,
                        base="",
                        base_kind="",
                        base_attribute="",
                        intervention="",
                        level=np.nan,
                        level_label="",
                        test_label="",
                        seed=seed,
                        auc=np.nan,
                        fpr_diff=np.nan,
                        tpr_diff=np.nan,
                        eo_diff=np.nan,
                        auc_a=auc_a,
                        auc_x=auc_x,
                        salience=auc_a - auc_x + 0.5,
                        inverse=inverse,
                    )
                )
    return pd.DataFrame(rows)

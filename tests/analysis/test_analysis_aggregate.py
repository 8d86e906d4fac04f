"""Aggregation over seeds against hand-computed Student-t intervals (groups from a kind's outcome schema); base
roles; salience averaging; line splitting; the inheritance comparison."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from analysis_builders import inheritance_runs, run_row, salience_runs

from biastransfer.analysis.aggregate import abs_interval, aggregate
from biastransfer.experiments.correlation_sweep import CorrelationSweep
from biastransfer.experiments.correlation_sweep.analysis import is_test_level, split_lines
from biastransfer.experiments.inheritance import Inheritance
from biastransfer.experiments.inheritance.analysis import inheritance_comparison
from biastransfer.experiments.salience import Salience, salience_table
from biastransfer.roles import derive_role

# t_{0.975, df}: hard-coded so the test does not reuse the implementation's scipy call
T975 = {1: 12.706204736174698, 2: 4.302652729749464, 3: 3.182446305284263}


def hand_interval(values: list[float]) -> tuple[float, float, float]:
    """mean ∓ t · s / √n by hand."""
    n = len(values)
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T975[n - 1] * s / math.sqrt(n)
    return mean, mean - half, mean + half


def two_settings() -> pd.DataFrame:
    """Two bases; gendered has 3 seeds, control 4 seeds with different lr per run (not a setting)."""
    rows = [
        run_row(base="gendered", seed=i, auc=a, fpr_diff=f)
        for i, (a, f) in enumerate([(0.80, 0.30), (0.84, 0.25), (0.83, 0.41)])
    ]
    control = [(0.86, 0.10, 0.1), (0.87, 0.05, 0.01), (0.85, 0.12, 0.1), (0.90, 0.02, 0.1)]
    rows += [
        run_row(base="control-hat", base_attribute="Wearing_Hat", seed=i, auc=a, fpr_diff=f, lr=lr, seconds=i)
        for i, (a, f, lr) in enumerate(control)
    ]
    return pd.DataFrame(rows)


def test_aggregate_matches_hand_t_intervals() -> None:
    agg = Inheritance().aggregate(two_settings())
    assert len(agg) == 2
    g = agg[agg["base"] == "gendered"].iloc[0]
    c = agg[agg["base"] == "control-hat"].iloc[0]
    assert g["n_seeds"] == 3 and c["n_seeds"] == 4
    for row, aucs, fprs in (
        (g, [0.80, 0.84, 0.83], [0.30, 0.25, 0.41]),
        (c, [0.86, 0.87, 0.85, 0.90], [0.10, 0.05, 0.12, 0.02]),
    ):
        for metric, vals in (("auc", aucs), ("fpr_diff", fprs)):
            mean, low, high = hand_interval(vals)
            assert row[f"{metric}_mean"] == pytest.approx(mean, abs=1e-12)
            assert row[f"{metric}_low"] == pytest.approx(low, abs=1e-9)
            assert row[f"{metric}_high"] == pytest.approx(high, abs=1e-9)


def test_schema_keys_exclude_ids_outcomes_and_hparams() -> None:
    keys = Inheritance.settings()
    for col in ("seed", "run_key", "seconds", "lr", "weight_decay", "threshold", "val_loss", "auc", "fpr_a0"):
        assert col not in keys
    for col in ("task", "base", "base_role", "intervention", "level", "level_label", "test_label", "n_train",
                "gap_label"):
        assert col in keys
    assert Inheritance.metrics() == ["auc", "fpr_diff", "tpr_diff", "eo_diff", "fpr_diff_signed", "fpr_diff_abs"]
    agg = Inheritance().aggregate(two_settings())
    assert set(agg.columns) >= {"n_seeds", "auc_mean", "auc_low", "auc_high", "eo_diff_high"}
    for col in ("seed", "run_key", "lr", "seconds", "fpr_a0", "threshold"):
        assert col not in agg.columns


def test_one_seed_gives_nan_bounds_and_custom_by() -> None:
    runs = pd.DataFrame(
        [run_row(base="gendered", auc=0.8), run_row(base="scratch", base_kind="scratch", auc=0.7)]
    )
    agg = Inheritance().aggregate(runs)
    assert agg["n_seeds"].tolist() == [1, 1] and agg["auc_n"].tolist() == [1, 1]
    assert agg["auc_low"].isna().all() and agg["auc_high"].isna().all()
    by = aggregate(runs, metrics=("auc",), by=["study"])
    # two runs, both at seed 0: two values of auc, one distinct seed
    assert len(by) == 1 and by["auc_n"].iloc[0] == 2 and by["n_seeds"].iloc[0] == 1
    assert by["auc_mean"].iloc[0] == pytest.approx(0.75)
    assert "fpr_diff_mean" not in by.columns


def test_nan_metric_dropped_with_warning_and_all_nan_silent() -> None:
    rows = [run_row(seed=i, fpr_diff=v) for i, v in enumerate([0.1, np.nan, 0.3])]
    with pytest.warns(UserWarning, match="NaN"):
        agg = aggregate(pd.DataFrame(rows), metrics=("fpr_diff",), by=Inheritance.settings())
    mean, low, high = hand_interval([0.1, 0.3])
    assert agg["fpr_diff_mean"].iloc[0] == pytest.approx(mean)
    assert agg["fpr_diff_low"].iloc[0] == pytest.approx(low)
    assert agg["fpr_diff_high"].iloc[0] == pytest.approx(high)
    sal = salience_runs({"Smiling": 0.4})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = aggregate(sal, Inheritance.metrics(), Salience.settings())  # auc, fpr… all NaN here: no warning
    assert out["auc_mean"].isna().all() and len(out) == 2  # set and inverse set
    assert out["n_seeds"].tolist() == [0, 0] and out["auc_n"].tolist() == [0, 0]  # no finite metric: no seed
    assert agg["fpr_diff_n"].iloc[0] == 2 and agg["n_seeds"].iloc[0] == 2  # the NaN run is no seed
    with pytest.warns(UserWarning, match="NaN"):
        both = aggregate(pd.DataFrame(rows), metrics=("auc", "fpr_diff"), by=Inheritance.settings())
    assert both["n_seeds"].iloc[0] == 3 and both["auc_n"].iloc[0] == 3 and both["fpr_diff_n"].iloc[0] == 2


def test_empty_runs() -> None:
    agg = Inheritance().aggregate(two_settings().iloc[0:0])
    assert agg.empty and "auc_mean" in agg.columns


def test_salience_averages_set_and_inverse_then_seeds() -> None:
    rows = []
    # per seed: set salience, inverse salience
    per_seed = [(0.60, 0.70), (0.62, 0.66), (0.58, 0.74)]
    for seed, (s_set, s_inv) in enumerate(per_seed):
        for inverse, sal in ((False, s_set), (True, s_inv)):
            rows.append(
                run_row(
                    experiment_kind="salience",
                    task="Bangs",
                    seed=seed,
                    auc_a=0.9,
                    auc_x=1.4 - sal,
                    inverse=inverse,
                )
            )
    # orientation: an AUC below 0.5 counts as 1 − AUC (0.3 → 0.7): salience = 0.9 − 0.7 + 0.5 = 0.7
    for seed in range(3):
        rows.append(
            run_row(experiment_kind="salience", task="Hat", seed=seed, auc_a=0.9, auc_x=0.3, inverse="False")
        )
    tab = salience_table(pd.DataFrame(rows))
    bangs = tab[tab["task"] == "Bangs"].iloc[0]
    mean, low, high = hand_interval([(a + b) / 2 for a, b in per_seed])
    assert bangs["salience_mean"] == pytest.approx(mean)
    assert bangs["salience_low"] == pytest.approx(low)
    assert bangs["salience_high"] == pytest.approx(high)
    assert bangs["salience_set"] == pytest.approx(0.60)
    assert bangs["salience_inverse"] == pytest.approx(0.70)
    assert bangs["n_seeds"] == 3
    hat = tab[tab["task"] == "Hat"].iloc[0]
    assert hat["salience_mean"] == pytest.approx(0.7)
    assert math.isnan(hat["salience_inverse"])
    # no salience runs: an empty table with the same columns
    for none in (pd.DataFrame(), pd.DataFrame(rows).iloc[0:0]):
        empty = salience_table(none)
        assert empty.empty and list(empty.columns) == list(tab.columns)


def test_abs_interval() -> None:
    assert abs_interval(-0.3, -0.4, -0.2) == pytest.approx((0.3, 0.2, 0.4))
    assert abs_interval(0.05, -0.1, 0.2) == pytest.approx((0.05, 0.0, 0.2))
    m, lo, hi = abs_interval(-0.2, math.nan, math.nan)
    assert m == 0.2 and math.isnan(lo) and math.isnan(hi)


def test_derive_role_follows_what_the_base_is() -> None:
    assert derive_role({"kind": "trained", "attribute": "a"}, "a") == "biased"
    assert derive_role({"kind": "trained", "attribute": "Male"}, "Male") == "biased"
    assert derive_role({"kind": "trained", "attribute": "Wearing_Hat"}, "a") == "control"
    assert derive_role({"kind": "trained", "attribute": "a"}, "Male") == "control"  # a is not sensitive here
    assert derive_role({"kind": "scratch"}, "a") == "scratch"
    assert derive_role({"kind": "checkpoint", "name": "moco"}, "a") == "other"


def test_base_names_never_decide_roles() -> None:
    # A base NAMED like a control but trained on the sensitive attribute is the biased one, and a base NAMED
    # "biased" but trained on another attribute is a control.
    runs = inheritance_runs(
        {("T", "control-gender-free"): (0.3, 0.3), ("T", "biased"): (0.1, 0.1), ("T", "scratch"): (0.02, 0.02)},
        bases={"control-gender-free": ("trained", "a"), "biased": ("trained", "Wearing_Hat")},
    )
    roles = dict(zip(runs["base"], runs["base_role"], strict=True))
    assert roles == {"control-gender-free": "biased", "biased": "control", "scratch": "scratch"}
    comp = inheritance_comparison(runs)
    assert set(comp["biased_base"]) == {"control-gender-free"}
    assert set(comp["max_control_base"]) == {"biased"}
    assert comp["holds"].all()
    assert comp["inherited_bias"].tolist() == pytest.approx([0.2, 0.2])
    # a role declared in the study overrides what the base is
    declared = inheritance_runs(
        {("T", "gendered"): (0.3, 0.3), ("T", "control-hat"): (0.1, 0.1)},
        roles={"gendered": "control", "control-hat": "biased"},
    )
    comp = inheritance_comparison(declared)
    assert set(comp["biased_base"]) == {"control-hat"} and not comp["holds"].any()
    assert set(comp["verdict"]) == {"reversed"}


def test_is_test_level_and_split_lines() -> None:
    rows = []
    for level, n in ((0.5, 409), (0.8, 1024), (1.0, 819)):  # subselect: n_train varies along one line
        rows.append(
            run_row(
                experiment_kind="correlation_sweep",
                intervention="subselect",
                level=level,
                level_label=f"{level:g}",
                test_level=0.8,
                test_label="0.8",
                n_train=n,
            )
        )
    for n in (128, 1024):  # collect at two set sizes: two lines
        for level in (0.5, 0.8):
            rows.append(
                run_row(
                    experiment_kind="correlation_sweep",
                    intervention="collect",
                    level=level,
                    level_label=f"{level:g}",
                    test_level=0.8,
                    test_label="0.8",
                    n_train=n,
                )
            )
    agg = CorrelationSweep().aggregate(pd.DataFrame(rows))
    assert is_test_level(agg).sum() == 3
    lines = split_lines(agg)
    keys = sorted((k["intervention"], k.get("n_train")) for k, _ in lines)
    assert keys == [("collect", 128), ("collect", 1024), ("subselect", None)]
    sub = next(r for k, r in lines if k["intervention"] == "subselect")
    assert sub["level"].tolist() == [0.5, 0.8, 1.0]
    natural = CorrelationSweep().aggregate(
        pd.DataFrame([run_row(level=0.77, level_label="natural"), run_row(level=0.8, level_label="0.8")])
    )
    assert is_test_level(natural).tolist() == [True, False]


def test_inheritance_comparison_columns() -> None:
    runs = inheritance_runs(
        {("T", "gendered"): (0.3, 0.3), ("T", "control-hat"): (-0.1, 0.1), ("T", "scratch"): (0.02, 0.02)}
    )
    comp = inheritance_comparison(runs)
    assert len(comp) == 2
    row = comp[comp["level_label"] == "natural"].iloc[0]
    assert row["biased_base"] == "gendered" and row["max_control_base"] == "control-hat"
    assert not row["signed"]  # no fpr_diff_signed column: |FPR difference| per run
    assert row["biased_mean"] == pytest.approx(0.3) and row["biased_abs"] == pytest.approx(0.3)
    assert row["biased_low"] < 0.3 < row["biased_high"] and row["biased_n_seeds"] == 3
    assert not any(c.startswith("gendered") or c.startswith("base") for c in comp.columns)
    assert row["max_control_mean"] == pytest.approx(0.1) and row["max_control_abs"] == pytest.approx(0.1)
    assert row["inherited_bias"] == pytest.approx(0.2)
    # per run |FPR difference|: control-hat's seeds −0.11, −0.10, −0.09 give 0.11, 0.10, 0.09, so the paired
    # differences from gendered's 0.29, 0.30, 0.31 are 0.18, 0.20, 0.22
    mean, low, high = hand_interval([0.18, 0.20, 0.22])
    assert (row["paired_mean"], row["paired_low"], row["paired_high"]) == pytest.approx((mean, low, high))
    assert row["n_pairs"] == 3 and row["min_pairs"] == 3
    assert row["controls"] == [{"base": "control-hat", "mean": pytest.approx(mean), "low": pytest.approx(low),
                                "high": pytest.approx(high), "n_pairs": 3}]
    assert row["verdict"] == "holds" and bool(row["holds"]) and bool(row["scratch_below"])
    assert row["scratch_paired_mean"] == pytest.approx(0.28) and row["scratch_paired_n"] == 3
    # the aggregate (no seeds) still gives the means, but nothing paired
    agg = inheritance_comparison(Inheritance().aggregate(runs))
    assert agg["inherited_bias"].tolist() == pytest.approx(comp["inherited_bias"].tolist())
    assert set(agg["verdict"]) == {"not established"} and (agg["n_pairs"] == 0).all()


def test_a_column_not_in_the_schema_never_splits_seeds() -> None:
    runs = pd.DataFrame([run_row(seed=i, auc=0.8 + i / 100) for i in range(3)]).assign(
        new_metric=[0.1, 0.2, 0.3]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agg = Inheritance().aggregate(runs)
    assert len(agg) == 1 and agg["n_seeds"].iloc[0] == 3
    assert "new_metric" not in agg.columns and "new_metric_mean" not in agg.columns
    assert agg["auc_mean"].iloc[0] == pytest.approx(0.81)
    both = aggregate(runs, metrics=("auc", "new_metric"), by=Inheritance.settings())
    assert len(both) == 1 and both["new_metric_mean"].iloc[0] == pytest.approx(0.2)


def test_subselect_lines_of_two_requested_sizes_stay_two_lines() -> None:
    """The paper's constrained sweep at N = 128 and 1024: the sets shrink along each line (n_train varies), and the
    requested N (n_requested) keeps the two lines apart instead of splitting them into single points."""
    rows = []
    for n in (128, 1024):
        for level, share in ((0.5, 0.4), (0.6, 0.5), (0.8, 1.0)):
            for seed in (0, 1):
                rows.append(run_row(experiment_kind="correlation_sweep", intervention="subselect", level=level,
                                    level_label=f"{level:g}", test_level=0.8, test_label="0.8",
                                    n_train=int(n * share), n_requested=n, seed=seed))
    lines = split_lines(CorrelationSweep().aggregate(pd.DataFrame(rows)))
    assert sorted(int(k["n_requested"]) for k, _ in lines) == [128, 1024]
    for key, line in lines:
        assert "n_train" not in key and line["level"].tolist() == [0.5, 0.6, 0.8]
        assert line["n_train"].tolist() == [int(key["n_requested"] * s) for s in (0.4, 0.5, 1.0)]

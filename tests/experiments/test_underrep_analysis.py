"""Analysis of underrepresentation runs: roles, the paired T2 AUC difference, the correction, the reading.

The functions take the underrepresentation rows only; the report hands each kind its own rows
(:func:`biastransfer.report.page.kind_results`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from biastransfer.experiments.base import Results
from biastransfer.experiments.underrepresentation import Underrepresentation
from biastransfer.experiments.underrepresentation.analysis import (
    UNDERREP_METRICS,
    correction_table,
    pair_salience_table,
    pairs_table,
    split_task,
    t2_gap_table,
    underrep_reading,
    underrep_runs,
    underrep_table,
)
from biastransfer.metrics.intervals import t_interval
from biastransfer.report.page import kind_results


def _runs(values: dict[tuple[str, float, int], float], n: int = 128) -> pd.DataFrame:
    """Runs of task pullover+coat: values[(base attribute, share, seed)] = AUC on T2."""
    rows = []
    for (attr, share, seed), v in values.items():
        rows.append({"run_key": f"{attr}{share}{seed}", "study": "s", "experiment": "ur",
                     "experiment_kind": "underrepresentation", "dataset": "fashion-mnist", "task": "pullover+coat",
                     "base": f"pretrain-{attr}", "base_kind": "trained", "base_attribute": attr,
                     "base_role": "control",
                     "intervention": "subgroup_share", "level": share, "level_label": f"{share:g}",
                     "test_level": np.nan, "test_label": "natural", "n_train": n, "seed": seed, "auc": v + 0.05,
                     "auc_t1": 0.9, "auc_t2": v, "share": share})
    return pd.DataFrame(rows)


T1_AUC = {0.1: [0.70, 0.72, 0.71], 0.3: [0.81, 0.82, 0.82], 0.5: [0.86, 0.85, 0.88]}
T2_AUC = {0.1: [0.80, 0.81, 0.83], 0.3: [0.83, 0.84, 0.86], 0.5: [0.86, 0.86, 0.87]}


def _example() -> pd.DataFrame:
    values = {}
    for share in (0.1, 0.3, 0.5):
        for seed in range(3):
            values[("pullover", share, seed)] = T1_AUC[share][seed]
            values[("coat", share, seed)] = T2_AUC[share][seed]
    return _runs(values)


def test_roles_come_from_the_base_attribute() -> None:
    assert UNDERREP_METRICS == ("auc", "auc_t1", "auc_t2")
    assert split_task("pullover+coat") == ("pullover", "coat") and split_task("shirt") is None
    ur = underrep_runs(_example())
    assert len(ur) == 18
    assert dict(zip(ur["base"], ur["role"], strict=True)) == {"pretrain-pullover": "pretrain-t1",
                                                              "pretrain-coat": "pretrain-t2"}


def test_gap_is_paired_by_seed_with_a_t_interval() -> None:
    gaps = t2_gap_table(_example())
    assert list(gaps["level"]) == [0.1, 0.3, 0.5]
    for share, row in zip((0.1, 0.3, 0.5), gaps.itertuples(), strict=True):
        d = np.array(T2_AUC[share]) - np.array(T1_AUC[share])
        iv = t_interval(d)
        assert row.gap_mean == pytest.approx(iv.mean)
        assert row.gap_low == pytest.approx(iv.low) and row.gap_high == pytest.approx(iv.high)
        assert row.n_pairs == 3 and row.t1 == "pullover" and row.t2 == "coat"
        assert row.significant == (iv.low > 0)
    assert bool(gaps.iloc[0]["significant"])


def test_unpaired_seeds_are_dropped() -> None:
    values = {("pullover", 0.5, s): 0.7 for s in (0, 1, 2)} | {("coat", 0.5, s): 0.8 + 0.01 * s for s in (1, 2, 3)}
    gaps = t2_gap_table(_runs(values))
    assert int(gaps.iloc[0]["n_pairs"]) == 2
    assert gaps.iloc[0]["gap_mean"] == pytest.approx(0.115)


def test_correction_against_pretrain_t2_at_the_smallest_share() -> None:
    corr = correction_table(_example())
    assert set(corr["reference_level"]) == {0.1}
    ref = np.array(T2_AUC[0.1])
    for share, row in zip((0.1, 0.3, 0.5), corr.itertuples(), strict=True):
        d = ref - np.array(T1_AUC[share])
        assert row.remaining_mean == pytest.approx(d.mean())
        assert row.reaches == (d.mean() <= 0)
    assert list(corr["reaches"]) == [False, True, True]
    text = " ".join(underrep_reading(_example()))
    assert "Pretrain-pullover reaches it at share 0.3" in text
    assert "significantly worse on coat at 1 of 3 share(s)" in text


def test_table_aggregates_each_base_and_share() -> None:
    tab = underrep_table(_example())
    assert len(tab) == 6 and set(tab["n_seeds"]) == {3}
    row = tab[(tab["base"] == "pretrain-pullover") & (tab["level"] == 0.3)].iloc[0]
    assert row["auc_t2_mean"] == pytest.approx(np.mean(T1_AUC[0.3]))
    assert list(tab["role"][:3]) == ["pretrain-t1"] * 3


def test_no_pair_is_said_plainly() -> None:
    values = {("pullover", 0.5, s): 0.7 for s in (0, 1)}
    assert t2_gap_table(_runs(values)).empty
    assert "no setting has both a Pretrain-T1 and a Pretrain-T2 base" in underrep_reading(_runs(values))[0]
    assert underrep_reading(_runs(values).iloc[0:0]) == []


def test_the_report_hands_the_kind_its_own_rows_only() -> None:
    # an unrelated inheritance row reaches the inheritance kind, not the underrepresentation analysis
    example = _example()
    other = {**example.iloc[0].to_dict(), "run_key": "x", "experiment_kind": "inheritance", "task": "shirt",
             "auc_t2": np.nan, "base_role": "biased", "fpr_diff": 0.1}
    mixed = pd.concat([example, pd.DataFrame([other])], ignore_index=True)
    kinds = {plugin.registry_name: (plugin, res) for plugin, res in kind_results(mixed)}
    assert set(kinds) == {"inheritance", "underrepresentation"}
    plugin, res = kinds["underrepresentation"]
    assert len(res.runs) == 18 and set(res.of("inheritance")["task"]) == {"shirt"}
    assert plugin.reading(res) == underrep_reading(example)
    assert Underrepresentation().reading(Results(example)) == underrep_reading(example)
    pd.testing.assert_frame_equal(underrep_table(res.runs), underrep_table(example))


def _pair_runs(pair: str, t1_auc: dict[float, list[float]], t2_auc: dict[float, list[float]],
               scratch: tuple[list[float], list[float]] | None = None) -> pd.DataFrame:
    """Runs of one pair ``T1+T2``: Pretrain-T1/T2 AUC on T2 per share and seed; optionally a scratch base at share
    0.5 with (AUC on T1, AUC on T2) per seed."""
    t1, t2 = pair.split("+")
    frames = []
    for attr, values in ((t1, t1_auc), (t2, t2_auc)):
        f = _runs({(attr, share, seed): v for share, vs in values.items() for seed, v in enumerate(vs)})
        frames.append(f)
    if scratch is not None:
        f = _runs({("x", 0.5, seed): v for seed, v in enumerate(scratch[1])})
        f = f.assign(base="scratch", base_kind="scratch", base_attribute="", auc_t1=scratch[0])
        frames.append(f)
    out = pd.concat(frames, ignore_index=True).assign(task=pair)
    return out.assign(run_key=[f"{pair}{k}" for k in out["run_key"]])


def test_across_pairs_mean_over_pairs_and_the_pairs_that_match() -> None:
    """Three pairs: the across-pairs gap is the Student-t interval over the pairs' seed-paired mean gaps; a pair
    matches at p when Pretrain-T1 at p is not shown worse than Pretrain-T2 at the smallest share."""
    a = _pair_runs("pullover+coat", T1_AUC, T2_AUC)
    b = _pair_runs("shirt+t-shirt", {0.1: [0.60, 0.62, 0.61], 0.3: [0.65, 0.66, 0.64], 0.5: [0.70, 0.71, 0.72]},
                   {0.1: [0.80, 0.80, 0.81], 0.3: [0.82, 0.83, 0.83], 0.5: [0.84, 0.85, 0.85]})
    c = _pair_runs("coat+pullover", {0.1: [0.80, 0.82, 0.81], 0.3: [0.86, 0.86, 0.87], 0.5: [0.88, 0.88, 0.89]},
                   {0.1: [0.84, 0.83, 0.85], 0.3: [0.86, 0.86, 0.88], 0.5: [0.88, 0.89, 0.89]})
    runs = pd.concat([a, b, c], ignore_index=True)
    across = pairs_table(runs)
    gaps = t2_gap_table(runs)
    corr = correction_table(runs)
    assert list(across["level"]) == [0.1, 0.3, 0.5] and set(across["n_pairs"]) == {3}
    for _, row in across.iterrows():
        per_pair = gaps[np.isclose(gaps["level"], row["level"])]["gap_mean"].to_numpy()
        iv = t_interval(per_pair)
        assert row["across_mean"] == pytest.approx(iv.mean)
        assert (row["across_low"], row["across_high"]) == (pytest.approx(iv.low), pytest.approx(iv.high))
        here = corr[np.isclose(corr["level"], row["level"])]
        assert row["matched"] == int((here["remaining_low"] <= 0).sum())
        assert row["significant"] == int(gaps[np.isclose(gaps["level"], row["level"])]["significant"].sum())
    # by hand at 0.3: pullover+coat matches (0.81..0.82 vs the reference 0.80..0.83), shirt+t-shirt does not
    # (0.65 vs 0.80), coat+pullover does (0.86 vs 0.84)
    assert int(across.loc[np.isclose(across["level"], 0.3), "matched"].iloc[0]) == 2
    assert pairs_table(a).empty  # one pair is read on its own
    reading = underrep_reading(runs)
    assert any(line.startswith("Across 3 pairs at N=128") and "matches the reference in 2 of 3" in line
               for line in reading)


def test_pair_salience_from_a_base_that_is_neither_pretrain() -> None:
    runs = pd.concat([
        _pair_runs("pullover+coat", T1_AUC, T2_AUC, scratch=([0.90, 0.91, 0.92], [0.80, 0.82, 0.81])),
        _pair_runs("shirt+t-shirt", T1_AUC, T2_AUC, scratch=([0.80, 0.85, 0.78], [0.81, 0.80, 0.82])),
    ], ignore_index=True)
    sal = pair_salience_table(runs).set_index("task")
    d = np.array([0.90, 0.91, 0.92]) - np.array([0.80, 0.82, 0.81])
    assert sal.loc["pullover+coat", "sal_mean"] == pytest.approx(d.mean())
    assert sal.loc["pullover+coat", "sal_low"] == pytest.approx(t_interval(d).low)
    assert sal.loc["pullover+coat", "relation"] == "T1 more salient"
    assert sal.loc["shirt+t-shirt", "relation"] == "equally salient"
    assert sal.loc["pullover+coat", "base"] == "scratch" and sal.loc["pullover+coat", "level"] == 0.5
    assert pair_salience_table(_example()).empty  # no base outside the pair's two


def test_a_block_of_pairs_runs_each_pair_on_its_own_pretrain_bases() -> None:
    from biastransfer.plan import parse_study
    from tiny_study import kind_study_dict

    study = kind_study_dict("underrepresentation")
    study["bases"] = {f"pretrain-{t}": {"kind": "trained", "attribute": t} for t in ("t1", "t2", "t3", "t5")}
    study["bases"]["scratch"] = {"kind": "scratch"}
    study["bases"]["gendered"] = {"kind": "trained", "attribute": "a"}
    study["experiments"][0].update(tasks=["t3+t5", "t1+t2"], bases=sorted(study["bases"]), levels=[0.5],
                                   seeds=[0])
    specs = parse_study(study).expand()
    runs = {(s.task, s.base_name) for s in specs}
    assert runs == {("t3+t5", b) for b in ("pretrain-t3", "pretrain-t5", "scratch", "gendered")} | {
        ("t1+t2", b) for b in ("pretrain-t1", "pretrain-t2", "scratch", "gendered")}

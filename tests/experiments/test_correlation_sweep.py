"""The correlation sweep: its golden report, intervention options (start_level) set from the study, the paired
non-inferiority rule of its reading (docs/protocols.md §4), its ``auc_tolerance`` option, and intervals drawn
clipped to the metric's range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from inline_snapshot import snapshot
from matplotlib.collections import LineCollection, PolyCollection
from scipy import stats

from biastransfer.backends import Resources
from biastransfer.backends.workspace import Workspace
from biastransfer.config import ConfigError
from biastransfer.data.synthetic import SyntheticDataset
from biastransfer.driver import current_specs, run_study
from biastransfer.experiments.base import Results
from biastransfer.experiments.correlation_sweep import CorrelationSweep, analysis, levels_table
from biastransfer.experiments.correlation_sweep.plot import tradeoff_plot
from biastransfer.experiments.finetune_number import _curves
from biastransfer.experiments.spurious import prepare_data
from biastransfer.interventions import subselect_size
from biastransfer.plan import parse_study
from biastransfer.report.page import build_report
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore
from report_snapshot import page_snapshot
from tiny_study import TINY_PARAMS, tiny_study_dict


def test_report_golden(kind_report) -> None:
    assert page_snapshot(kind_report("correlation_sweep").html) == snapshot(
        {
            "summary": {"numbers": ["8", "8", "3", "4", "2", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    ["3", "1", "0.8", "0.455", "-0.133", "1.043", "−0.01", "2"],
                    ["3", "1", "0.8", "0.453", "-0.171", "1.076", "−0.01", "2"],
                ],
            },
            "tradeoff": {
                "headings": [
                    "Performance–bias tradeoff across finetuning levels",
                    "Each level against the test-equal level, paired by seed",
                ],
                "tables": [
                    [
                        [
                            "task",
                            "base",
                            "line",
                            "level",
                            "reference",
                            "AUC",
                            "AUC difference",
                            "keeps AUC",
                            "tolerance",
                            "FPR difference",
                            "best",
                            "seeds",
                        ],
                        [
                            "t3",
                            "gendered",
                            "collect",
                            "0.5",
                            "0.8",
                            "0.440",
                            "-0.015 [-0.156, 0.126]",
                            "no",
                            "0.01",
                            "-0.144",
                            "",
                            "2",
                        ],
                        [
                            "t3",
                            "gendered",
                            "reweight",
                            "0.5",
                            "0.8",
                            "0.434",
                            "-0.018 [-0.213, 0.177]",
                            "no",
                            "0.01",
                            "-0.162",
                            "",
                            "2",
                        ],
                    ]
                ],
                "figures": ["plots/tradeoff.png"],
                "numbers": [["95"]],
            },
            "results": {
                "headings": [
                    "Results per setting",
                    "correlation_sweep",
                ],
                "tables": [
                    [
                        [
                            "task",
                            "base",
                            "intervention",
                            "level",
                            "seeds",
                            "auc",
                            "fpr_diff",
                            "tpr_diff",
                            "eo_diff",
                            "fpr_diff_signed",
                            "fpr_diff_abs",
                        ],
                        [
                            "t3",
                            "gendered",
                            "collect",
                            "0.5",
                            "2",
                            "0.440 [-0.007, 0.887]",
                            "-0.144 [-0.858, 0.571]",
                            "-0.019 [-0.892, 0.855]",
                            "0.144 [-0.571, 0.858]",
                            "—",
                            "0.144 [-0.571, 0.858]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "collect",
                            "0.8",
                            "2",
                            "0.455 [-0.133, 1.043]",
                            "-0.194 [-0.273, -0.114]",
                            "0.056 [-0.023, 0.136]",
                            "0.194 [0.114, 0.273]",
                            "-0.194 [-0.273, -0.114]",
                            "0.194 [0.114, 0.273]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "reweight",
                            "0.5",
                            "2",
                            "0.434 [0.006, 0.862]",
                            "-0.162 [-0.639, 0.314]",
                            "-0.013 [-0.330, 0.305]",
                            "0.162 [-0.314, 0.639]",
                            "—",
                            "0.162 [-0.314, 0.639]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "reweight",
                            "0.8",
                            "2",
                            "0.453 [-0.171, 1.076]",
                            "-0.194 [-0.432, 0.044]",
                            "0.062 [0.062, 0.062]",
                            "0.194 [-0.044, 0.432]",
                            "-0.194 [-0.432, 0.044]",
                            "0.194 [-0.044, 0.432]",
                        ],
                    ]
                ],
                "figures": [],
                "numbers": [["95"], []],
            },
            "hparams": {
                "headings": ["Chosen hyperparameters"],
                "tables": [
                    [
                        ["base", "task", "n_train", "lr", "weight_decay", "val_loss", "trials"],
                        ["gendered", "t3", "32", "0.05", "0.0005", "—", "0"],
                    ]
                ],
                "figures": [],
                "numbers": [],
            },
        }
    )


def test_start_level_of_subselect_and_reweight_reaches_the_sets(cache_dir: Path) -> None:
    """``{name: subselect, start_level: 0.5}`` starts from a set at level 0.5, not from the pool's natural level
    (0.8 for t3): from 0.5 to 0.2 subselect keeps 2·0.25N/0.8 examples; from 0.8 it keeps 2·0.1N/0.8."""
    study = tiny_study_dict()
    study["experiments"] = [
        {
            "name": "sweep",
            "kind": "correlation_sweep",
            "tasks": ["t3"],
            "bases": ["gendered"],
            "interventions": [
                "subselect",
                {"name": "subselect", "start_level": 0.5},
                {"name": "reweight", "start_level": 0.5},
            ],
            "levels": [0.2],
            "n_train": 128,
            "seeds": [0],
            "test": 0.8,
        }
    ]
    specs = parse_study(study).expand()
    data = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    sets = [prepare_data(s, data, level=s.level, seed=s.seed) for s in specs]
    natural, started, reweighted = sets
    assert len(natural.train_rows) == subselect_size(natural.natural_level, 0.2, 128)
    assert natural.natural_level != 0.5 and len(natural.train_rows) != len(started.train_rows)
    assert len(started.train_rows) == 80  # ⌊(1 − 0.5)·128 / (1 − 0.2)⌋
    assert reweighted.train_weights is not None and len(reweighted.train_rows) == 128
    y, a = data.table.column("t3"), data.table.column("a")
    rows, w = reweighted.train_rows, reweighted.train_weights
    positives = y[rows] == 1
    assert np.isclose(w[positives & (a[rows] == 1)].sum() / w[positives].sum(), 0.2)
    assert np.isclose(((a[rows] == 1) & positives).sum() / positives.sum(), 0.5)  # the start set is at 0.5


# ------------------------------------------------------------------------------------------- constructed runs
def sweep_line(
    points: dict[float, tuple[list[float], list[float]]],
    *,
    test_level: float = 0.8,
    task: str = "T",
    tolerance: float | None = None,
) -> pd.DataFrame:
    """One sweep line (task ``task``, base ``moco``, ``collect``): ``points[level] = (AUC by seed, FPR difference
    by seed)``; seeds 0, 1, …"""
    rows = []
    for level, (aucs, fprs) in points.items():
        for seed, (auc, fpr) in enumerate(zip(aucs, fprs, strict=True)):
            rows.append(
                {
                    "run_key": f"{task}|{level}|{seed}",
                    "study": "s",
                    "experiment": "sweep",
                    "experiment_kind": "correlation_sweep",
                    "dataset": "synthetic",
                    "task": task,
                    "base": "moco",
                    "base_kind": "checkpoint",
                    "base_attribute": "",
                    "base_role": "other",
                    "n_train": 1024,
                    "seed": seed,
                    "intervention": "collect",
                    "level": level,
                    "level_label": f"{level:g}",
                    "test_level": test_level,
                    "test_label": f"{test_level:g}",
                    "threshold_policy": "val",
                    "gap_label": "a=1 − a=0",
                    "auc": auc,
                    "fpr_diff": fpr,
                    "tpr_diff": 0.0,
                    "eo_diff": abs(fpr),
                    **({} if tolerance is None else {"auc_tolerance": tolerance}),
                }
            )
    return pd.DataFrame(rows)


def line_findings(runs: pd.DataFrame, **kw) -> dict:
    (found,) = analysis.findings(runs, CorrelationSweep.settings(), **kw).values()
    return found


def by_level(found: dict) -> dict[float, dict]:
    return {lv["level"]: lv for lv in found["levels"]}


#: The reference's AUC moves a lot from seed to seed (the shared draw), so separate intervals are wide.
REF_AUC = [0.80, 0.88, 0.84]


def test_means_within_tolerance_are_not_enough_to_keep_auc() -> None:
    """0.5: mean AUC only 0.005 below the reference but paired differences (−0.04, +0.02, +0.005) whose lower
    bound is far below −0.01: does not keep AUC, although it is the least biased level. 0.6: mean AUC 0.008 below
    (lower than 0.5's) but tight paired differences, lower bound above −0.01: keeps AUC and is the best."""
    runs = sweep_line(
        {
            0.5: ([a + d for a, d in zip(REF_AUC, (-0.04, 0.02, 0.005), strict=True)], [0.02, 0.03, 0.01]),
            0.6: ([a + d for a, d in zip(REF_AUC, (-0.0075, -0.008, -0.0085), strict=True)], [0.10, 0.12, 0.11]),
            0.8: (REF_AUC, [0.30, 0.32, 0.31]),
        }
    )
    found = line_findings(runs)
    levels = by_level(found)
    assert levels[0.5]["auc_diff"] == pytest.approx(-0.005)
    assert levels[0.5]["auc_diff_low"] < -0.01 and levels[0.5]["keeps"] is False
    assert levels[0.6]["auc_diff"] == pytest.approx(-0.008)
    assert levels[0.6]["auc_diff_low"] > -0.01 and levels[0.6]["keeps"] is True
    assert found["n_tried"] == 2 and found["n_keep"] == 1 and found["best_level"] == pytest.approx(0.6)
    assert found["improves"] and found["established"]
    # the separate AUC intervals are wide (±0.1): a rule on them could not tell these two levels apart
    assert found["auc_ref_ci"][1] - found["auc_ref_ci"][0] > 0.15
    # a tolerance of 0.1 lets 0.5 in (lower bound −0.083), and it is then the best
    wide = line_findings(runs, auc_tolerance=0.1)
    assert by_level(wide)[0.5]["keeps"] and wide["best_level"] == pytest.approx(0.5) and wide["tolerance"] == 0.1
    text = analysis.reading({("T", "moco", "collect"): found})[0]
    assert text.startswith("T, base moco, collect: of 2 levels tried besides the test-equal level 0.8 (AUC ")
    assert "1 keeps AUC (paired lower bound above −0.01); the best, 0.6 (AUC paired difference -0.008 [" in text
    assert "cuts |FPR difference| from 0.310 to 0.110 (−65%), paired difference -0.200 [" in text
    assert text.endswith("(Bonferroni for 2 levels): established.")


def test_a_level_whose_true_auc_is_003_lower_rarely_keeps_auc() -> None:
    """Simulated: 3 seeds, AUC noise 0.04 per run, a level truly 0.03 below the reference. Comparing means with a
    0.01 tolerance passes it often; the paired lower bound passes it at most ~2.5% of the time."""
    rng = np.random.default_rng(20230)
    reps, seeds = 200, 3
    frames = []
    for r in range(reps):
        ref = 0.85 + rng.normal(0.0, 0.04, seeds)
        low = 0.82 + rng.normal(0.0, 0.04, seeds)
        frames.append(sweep_line({0.6: (list(low), [0.1] * seeds), 0.8: (list(ref), [0.3] * seeds)}, task=f"T{r}"))
    found = analysis.findings(pd.concat(frames, ignore_index=True), CorrelationSweep.settings())
    assert len(found) == reps
    passed = np.array([by_level(f)[0.6]["keeps"] for f in found.values()])
    by_means = np.array([by_level(f)[0.6]["auc"] >= f["auc_ref"] - 0.01 for f in found.values()])
    assert passed.mean() <= 0.05
    assert by_means.mean() >= 0.2  # what the rule on means would have claimed


def test_the_cut_interval_is_bonferroni_widened_for_the_levels_tried() -> None:
    """Five levels besides the reference, four seeds: the paired interval of |FPR diff(best)| − |FPR diff(ref)|
    has half-width t_{1−0.05/(2·5), 3}·sd/√4; here the 95% interval lies below 0 but the Bonferroni one does not."""
    ref_fpr = [0.30, 0.32, 0.31, 0.33]
    best_fpr = [0.23, 0.31, 0.22, 0.28]  # e = (−0.07, −0.01, −0.09, −0.05)
    auc = [0.85, 0.86, 0.84, 0.85]
    points = {0.8: (auc, ref_fpr), 0.6: (auc, best_fpr)}
    for level in (0.0, 0.2, 0.4, 1.0):
        points[level] = ([a - 0.1 for a in auc], [0.0] * 4)  # less biased but far lower AUC: not candidates
    found = line_findings(sweep_line(points))
    e = np.array(best_fpr) - np.array(ref_fpr)
    half = stats.t.ppf(1 - 0.05 / (2 * 5), 3) * e.std(ddof=1) / np.sqrt(4)
    assert found["n_tried"] == 5 and found["n_keep"] == 1 and found["best_level"] == pytest.approx(0.6)
    assert found["confidence"] == pytest.approx(0.99)
    mean, low, high = found["abs_fpr_paired"]
    assert mean == pytest.approx(e.mean())
    assert (low, high) == pytest.approx((e.mean() - half, e.mean() + half))
    plain = stats.t.ppf(0.975, 3) * e.std(ddof=1) / np.sqrt(4)
    assert e.mean() + plain < 0 < high  # established at 95%, not with the allowance for picking the best
    assert found["improves"] and not found["established"]
    text = analysis.reading({("T", "moco", "collect"): found})[0]
    assert "of 5 levels tried besides the test-equal level 0.8" in text
    assert text.endswith("(Bonferroni for 5 levels): not established at 4 seeds.")


def test_readings_without_a_kept_or_better_level_and_with_one_seed() -> None:
    ref = ([0.85, 0.86, 0.84], [0.30, 0.31, 0.29])
    none_kept = line_findings(sweep_line({0.5: ([0.70, 0.71, 0.69], [0.0, 0.0, 0.0]), 0.8: ref}))
    text = analysis.reading({("T", "moco", "collect"): none_kept})[0]
    assert none_kept["best_level"] is None and not none_kept["established"]
    assert text.endswith(
        "of 1 level tried besides the test-equal level 0.8 (AUC 0.850 [0.825, 0.875]), none "
        "keeps AUC (paired lower bound above −0.01) at 3 seeds."
    )
    worse = line_findings(sweep_line({0.9: ([0.85, 0.86, 0.84], [0.40, 0.41, 0.39]), 0.8: ref}))
    assert worse["n_keep"] == 1 and not worse["improves"] and not worse["established"]
    assert (
        "none has a smaller |FPR difference| than the test-equal level's 0.300"
        in analysis.reading({("T", "moco", "collect"): worse})[0]
    )
    one = line_findings(sweep_line({0.5: ([0.85], [0.0]), 0.8: ([0.85], [0.3])}))
    assert one["n_keep"] == 0
    assert analysis.reading({("T", "moco", "collect"): one})[0].endswith(
        "none is shown to keep AUC: one seed only, so no paired interval."
    )
    assert line_findings(sweep_line({0.5: ref}))["reference_level"] is None


def test_the_tolerance_comes_from_the_runs_and_reaches_the_reading() -> None:
    runs = sweep_line(
        {0.6: ([0.83, 0.84, 0.82], [0.1, 0.1, 0.1]), 0.8: ([0.85, 0.86, 0.84], [0.3, 0.31, 0.29])}, tolerance=0.03
    )
    found = line_findings(runs)
    assert found["tolerance"] == 0.03 and found["n_keep"] == 1
    (line,) = CorrelationSweep().reading(Results(runs))
    assert "(paired lower bound above −0.03)" in line
    assert line_findings(runs.drop(columns="auc_tolerance"))["n_keep"] == 0  # default 0.01


def test_the_report_tabulates_every_level_against_the_reference(tmp_path: Path) -> None:
    runs = sweep_line(
        {
            0.5: ([0.70, 0.71, 0.69], [0.0, 0.0, 0.0]),
            0.6: ([0.85, 0.86, 0.84], [0.1, 0.1, 0.1]),
            0.8: ([0.85, 0.86, 0.84], [0.30, 0.31, 0.29]),
        }
    )
    html = build_report(runs, tmp_path, title="t").read_text(encoding="utf-8")
    assert "Each level against the test-equal level, paired by seed" in html
    table = levels_table(analysis.findings(runs, CorrelationSweep.settings()))
    assert table[["level", "keeps AUC", "best", "seeds"]].values.tolist() == [
        ["0.5", "no", "", 3],
        ["0.6", "yes", "yes", 3],
    ]
    assert table["AUC difference"].tolist()[0].startswith("-0.150 [")


# ---------------------------------------------------------------------------------------------- the option
def sweep_study(options: dict | None) -> dict:
    study = tiny_study_dict()
    if options is not None:
        study["experiments"][1]["options"] = options
    return study


def test_the_option_is_validated_when_the_study_is_loaded() -> None:
    with pytest.raises(ConfigError, match=r"auc_tolerence.*auc_tolerance|auc_tolerance.*auc_tolerence"):
        parse_study(sweep_study({"auc_tolerence": 0.02}))
    with pytest.raises(ConfigError, match="auc_tolerance"):
        parse_study(sweep_study({"auc_tolerance": -0.01}))
    block = parse_study(sweep_study({"auc_tolerance": 0.02})).blocks[1]
    assert block.fields.options.auc_tolerance == 0.02


def test_the_option_is_in_no_run_key() -> None:
    plain = parse_study(sweep_study(None)).expand()
    other = parse_study(sweep_study({"auc_tolerance": 0.05})).expand()
    assert [s.to_dict() for s in other] == [s.to_dict() for s in plain]
    assert [s.key for s in other] == [s.key for s in plain]


def test_changing_the_option_reruns_nothing_and_changes_the_reading(tmp_path: Path, cache_dir: Path) -> None:
    """A folder holding every run of the study (stored results made up here): rerun with another tolerance, it
    runs nothing, and the export and the reading take the new tolerance from the study stored in the folder."""
    study = parse_study(sweep_study(None))
    store = ResultStore(tmp_path)
    rng = np.random.default_rng(0)
    workspace = Workspace(Resources(torch.device("cpu"), cache_dir, tmp_path))
    for spec in current_specs(study, workspace):  # keyed on the data, as the driver keys them
        auc = 0.85 - (0.02 if spec.level == 0.5 else 0.0) + rng.normal(0, 0.002)
        store.add_run(
            spec.key,
            spec.to_dict(),
            {"auc": auc, "fpr_diff": 0.3 - 0.2 * (spec.level == 0.5)},
            {"data_hash": spec.data_fingerprint},
        )
    store.close()
    assert run_study(study, tmp_path, device=torch.device("cpu"), cache_dir=cache_dir, quiet=True).ran == 0
    lines = {}
    for tolerance in (None, 0.5):
        summary = run_study(
            parse_study(sweep_study(None if tolerance is None else {"auc_tolerance": tolerance})),
            tmp_path,
            device=torch.device("cpu"),
            cache_dir=cache_dir,
            quiet=True,
        )
        assert summary.ran == 0 and summary.skipped == summary.total
        store = ResultStore.open_existing(tmp_path)
        frame = runs_frame(store)
        store.close()
        sweep = frame[frame["experiment_kind"] == "correlation_sweep"]
        assert set(sweep["auc_tolerance"]) == {0.01 if tolerance is None else tolerance}
        names = [c.name for c in CorrelationSweep.all_columns()]
        lines[tolerance] = CorrelationSweep().reading(Results(sweep[names].reset_index(drop=True)))
    assert len(lines[None]) == 2 and all("none keeps AUC (paired lower bound above −0.01)" in s for s in lines[None])
    assert all("1 keeps AUC (paired lower bound above −0.5)" in s for s in lines[0.5])


# ------------------------------------------------------------------------------------------------ clipping
def _aggregate_beyond_range() -> pd.DataFrame:
    """Two seeds far apart: the Student-t intervals pass 1 for AUC and ±1 for the FPR difference."""
    runs = sweep_line({0.5: ([0.99, 0.60], [0.9, -0.5]), 0.8: ([0.98, 0.70], [0.95, -0.6])})
    agg = CorrelationSweep().aggregate(runs)
    assert (agg["auc_high"] > 1).all() and (agg["fpr_diff_high"] > 1).all() and (agg["fpr_diff_low"] < -1).all()
    return agg


def test_tradeoff_plot_draws_intervals_clipped_to_the_range() -> None:
    agg = _aggregate_beyond_range()
    fig = tradeoff_plot(agg)
    (ax,) = [a for a in fig.axes if a.get_visible()]
    segments = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    assert len(segments) == 4  # x and y bars of two points
    points = np.concatenate(segments)
    assert points[:, 0].max() <= 1.0 and points[:, 0].min() >= 0.0
    assert points[:, 1].max() <= 1.0 and points[:, 1].min() >= -1.0
    assert np.isclose(points[:, 0].max(), 1.0) and np.isclose(points[:, 1].max(), 1.0)  # clipped, not dropped
    assert (agg["auc_high"] > 1).all()  # the numbers themselves stay unclipped


def test_finetune_number_bands_are_clipped_to_the_range() -> None:
    agg = _aggregate_beyond_range().assign(
        base="gendered",
        base_role="biased",
        n_label=lambda d: d["level_label"],
        n_train=lambda d: (d["level"] * 100).astype(int),
    )
    fig = _curves(agg, pd.DataFrame(columns=["biased", "control", "task", "n_label", "n_train", "control_at", "agree"]))
    auc_ax, fpr_ax = fig.axes[0], fig.axes[1]
    for ax, (lo, hi) in ((auc_ax, (0.0, 1.0)), (fpr_ax, (-1.0, 1.0))):
        (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        y = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        assert y.max() <= hi + 1e-12 and y.min() >= lo - 1e-12
        assert np.isclose(y.max(), hi)

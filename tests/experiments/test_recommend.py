"""The recommender (docs/recommend.md): successive halving on constructed results (pure), the budget, runs reused
from the folder (trainings counted), the CSV of the recommended set, and end to end on the synthetic benchmark
and on a manifest folder with a checkpoint file."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from inline_snapshot import snapshot
from PIL import Image
from typer.testing import CliRunner

from biastransfer.cli import app
from biastransfer.cli.recommend import parse_interventions, write_set
from biastransfer.driver import run_study
from biastransfer.experiments import spurious
from biastransfer.experiments.recommend import Recommend, RecommendBlock, report, search
from biastransfer.models.architectures import build_model
from biastransfer.plan import parse_study
from biastransfer.store.sqlite import ResultStore
from report_snapshot import page_snapshot
from tiny_study import TINY_PARAMS, kind_study_dict

C = search.Candidate
REF = C("b", "collect", (), 0.8)


def ref_of(_: search.Candidate) -> search.Candidate:
    return REF


def values(table: dict[search.Candidate, list[tuple[float, float]]]) -> dict:
    return {(c, s): v for c, rows in table.items() for s, v in enumerate(rows)}


# ------------------------------------------------------------------------------------------ pure search


def test_schedule_and_the_budget_arithmetic() -> None:
    assert search.schedule(30, 8, 3) == [(30, 3), (15, 6), (8, 8)]
    assert search.schedule(3, 4, 2) == [(3, 2), (2, 4)]
    assert search.schedule(1, 2, 2) == [(1, 2)]
    # 30·3 + 15·3 + 8·2 new candidate runs, and the reference on all 8 seeds
    assert search.halving_runs(30, 1, 8, 3) == 90 + 45 + 16 + 8
    block = RecommendBlock(task="t", seeds=list(range(8)))
    assert len(block.candidates()) == 27 and block.full_sweep_runs() == 28 * 8  # collect @ natural is the reference


def test_survivors_keep_auc_first_then_undecided_by_gap_and_inferior_ones_are_dropped() -> None:
    """Paired AUC differences over 3 seeds (ref 0.80, 0.81, 0.82): keeps = d ≈ 0 with tiny spread; inferior = d ≈
    −0.2 with tiny spread; undecided = a wide spread around 0."""
    keeps_big, keeps_small = C("b", "collect", (), 0.5), C("b", "reweight", (), 0.5)
    inferior, undecided = C("b", "collect", (), 0.2), C("b", "subselect", (), 0.5)
    near = C("b", "subselect", (), 0.6)  # below the reference, but not shown to be more than ε below
    table = {
        REF: [(0.80, 0.30), (0.81, 0.30), (0.82, 0.30)],
        keeps_big: [(0.801, 0.20), (0.811, 0.20), (0.821, 0.20)],
        keeps_small: [(0.800, 0.10), (0.812, 0.10), (0.819, 0.10)],
        inferior: [(0.60, 0.00), (0.61, 0.00), (0.62, 0.00)],  # the smallest gap, but AUC lost
        undecided: [(0.70, 0.05), (0.90, 0.05), (0.75, 0.05)],
        near: [(0.788, 0.04), (0.802, 0.04), (0.810, 0.04)],  # d = −0.012, −0.008, −0.010: [−0.015, −0.005]
    }
    vals = values(table)
    scores = {c: search.score(vals, c, REF, [0, 1, 2], 0.01) for c in table if c != REF}
    assert scores[keeps_big].keeps and scores[keeps_small].keeps
    assert scores[inferior].inferior and not scores[inferior].keeps
    assert not scores[undecided].keeps and not scores[undecided].inferior
    assert not scores[near].keeps and not scores[near].inferior
    order = search.select_survivors(list(scores.values()), 5)
    assert order == [keeps_small, keeps_big, near, undecided]  # inferior dropped though its gap is the smallest
    assert search.select_survivors(list(scores.values()), 2) == [keeps_small, keeps_big]
    choice = search.choose(list(scores), ref_of, [0, 1, 2], vals, 0.01)
    assert choice.status == "chosen" and choice.best.candidate == keeps_small
    assert choice.ref_gap == pytest.approx(0.30) and choice.gap_paired[0] == pytest.approx(-0.20)


def test_next_round_replays_the_halving_from_the_stored_results() -> None:
    """Round 0: every candidate and the reference on 2 seeds (reference first at each seed); once they are
    there, the better half on 4 seeds; then nothing."""
    cands = [C("b", "reweight", (), lv) for lv in (0.2, 0.4, 0.6, 0.9)]
    gaps = {0.2: 0.05, 0.4: 0.10, 0.6: 0.15, 0.9: 0.20}
    seeds = [0, 1, 2, 3]
    vals: dict = {}
    first = search.next_round(cands, ref_of, seeds, 2, vals, 0.01)
    assert first.wanted == [(REF, 0), *[(c, 0) for c in cands], (REF, 1), *[(c, 1) for c in cands]]

    def fill(wanted: list) -> None:
        for c, s in wanted:
            vals[c, s] = (0.8 + 0.001 * s, 0.3 if c == REF else gaps[c.level])

    fill(first.wanted)
    second = search.next_round(cands, ref_of, seeds, 2, vals, 0.01)
    assert second.wanted == [(REF, 2), (cands[0], 2), (cands[1], 2), (REF, 3), (cands[0], 3), (cands[1], 3)]
    assert second.reached == {cands[0]: 1, cands[1]: 1, cands[2]: 0, cands[3]: 0}
    fill(second.wanted)
    assert search.next_round(cands, ref_of, seeds, 2, vals, 0.01).wanted == []


def test_each_base_is_compared_with_its_own_reference() -> None:
    """Two bases: each candidate is paired with collect at the test level on its own base; both references run
    first at every seed, and the answer's reference is the chosen candidate's base's."""
    refs = {b: C(b, "collect", (), 0.8) for b in ("x", "y")}
    cands = [C(b, "reweight", (), 0.5) for b in ("x", "y")]
    first = search.next_round(cands, lambda c: refs[c.base], [0, 1], 2, {}, 0.01)
    assert first.wanted[:2] == [(refs["x"], 0), (refs["y"], 0)]
    table = {
        refs["x"]: [(0.80, 0.30), (0.81, 0.30)],
        refs["y"]: [(0.60, 0.02), (0.70, 0.02)],
        cands[0]: [(0.801, 0.10), (0.8115, 0.10)],
        cands[1]: [(0.601, 0.01), (0.7015, 0.01)],
    }
    choice = search.choose(cands, lambda c: refs[c.base], [0, 1], values(table), 0.05)
    assert choice.status == "chosen" and choice.best.candidate == cands[1] and choice.reference == refs["y"]
    assert choice.ref_gap == pytest.approx(0.02)


def test_screen_runs_arithmetic_and_stages() -> None:
    # screen: 11 candidates + 1 reference on 1 seed; then one candidate and its reference on the other 7
    assert search.screen_runs(11, 1, 8, 1) == 12 + 14
    assert search.screen_runs(26, 2, 8, 2) == 56 + 12
    assert search._stages(1, 8) == [2, 4, 8] and search._stages(2, 6) == [4, 6] and search._stages(1, 2) == [2]


def test_the_screen_orders_settings_that_may_keep_auc_first_by_gap() -> None:
    """One seed each (reference AUC 0.80): a setting whose AUC difference is −0.05 (< −ε) goes last although its gap
    is the smallest; the others by |gap|."""
    low_auc, small, big = C("b", "collect", (), 0.5), C("b", "collect", (), 0.6), C("b", "reweight", (), 0.6)
    edge = C("b", "subselect", (), 0.6)  # exactly −ε: may keep AUC
    vals = {
        (REF, 0): (0.80, 0.4),
        (low_auc, 0): (0.75, 0.01),
        (small, 0): (0.805, -0.10),
        (big, 0): (0.79, 0.20),
        (edge, 0): (0.79, 0.15),
    }
    scores = [search.score(vals, c, REF, [0], 0.01) for c in (low_auc, small, big, edge)]
    assert all(not s.keeps and not s.inferior for s in scores)  # one seed decides nothing
    assert search.screen_order(scores, 0.01) == [small, edge, big, low_auc]


def test_screen_and_confirm_replays_from_the_stored_results() -> None:
    """Seeds 0-7. The screen wants the reference and every candidate on seed 0. The screen's best (the smallest
    gap) is confirmed on 2 seeds; its mean AUC difference there is below −ε, so it is dropped and the next one is
    confirmed on 2, 4, then 8 seeds, where it keeps AUC: the search ends and the last one is never confirmed."""
    a, b, c = (C("b", "reweight", (), lv) for lv in (0.5, 0.6, 0.7))
    seeds = list(range(8))
    truth = {
        REF: lambda s: (0.80 + 0.01 * (s % 3), 0.40),
        a: lambda s: (0.80 + 0.01 * (s % 3) - (0.0 if s == 0 else 0.05), 0.05),  # screen passes, then fails
        b: lambda s: (0.80 + 0.01 * (s % 3) + (0.012 if s % 2 == 0 else -0.008), 0.10),  # keeps on 8 only
        c: lambda s: (0.80 + 0.01 * (s % 3), 0.20),
    }
    vals: dict = {}
    step = search.next_screen([a, b, c], ref_of, seeds, 1, vals, 0.01)
    assert step.wanted == [(REF, 0), (a, 0), (b, 0), (c, 0)]
    spent = []
    for _ in range(10):
        for cs in step.wanted:
            vals[cs] = truth[cs[0]](cs[1])
        spent.append(len(step.wanted))
        step = search.next_screen([a, b, c], ref_of, seeds, 1, vals, 0.01)
        if not step.wanted:
            break
    assert spent == [4, 2, 1, 4, 8]  # screen; a + ref on seed 1; b on seed 1; b + ref on 2-3, then on 4-7
    assert {cs for cs in vals if cs[0] == c} == {(c, 0)}
    assert search.confirmation(vals, a, REF, seeds, 1, 0.01) == ("dropped", 2)
    assert search.confirmation(vals, b, REF, seeds, 1, 0.01) == ("accepted", 8)
    assert search.confirmation(vals, c, REF, seeds, 1, 0.01) == ("wants", 2)
    assert [(r[0], n) for r, n in step.rounds][1:] == [(a, 2), (b, 8)]
    choice = search.choose([a, b, c], ref_of, seeds, vals, 0.01)
    assert choice.status == "chosen" and choice.best.candidate == b and choice.best.n == 8


def test_screen_full_decides_each_candidate_on_all_seeds_as_a_full_sweep_does() -> None:
    """Seeds 0-7, paired AUC differences d per seed. a (|gap| 0.05): d = 0, −0.03 on the first two seeds (mean
    −0.015 < −ε), then +0.01, +0.01, +0.008 × 4: it keeps AUC on all 8. b (|gap| 0.10): d = +0.002, +0.0025
    (keeps on 2 seeds), then −0.03 on the rest: it does not keep AUC on 8. A full sweep answers a. ``screen``
    drops a at 2 seeds and accepts b at 2; ``screen_full`` confirms a to 8 seeds and accepts it there, and never
    runs b beyond the screen. c, inferior from its first two seeds, is dropped at 2 seeds by both."""
    a, b, c = (C("b", "reweight", (), lv) for lv in (0.5, 0.6, 0.7))
    seeds = list(range(8))
    ref = [0.80 + 0.01 * (s % 3) for s in seeds]
    d = {
        a: [0.0, -0.03, 0.01, 0.01, 0.008, 0.008, 0.008, 0.008],
        b: [0.002, 0.0025] + [-0.03] * 6,
        c: [-0.1, -0.101] + [-0.1] * 6,
    }
    gaps = {REF: 0.4, a: 0.05, b: 0.10, c: 0.2}
    pool = {(x, s): ((ref[s] + (d[x][s] if x in d else 0.0)), gaps[x]) for x in (REF, a, b, c) for s in seeds}
    full = search.choose([a, b], ref_of, seeds, {k: v for k, v in pool.items() if k[0] != c}, 0.01)
    assert full.best.candidate == a  # the full sweep's answer

    def run(strategy: str) -> tuple[dict, list[int]]:
        vals: dict = {}
        spent = []
        while want := search.progress(strategy, [a, b], ref_of, seeds, 1, 3, vals, 0.01).wanted:
            vals.update({w: pool[w] for w in want})
            spent.append(len(want))
        return vals, spent

    early, spent = run("screen")
    assert spent == [3, 2, 1]  # the screen; a and its reference on seed 1 (a dropped); b on seed 1 (accepted)
    assert search.accepted("screen", [a, b], ref_of, seeds, 1, early, 0.01) == {b}
    assert search.confirmation(early, a, REF, seeds, 1, 0.01) == ("dropped", 2)
    late, spent = run("screen_full")
    assert spent == [3, 2, 4, 8]  # the screen; a and its reference on seeds 1, 2-3, 4-7
    assert {s for (x, s) in late if x == b} == {0}
    eligible = search.accepted("screen_full", [a, b], ref_of, seeds, 1, late, 0.01)
    assert eligible == {a}
    assert search.choose([a, b], ref_of, seeds, late, 0.01, eligible).best.candidate == a
    assert search.confirmation(late, a, REF, seeds, 1, 0.01, full=True) == ("accepted", 8)
    assert search.confirmation(pool, b, REF, seeds, 1, 0.01, full=True) == ("dropped", 8)
    assert search.confirmation(pool, b, REF, seeds, 1, 0.01) == ("accepted", 2)
    for full_ in (False, True):  # an inferior candidate is dropped at the first stage, whichever the strategy
        assert search.confirmation(pool, c, REF, seeds, 1, 0.01, full=full_) == ("dropped", 2)
    assert RecommendBlock(task="t", options={"strategy": "screen_full"}).options.strategy == "screen_full"


def _rows(table: dict[search.Candidate, list[tuple[float, float]]]) -> pd.DataFrame:
    rows = []
    for c, runs in table.items():
        for s, (auc, fpr) in enumerate(runs):
            rows.append(
                {
                    "experiment": "rec",
                    "task": "t3",
                    "base": c.base,
                    "intervention": c.intervention,
                    "intervention_options": "",
                    "level_label": f"{c.level:g}",
                    "test_label": "0.8",
                    "seed": s,
                    "auc": auc,
                    "fpr_diff": fpr,
                    "run_key": f"{c.setting}|{s}",
                    "gap": "fpr_diff",
                    "auc_tolerance": 0.01,
                    "full_sweep_runs": 12,
                    "budget": 6.0,
                    "reused": s == 0,
                    "n_requested": 32,
                }
            )
    return pd.DataFrame(rows)


def test_the_answer_names_the_chosen_setting_and_its_paired_intervals() -> None:
    """reweight @ 0.5 keeps AUC (d = +0.001, +0.002, −0.001) and has |FPR difference| 0.1 against 0.3: chosen;
    the paired |gap| difference is −0.2 at every seed (a zero-width interval)."""
    good = C("b", "reweight", (), 0.5)
    table = {REF: [(0.80, 0.30), (0.81, 0.30), (0.82, 0.30)], good: [(0.801, 0.10), (0.812, 0.10), (0.819, 0.10)]}
    answer = report.answers(_rows(table))["rec"]
    assert answer.choice.status == "chosen" and answer.recommended == good
    assert answer.run_keys == {0: "reweight @ 0.5|0", 1: "reweight @ 0.5|1", 2: "reweight @ 0.5|2"}
    assert "finetune on reweight @ 0.5, base b" in answer.text and "over 3 seeds" in answer.text
    assert "from 0.300 to 0.100" in answer.text and "-0.200 [-0.200, -0.200]" in answer.text
    assert "established" in answer.text and "not established" not in answer.text
    unknown = _rows(table).assign(full_sweep_runs=math.nan, budget=math.nan)  # the block not in the stored study
    assert "of the ? a full sweep needs." in report.answers(unknown)["rec"].text
    worse = {REF: table[REF], good: [(0.801, 0.40), (0.812, 0.40), (0.819, 0.40)]}
    answer = report.answers(_rows(worse))["rec"]
    assert answer.choice.status == "reference" and answer.recommended == REF
    assert "no setting tried beats collecting at the test-equal level" in answer.text


def test_the_answer_names_undecided_settings_with_a_smaller_gap_whose_mean_lies_within_eps() -> None:
    """reweight @ 0.5 keeps AUC with |FPR| 0.1 and is chosen. collect @ 0.6 (|FPR| 0.05) has d = −0.004, +0.006,
    −0.017: mean −0.005 ≥ −ε but a wide interval, so undecided and named. collect @ 0.5 (|FPR| 0.02) has d =
    −0.03, −0.005, −0.04: mean −0.025 < −ε, not named. subselect @ 0.5 (|FPR| 0.3) has a larger gap: not named."""
    good, near, far, wider = (
        C("b", "reweight", (), 0.5),
        C("b", "collect", (), 0.6),
        C("b", "collect", (), 0.5),
        C("b", "subselect", (), 0.5),
    )
    table = {
        REF: [(0.80, 0.40), (0.81, 0.40), (0.82, 0.40)],
        good: [(0.801, 0.10), (0.812, 0.10), (0.819, 0.10)],
        near: [(0.796, 0.05), (0.816, 0.05), (0.803, 0.05)],
        far: [(0.77, 0.02), (0.805, 0.02), (0.78, 0.02)],
        wider: [(0.70, 0.30), (0.90, 0.30), (0.80, 0.30)],
    }
    answer = report.answers(_rows(table))["rec"]
    assert answer.recommended == good
    assert [s.candidate for s in report.undecided(answer, 0.1)] == [near]
    assert "Undecided with a smaller |FPR difference|: collect @ 0.6, base b (|FPR difference| 0.050" in answer.text
    assert "collect @ 0.5" not in answer.text and "subselect" not in answer.text
    assert "Its mean AUC difference lies within ε" in answer.text
    decided = {**table, near: [(0.801, 0.05), (0.812, 0.05), (0.819, 0.05)]}  # keeps AUC: it is the answer
    answer = report.answers(_rows(decided))["rec"]
    assert answer.recommended == near and "Undecided" not in answer.text


def test_a_tolerance_no_setting_meets_says_so_and_names_the_closest() -> None:
    wide = C("b", "reweight", (), 0.5)
    table = {REF: [(0.80, 0.30), (0.81, 0.30), (0.82, 0.30)], wide: [(0.70, 0.05), (0.90, 0.05), (0.75, 0.05)]}
    answer = report.answers(_rows(table))["rec"]
    assert answer.choice.status == "none" and answer.recommended == REF
    assert "no setting tried keeps AUC within ε = 0.01" in answer.text
    assert "The closest settings: reweight @ 0.5, base b" in answer.text
    assert "6 runs (2 reused from runs already in the folder) of the 12" in answer.text
    assert answer.run_keys == {0: "collect @ 0.8|0", 1: "collect @ 0.8|1", 2: "collect @ 0.8|2"}


def test_a_screen_stopped_mid_stage_is_provisional_and_accepts_only_at_the_end_of_a_stage() -> None:
    """Screen-and-confirm over seeds 0-7: reweight @ 0.5 was screened (seed 0) and confirmed on seeds 1-2 of the
    4-seed stage when the budget ran out. On 2 seeds (d = +0.001, +0.004) the rule does not pass (lower bound
    0.0025 − 12.71·0.0021/√2 = −0.017); on 3 (d = +0.001, +0.004, +0.0025) it would (−0.0012), but a stage of 4 was
    never finished, so the search has not accepted it: the answer is the test-equal set, marked provisional. With
    the 4th seed (d = +0.0025) the stage is finished and it is accepted."""
    good = C("b", "reweight", (), 0.5)
    table = {REF: [(0.80, 0.30), (0.81, 0.30), (0.82, 0.30)], good: [(0.801, 0.10), (0.814, 0.10), (0.8225, 0.10)]}
    assert search.score(values(table), good, REF, [0, 1, 2], 0.01).keeps
    assert not search.score(values(table), good, REF, [0, 1], 0.01).keeps
    block = {
        "strategy": "screen",
        "screen_seeds": 1,
        "min_seeds": 3,
        "block_seeds": "[0, 1, 2, 3, 4, 5, 6, 7]",
        "full_sweep_runs": 16,
    }
    answer = report.answers(_rows(table).assign(**block))["rec"]
    assert not answer.finished and answer.recommended == REF and answer.choice.status == "none"
    assert "provisional" in answer.headline and "The search is not finished" in answer.text
    assert "by screen-and-confirm" in answer.text
    assert report.tried_table(answer)["keeps AUC"].tolist() == ["yes, not confirmed"]
    table = {REF: [*table[REF], (0.83, 0.30)], good: [*table[good], (0.8325, 0.10)]}
    answer = report.answers(_rows(table).assign(**block))["rec"]
    assert answer.finished and answer.recommended == good and "provisional" not in answer.headline
    assert "not finished" not in answer.text


# ------------------------------------------------------------------------------- study runs (tiny)

FAST = {"lr": [0.05], "weight_decay": [0.0005], "max_epochs": 1, "patience": 1}


def tiny_study(block: dict, name: str = "rec", *extra: dict) -> dict:
    study = kind_study_dict("recommend")
    study["name"] = name
    study["train"] = dict(FAST)
    study["evaluation"] = {"threshold": "val", "test_size": 100}
    study["bases"] = {"scratch": {"kind": "scratch"}}
    study["experiments"] = [
        {"name": "rec", "kind": "recommend", "task": "t3", "bases": ["scratch"], "n_train": 16, "test": 0.8, **block},
        *extra,
    ]
    return study


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every finetuning a run trains (inprocess), by the run it is for."""
    calls: list[str] = []
    real = spurious.finetune

    def counted(spec, *args, **kwargs):
        calls.append(spec.describe())
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(spurious, "finetune", counted)
    return calls


def _run(study: dict, out: Path, cache: Path):
    return run_study(parse_study(copy.deepcopy(study)), out, device=torch.device("cpu"), cache_dir=cache, quiet=True)


def test_the_budget_is_never_exceeded_and_a_rerun_goes_on(
    tmp_path: Path, cache_dir: Path, trainings: list[str]
) -> None:
    """Successive halving: 3 candidates × 2 seeds + the reference need 8 runs in round 0; a budget of 5 runs 5, the
    next study run 3 more (round 0 done) and 2 of round 1, never more than the budget."""
    study = tiny_study(
        {
            "interventions": ["collect", "reweight"],
            "levels": [0.5, 0.8],
            "seeds": [0, 1, 2],
            "options": {"strategy": "halving", "min_seeds": 2, "budget": 5},
        }
    )
    first = _run(study, tmp_path / "out", cache_dir)
    assert first.ran == 5 and len(trainings) == 5
    second = _run(study, tmp_path / "out", cache_dir)
    assert second.ran == 5 and len(trainings) == 10
    store = ResultStore.open_existing(tmp_path / "out")
    levels = sorted((r["spec"]["intervention"], r["spec"]["level"], r["spec"]["seed"]) for r in store.runs())
    store.close()
    assert len(levels) == 10 and all(s <= 2 for _, _, s in levels)
    third_seed = [x for x in levels if x[2] == 2]  # round 1 begun: the reference first, then one survivor
    assert len(third_seed) == 2 and ("collect", 0.8, 2) in third_seed


def tiny_sweep() -> dict:
    """A correlation sweep on the recommendation's settings: collect and reweight at 0.5 and 0.8, seeds 0, 1."""
    sweep = tiny_study({})
    sweep["experiments"] = [
        {
            "name": "sweep",
            "kind": "correlation_sweep",
            "tasks": ["t3"],
            "bases": ["scratch"],
            "interventions": ["collect", "reweight"],
            "levels": [0.5, 0.8],
            "n_train": 16,
            "seeds": [0, 1],
            "test": 0.8,
        }
    ]
    return sweep


def test_runs_already_in_the_folder_are_reused_not_trained(
    tmp_path: Path, cache_dir: Path, trainings: list[str]
) -> None:
    """A sweep stored the reference (collect @ 0.8) and reweight @ 0.5 on seeds 0, 1: a recommendation searching
    reweight @ 0.5 on those seeds adopts all 4 runs and trains nothing."""
    sweep = tiny_sweep()
    assert _run(sweep, tmp_path / "out", cache_dir).ran == 8 and len(trainings) == 8
    rec = tiny_study({"interventions": ["reweight"], "levels": [0.5], "seeds": [0, 1], "options": {"min_seeds": 2}})
    summary = _run(rec, tmp_path / "out", cache_dir)
    assert (summary.ran, summary.reused, len(trainings)) == (0, 4, 8)
    store = ResultStore.open_existing(tmp_path / "out")
    runs = {r["key"]: r for r in store.runs()}
    store.close()
    adopted = [r for r in runs.values() if r["spec"]["kind"] == "recommend"]
    assert len(adopted) == 4
    for r in adopted:
        source = runs[r["result"]["reused_from"]]
        assert source["spec"]["kind"] == "correlation_sweep" and source["result"]["auc"] == r["result"]["auc"]
    assert _run(rec, tmp_path / "out", cache_dir).ran == 0 and len(trainings) == 8  # nothing left to do


def test_a_sweep_after_a_recommendation_reuses_its_runs(tmp_path: Path, cache_dir: Path, trainings: list[str]) -> None:
    """The other way round: the recommendation's 4 runs (reference and reweight @ 0.5, seeds 0, 1) are adopted by
    a sweep on the same settings, which trains only its 4 others (collect @ 0.5, reweight @ 0.8)."""
    rec = tiny_study({"interventions": ["reweight"], "levels": [0.5], "seeds": [0, 1], "options": {"min_seeds": 2}})
    assert _run(rec, tmp_path / "out", cache_dir).ran == 4 and len(trainings) == 4
    sweep = tiny_sweep()
    summary = _run(sweep, tmp_path / "out", cache_dir)
    assert (summary.ran, summary.reused, len(trainings)) == (4, 4, 8)


def test_the_check_script_judges_a_recommendation_against_a_sweep_on_its_own_seeds(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/recommend_check.py, the acceptance rule of issue 14: a recommendation (reweight @ 0.5, seeds 0,
    1), its folder copied and completed by a sweep there (which adopts its 4 runs), judged on its own seeds; the
    printed verdict is replay.check's on the sweep's runs. A sweep of another test level or without the
    recommendation's seeds is refused with the reason."""
    import shutil
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import recommend_check
    from recommend_replay import folder_runs

    from biastransfer.experiments.recommend import replay

    rec = tiny_study({"interventions": ["reweight"], "levels": [0.5], "seeds": [0, 1], "options": {"min_seeds": 2}})
    _run(rec, tmp_path / "rec", cache_dir)
    shutil.copytree(tmp_path / "rec", tmp_path / "sweep")
    assert _run(tiny_sweep(), tmp_path / "sweep", cache_dir).ran == 4
    assert recommend_check.main([str(tmp_path / "rec"), "--sweep", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    answer = report.answers(folder_runs(tmp_path / "rec"))["rec"]
    pool, cands, reference, seeds = replay.pool_of(folder_runs(tmp_path / "sweep"), "fpr_diff")
    assert seeds == [0, 1]
    want = replay.check(answer.recommended, pool, cands, reference, seeds, 0.01)
    assert f"{int(want.hit)} of 1 hit the full sweep's answer" in out
    assert f"the recommendation's {want.answer_gap:.3f}: {'HIT' if want.hit else 'miss'}" in out
    assert f"Sweep: {want.target.setting}" in out and "seeds 0–1 (2)" in out

    other = tiny_sweep()
    other["experiments"][0]["test"] = 0.5
    _run(other, tmp_path / "other", cache_dir)
    assert recommend_check.main([str(tmp_path / "rec"), "--sweep", str(tmp_path / "other")]) == 2
    assert "the sweep's test_label is 0.5; the recommendation's is 0.8" in capsys.readouterr().err
    one_seed = tiny_sweep()
    one_seed["experiments"][0]["seeds"] = [0]
    _run(one_seed, tmp_path / "one", cache_dir)
    assert recommend_check.main([str(tmp_path / "rec"), "--sweep", str(tmp_path / "one")]) == 2
    assert "lacks runs on seeds [1]" in capsys.readouterr().err
    # a search that stopped before seed 2 (budget 4: the reference and reweight @ 0.5 on seeds 0, 1) is judged
    # on all three seeds it declares, which the two-seed sweep lacks
    short = tiny_study(
        {"interventions": ["reweight"], "levels": [0.5], "seeds": [0, 1, 2], "options": {"min_seeds": 2, "budget": 4}}
    )
    assert _run(short, tmp_path / "short", cache_dir).ran == 4
    assert recommend_check.main([str(tmp_path / "short"), "--sweep", str(tmp_path / "sweep")]) == 2
    assert "lacks runs on seeds [2]" in capsys.readouterr().err
    assert recommend_check.main([str(tmp_path / "short"), "--sweep", str(tmp_path / "sweep"), "--seeds", "all"]) == 0
    assert recommend_check.main([str(tmp_path / "rec"), "--sweep", str(tmp_path / "sweep"), "--experiment", "x"]) == 2
    assert "hold no finished runs of a block 'x'" in capsys.readouterr().err


def _cli(args: list[str]) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["recommend", *args, "--workers", "1", "--quiet"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # the terminal's line breaks as spaces


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _chosen_artifacts(out: Path) -> tuple[dict, dict]:
    from biastransfer.driver import split_runs
    from biastransfer.experiments.base import Results
    from biastransfer.store.export import runs_frame

    store = ResultStore.open_existing(out)
    try:
        current, _ = split_runs(store)
        answer = next(iter(Recommend().answers(Results(runs_frame(store, current))).values()))
        key = answer.run_keys[min(answer.run_keys)]
        return store.artifacts(key), next(r["spec"] for r in current if r["key"] == key)
    finally:
        store.close()


def test_end_to_end_on_the_synthetic_benchmark_writes_the_chosen_set(tmp_path: Path, cache_dir: Path) -> None:
    params = [f"--param={k}={v}" for k, v in TINY_PARAMS.items()]
    text = _cli(
        [
            "--out",
            str(tmp_path / "out"),
            "--task",
            "t3",
            "--n",
            "16",
            *params,
            "--resolution",
            "16",
            "--test",
            "0.8",
            "--test-size",
            "100",
            "--interventions",
            "reweight",
            "--levels",
            "0.5",
            "--seeds",
            "2",
            "--min-seeds",
            "2",
            "--epochs",
            "1",
            "--lr",
            "0.05",
            "--tolerance",
            "0.5",
            "--cache-dir",
            str(cache_dir),
        ]
    )
    assert "ε = 0.5" in text and "Recommended set (" in text, text
    rows = _csv(tmp_path / "out" / "recommended_set.csv")
    artifacts, spec = _chosen_artifacts(tmp_path / "out")
    assert [int(r["row"]) for r in rows] == artifacts["train_rows"].tolist()
    assert [r["id"] for r in rows] == [str(i) for i in artifacts["train_rows"]]  # synthetic: the row is the id
    weights = artifacts.get("train_weights", np.ones(len(rows)))
    assert np.allclose([float(r["weight"]) for r in rows], weights, rtol=1e-5)
    assert (spec["intervention"] == "reweight") == ("train_weights" in artifacts)
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="recommendation"' in html and "Runs spent" in html


def test_a_study_file_with_a_recommend_block_runs_through_the_command(tmp_path: Path, cache_dir: Path) -> None:
    study = tiny_study(
        {"interventions": ["reweight"], "levels": [0.5], "seeds": [0, 1], "options": {"min_seeds": 2, "budget": 3}}
    )
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    text = _cli(
        ["--out", str(tmp_path / "out"), "--study", str(tmp_path / "study.yaml"), "--cache-dir", str(cache_dir)]
    )
    assert "3 runs (0 reused from runs already in the folder) of the 4" in text and "budget 3" in text
    assert (tmp_path / "out" / "recommended_set.csv").exists()


def test_interventions_with_options_on_the_command_line() -> None:
    assert parse_interventions("collect, reweight[start_level=0.8],subselect[start_level=0.5]") == [
        "collect",
        {"name": "reweight", "start_level": 0.8},
        {"name": "subselect", "start_level": 0.5},
    ]


def test_the_csv_holds_ids_rows_labels_and_weights(tmp_path: Path) -> None:
    class Table:
        frame = pd.DataFrame({"id": ["a.png", "b.png", "c.png"]})
        y, a = np.array([1, 0, 1]), np.array([0, 1, 1])

    assert write_set(tmp_path / "w.csv", Table, np.array([0, 2]), np.array([1.5, 0.5])) == 2
    assert _csv(tmp_path / "w.csv") == [
        {"id": "a.png", "row": "0", "y": "1", "a": "0", "weight": "1.5"},
        {"id": "c.png", "row": "2", "y": "1", "a": "1", "weight": "0.5"},
    ]
    Table.frame = pd.DataFrame({"x": [0, 0, 0]})  # no id column: the row is the id; no weights: 1
    write_set(tmp_path / "u.csv", Table, np.array([1]), None)
    assert _csv(tmp_path / "u.csv") == [{"id": "1", "row": "1", "y": "0", "a": "1", "weight": "1"}]


def write_manifest(root: Path, n: int = 160) -> None:
    """``n`` 16×16 images, a (sensitive) and y balanced in every split (train / val / test = 1/2, 1/4, 1/4)."""
    rows = ["path,split,a,y"]
    rng = np.random.default_rng(0)
    for i in range(n):
        split = "train" if i % 4 < 2 else ("val" if i % 4 == 2 else "test")
        a, y = (i // 4) % 2, (i // 8) % 2
        img = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        img[..., 0] = np.clip(img[..., 0].astype(int) // 2 + 100 * y, 0, 255)
        (root / "imgs").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "imgs" / f"{i}.png")
        rows.append(f"imgs/{i}.png,{split},{a},{y}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")


def test_end_to_end_on_a_manifest_folder_with_a_checkpoint_file(tmp_path: Path, cache_dir: Path) -> None:
    write_manifest(tmp_path / "data")
    model = build_model("small_resnet")
    torch.save(
        {
            **model.backbone.state_dict(),
            "fc.weight": torch.randn(1000, model.feature_dim),
            "fc.bias": torch.randn(1000),
        },
        tmp_path / "backbone.pth",
    )
    common = [
        "--dataset",
        "manifest",
        "--root",
        str(tmp_path / "data"),
        "--task",
        "y",
        "--resolution",
        "16",
        "--base",
        f"checkpoint:torchvision:{tmp_path / 'backbone.pth'}",
        "--interventions",
        "collect,reweight",
        "--levels",
        "0.25",
        "--seeds",
        "2",
        "--min-seeds",
        "2",
        "--epochs",
        "1",
        "--lr",
        "0.05",
        "--cache-dir",
        str(cache_dir),
    ]
    text = _cli(["--out", str(tmp_path / "out"), "--sensitive", "a", "--n", "16", *common])
    assert "(recommendation, N=16, test natural)" in text and "base backbone" in text
    rows = _csv(tmp_path / "out" / "recommended_set.csv")
    assert len(rows) == 16 and all(r["id"].startswith("imgs/") for r in rows)
    artifacts, _ = _chosen_artifacts(tmp_path / "out")
    assert [int(r["row"]) for r in rows] == artifacts["train_rows"].tolist()

    # bad input: a dataset without the attribute names its columns; an infeasible N gives the cell counts
    runner = CliRunner()
    missing = runner.invoke(
        app, ["recommend", "--out", str(tmp_path / "x"), "--sensitive", "female", "--n", "16", *common]
    )
    assert missing.exit_code != 0 and "columns: path, split, a, y" in " ".join(missing.output.split())
    big = runner.invoke(app, ["recommend", "--out", str(tmp_path / "y"), "--sensitive", "a", "--n", "400", *common])
    message = " ".join(big.output.split())
    assert big.exit_code != 0 and "cell (a=1, y=1)" in message and "available:" in message, message


def test_the_example_block_report(kind_report) -> None:
    assert page_snapshot(kind_report("recommend").html) == snapshot(
        {
            "summary": {"numbers": ["7", "7", "3", "3", "1", "3", "1", "0", "95"]},
            "reading": {
                "headings": ["Reading"],
                "tables": [],
                "figures": [],
                "numbers": [
                    [
                        "3",
                        "32",
                        "0.8",
                        "0.8",
                        "0.096",
                        "0.01",
                        "0.8",
                        "0.096",
                        "2",
                        "7",
                        "0",
                        "9",
                        "8",
                    ]
                ],
            },
            "recommendation": {
                "headings": [
                    "Recommended finetuning set",
                    "Each setting tried against the test-equal set, paired by seed",
                    "Runs spent",
                ],
                "tables": [
                    [
                        ["setting", "seeds", "AUC", "AUC difference", "keeps AUC", "|FPR difference|", "chosen"],
                        ["reweight @ 0.8, base gendered", "3", "0.475", "-0.002 [-0.009, 0.005]", "yes", "0.096", ""],
                        ["reweight @ 0.5, base gendered", "1", "0.468", "-0.033", "untested (1 seed)", "0.200", ""],
                    ],
                    [
                        ["runs in the recommendation", "new runs", "reused", "full sweep", "budget", "saved"],
                        ["7", "7", "0", "9", "8", "22%"],
                    ],
                ],
                "figures": ["plots/recommend.png"],
                "numbers": [
                    [
                        "3",
                        "32",
                        "0.8",
                        "0.8",
                        "0.096",
                        "0.01",
                        "0.8",
                        "0.096",
                        "2",
                        "7",
                        "0",
                        "9",
                        "8",
                    ],
                    ["95", "−0.01"],
                ],
            },
            "results": {
                "headings": ["Results per setting", "recommend"],
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
                            "0.8",
                            "3",
                            "0.477 [0.328, 0.625]",
                            "-0.096 [-0.517, 0.326]",
                            "-0.029 [-0.397, 0.339]",
                            "0.196 [0.178, 0.214]",
                            "-0.096 [-0.517, 0.326]",
                            "0.162 [0.027, 0.298]",
                        ],
                        [
                            "t3",
                            "gendered",
                            "reweight",
                            "0.5",
                            "1",
                            "0.468",
                            "-0.200",
                            "0.012",
                            "0.200",
                            "—",
                            "0.200",
                        ],
                        [
                            "t3",
                            "gendered",
                            "reweight",
                            "0.8",
                            "3",
                            "0.475 [0.320, 0.629]",
                            "-0.096 [-0.520, 0.328]",
                            "-0.025 [-0.401, 0.351]",
                            "0.196 [0.148, 0.243]",
                            "-0.096 [-0.520, 0.328]",
                            "0.163 [0.020, 0.305]",
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


def test_yaml_block_round_trip() -> None:
    block = yaml.safe_load(yaml.safe_dump(Recommend.example))
    fields = RecommendBlock.model_validate(block)
    assert [c.setting for c in fields.candidates()] == ["reweight @ 0.5", "reweight @ 0.8"]
    assert math.isclose(fields.options.auc_tolerance, 0.01)

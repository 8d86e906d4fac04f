"""The bootstrap replay of the recommender's search (experiments/recommend/replay.py) on constructed pools: the
target and its interval, the budget, hits and misses, and a pool read from tidy rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from biastransfer.experiments.recommend import replay, search

C = search.Candidate
REF = C("b", "collect", (), 0.8)
KEEPS = C("b", "collect", (), 0.6)     # AUC as the reference's, gap 0.2
LOSES = C("b", "subselect", (), 0.5)  # AUC 0.1 lower, gap 0.0
WIDE = C("b", "reweight", (), 0.7)    # AUC as the reference's, gap 0.35


def ref_of(_: search.Candidate) -> search.Candidate:
    return REF


def pool(n_seeds: int = 12) -> dict:
    """Per seed s: reference AUC 0.80 + noise; KEEPS within ±0.001 of it; LOSES 0.1 lower; gaps with small
    spread around 0.5 (reference), 0.2, 0.0, 0.35."""
    rng = np.random.default_rng(0)
    out = {}
    for s in range(n_seeds):
        base = 0.80 + 0.02 * rng.standard_normal()
        out[REF, s] = (base, 0.5 + 0.02 * rng.standard_normal())
        out[KEEPS, s] = (base + 0.001 * rng.standard_normal(), 0.2 + 0.02 * rng.standard_normal())
        out[LOSES, s] = (base - 0.1 + 0.001 * rng.standard_normal(), 0.02 * rng.standard_normal())
        out[WIDE, s] = (base + 0.001 * rng.standard_normal(), 0.35 + 0.02 * rng.standard_normal())
    return out


CANDS = [KEEPS, LOSES, WIDE]


def test_the_target_is_the_pools_answer_with_a_student_t_interval_of_its_gap() -> None:
    p = pool()
    target, (g, low, high), gaps = replay.pooled_target(p, CANDS, ref_of, list(range(12)), 0.01)
    assert target == KEEPS  # LOSES has the smaller gap but loses AUC
    x = np.array([p[KEEPS, s][1] for s in range(12)])
    lo, hi = stats.t.interval(0.95, 11, loc=x.mean(), scale=stats.sem(x))
    assert (g, low, high) == pytest.approx((abs(x.mean()), lo, hi))
    assert gaps[REF] == pytest.approx(abs(np.mean([p[REF, s][1] for s in range(12)])))


@pytest.mark.parametrize("budget", [3, 5, 9, 14, 40])
def test_no_trial_spends_more_than_the_budget(budget: int) -> None:
    options = replay.SearchOptions(budget=budget)
    r = replay.bootstrap(pool(), CANDS, ref_of, list(range(12)), 8, options, trials=8, rng_seed=3)
    assert len(r.trials) == 8 and all(t.runs <= budget for t in r.trials)
    if budget < 4:  # less than the screen: every trial spends it all and is unfinished
        assert all(t.runs == budget and not t.finished for t in r.trials)


def test_a_clear_case_hits_every_time_and_a_spent_budget_misses() -> None:
    """Screen 4 runs (3 candidates + reference on 1 seed); confirming KEEPS on 8 seeds adds 7 + 7 = 14."""
    seeds = list(range(12))
    enough = replay.bootstrap(pool(), CANDS, ref_of, seeds, 8, replay.SearchOptions(budget=18), 30, 1)
    assert enough.hit_rate == 1.0 and all(t.finished and t.answer == KEEPS for t in enough.trials)
    assert enough.agreement == 1.0
    # LOSES (gap 0) screens below −ε and goes last; KEEPS (gap 0.2) is confirmed first: accepted at 4 seeds at
    # the earliest (2 seeds cannot show it within ε), so no trial needs more than the screen + 2·7.
    assert enough.mean_runs <= 4 + 14
    short = replay.bootstrap(pool(), CANDS, ref_of, seeds, 8, replay.SearchOptions(budget=4), 30, 1)
    assert short.hit_rate == 0.0 and short.agreement == 0.0  # a full sweep on those seeds finds KEEPS
    assert all(not t.finished and t.answer == REF for t in short.trials)  # only screened: the test-equal set stays


def test_the_search_replayed_is_the_one_the_driver_runs() -> None:
    """search_on asks progress() and looks results up as the driver trains them: the same runs in the same order
    as calling next_screen by hand until it wants nothing."""
    p = pool()
    seeds = list(range(8))
    values, spent, finished = replay.search_on(p, CANDS, ref_of, seeds, replay.SearchOptions())
    by_hand: dict = {}
    while want := search.next_screen(CANDS, ref_of, seeds, 1, by_hand, 0.01).wanted:
        by_hand.update({w: p[w] for w in want})
    assert finished and values == by_hand and spent == len(by_hand)


def test_a_pool_from_tidy_rows_keeps_the_seeds_where_every_setting_ran() -> None:
    p = pool(4)
    rows = [{"task": "t3", "base": c.base, "intervention": c.intervention, "level_label": f"{c.level:g}",
             "test_label": "0.8", "seed": s, "auc": auc, "fpr_diff": gap, "n_requested": 32, "objective": "erm",
             "intervention_options": math.nan}
            for (c, s), (auc, gap) in p.items() if not (c == WIDE and s == 3)]
    values, cands, reference, seeds = replay.pool_of(pd.DataFrame(rows), "fpr_diff")
    assert sorted(cands) == sorted(CANDS) and reference(KEEPS) == REF and seeds == [0, 1, 2]
    assert values[KEEPS, 2] == p[KEEPS, 2]
    mixed = pd.DataFrame([*rows, {**rows[0], "seed": 9, "n_requested": 64}])
    with pytest.raises(ValueError, match="n_requested"):
        replay.pool_of(mixed, "fpr_diff")
    with pytest.raises(ValueError, match="tpr_diff"):
        replay.pool_of(pd.DataFrame(rows), "tpr_diff")


def test_the_full_sweep_ceiling_runs_every_setting_on_every_drawn_seed() -> None:
    r = replay.bootstrap(pool(), CANDS, ref_of, list(range(12)), 6, replay.SearchOptions("full"), 5, 2)
    assert all(t.runs == 4 * 6 and t.finished and t.answer == KEEPS for t in r.trials) and r.hit_rate == 1.0


def test_a_recommendation_is_checked_against_the_sweeps_answer_on_the_seeds_given() -> None:
    p, seeds = pool(), list(range(12))
    hit = replay.check(KEEPS, p, CANDS, ref_of, seeds, 0.01)
    assert hit.hit and hit.target == KEEPS and hit.seeds == tuple(seeds)
    assert hit.answer_gap == pytest.approx(abs(np.mean([p[KEEPS, s][1] for s in seeds])))
    for wrong in (LOSES, REF, WIDE):  # gaps 0.0, 0.5, 0.35 against KEEPS's 0.2 ± 0.02
        assert not replay.check(wrong, p, CANDS, ref_of, seeds, 0.01).hit
    # on seeds 0–2 only, the target and its interval are those seeds' own
    few = replay.check(WIDE, p, CANDS, ref_of, [0, 1, 2], 0.01)
    assert few.target_interval == replay.pooled_target(p, CANDS, ref_of, [0, 1, 2], 0.01)[1]
    with pytest.raises(ValueError, match=r"lacks runs on seeds \[12, 13\]"):
        replay.check(KEEPS, p, CANDS, ref_of, [*seeds, 12, 13], 0.01)
    other = C("b", "subselect", (), 0.7)
    with pytest.raises(ValueError, match=r"no runs of the recommended subselect @ 0\.7"):
        replay.check(other, p, CANDS, ref_of, seeds, 0.01)

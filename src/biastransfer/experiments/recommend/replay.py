"""How often the search finds a large sweep's answer: a bootstrap replay of the search on stored runs
(docs/recommend.md, "How reliable is the answer"; ``benchmarks/recommend_replay.py`` runs it on a folder).

The **pool** is a full sweep's finished runs: every candidate and each base's reference on the same seeds ``P``
(one correlation sweep, or several pooled). Its own answer, read with all of ``P`` as a full sweep reads it
(:func:`pooled_target`: the setting that keeps AUC by the paired rule with the smallest ``|mean gap|``, or the
test-equal set), is the **target**.

A **trial** draws a block of ``S`` seeds from ``P`` *with replacement* (the seed is the unit that is resampled:
a seed's runs stay together, so the pairing of a candidate with its reference holds), names them ``0 … S−1``,
and runs the search on them as the driver does (:func:`search_on`): ask :func:`~.search.progress` for the runs
it wants, "run" the first ``budget − spent`` of them by looking their results up, ask again, until it wants
none or the budget is spent. Its answer is read as the report reads it (:func:`answer_of`: :func:`~.search.choose`
limited to what the search accepted). A trial **hits** when the pooled ``|mean gap|`` of its answer lies inside
the pooled 95% interval of the target's ``|mean gap|``, the rule of issue 14's evidence.

Resampling the pool's own seeds makes the replay optimistic where the pool is small (each trial's seeds come
from the seeds that define the target); it is a design tool (which ``S``, budget and screen for this noise),
not evidence: evidence needs seeds outside the pool.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from biastransfer.analysis.aggregate import abs_interval, interval
from biastransfer.experiments.recommend.report import reference_at, row_candidate
from biastransfer.experiments.recommend.search import Candidate, Choice, Values, accepted, choose, progress

Reference = Callable[[Candidate], Candidate]


@dataclass(frozen=True)
class SearchOptions:
    """The options of a recommend block that the search reads (``RecommendOptions`` without the gap);
    ``strategy="full"`` stands for a full sweep (every setting on every seed, no budget), the ceiling a search
    can reach on the same seeds."""

    strategy: str = "screen"
    screen_seeds: int = 1
    min_seeds: int = 3
    tolerance: float = 0.01
    budget: int | None = None


def search_on(lookup: Mapping[tuple[Candidate, int], tuple[float, float]], candidates: Sequence[Candidate],
              reference: Reference, seeds: Sequence[int], options: SearchOptions) -> tuple[dict, int, bool]:
    """Run the search on ``seeds`` as the driver runs it (``adaptive.search_block``), with ``lookup`` standing in
    for training: ``(values it saw, runs spent, finished)``. It never spends more than ``options.budget``."""
    if options.strategy == "full":
        drawn = set(seeds)
        values = {(c, s): v for (c, s), v in lookup.items() if s in drawn}
        return values, len(values), True
    values: dict[tuple[Candidate, int], tuple[float, float]] = {}
    spent = 0
    while True:
        want = [w for w in progress(options.strategy, candidates, reference, seeds, options.screen_seeds,
                                    options.min_seeds, values, options.tolerance).wanted if w not in values]
        if not want:
            return values, spent, True
        room = want if options.budget is None else want[: options.budget - spent]
        if not room:
            return values, spent, False
        for w in room:
            values[w] = lookup[w]
        spent += len(room)


def answer_of(candidates: Sequence[Candidate], reference: Reference, seeds: Sequence[int], values: Values,
              options: SearchOptions) -> Candidate:
    """The setting the report recommends from ``values``: the chosen candidate, else the test-equal set of the
    base whose reference has the smallest |gap|."""
    eligible = accepted(options.strategy, candidates, reference, seeds, options.screen_seeds, values,
                        options.tolerance)
    return _setting(choose(candidates, reference, seeds, values, options.tolerance, eligible))


def _settings(candidates: Sequence[Candidate], reference: Reference) -> list[Candidate]:
    """The candidates and their references, each once."""
    return list(dict.fromkeys([*candidates, *(reference(c) for c in candidates)]))


def _setting(c: Choice) -> Candidate:
    return c.best.candidate if c.status == "chosen" and c.best is not None else c.reference


def pooled_target(pool: Values, candidates: Sequence[Candidate], reference: Reference, seeds: Sequence[int],
                  tolerance: float) -> tuple[Candidate, tuple[float, float, float], dict[Candidate, float]]:
    """The full sweep's answer on all of ``seeds``, the 95% interval of its ``|mean gap|``
    (:func:`~biastransfer.analysis.aggregate.abs_interval` of the Student-t interval of the mean gap), and every
    setting's pooled ``|mean gap|`` (references included)."""
    target = _setting(choose(candidates, reference, seeds, pool, tolerance))
    gaps = {c: abs(float(np.mean([pool[c, s][1] for s in seeds]))) for c in _settings(candidates, reference)}
    mean, low, high = interval(np.array([pool[target, s][1] for s in seeds], dtype=float))
    return target, abs_interval(mean, low, high), gaps


@dataclass(frozen=True)
class Trial:
    """One replayed search: its answer, the runs it spent, whether it finished within the budget, and whether it
    agrees with a full sweep on the same seeds (its answer's |mean gap| on those seeds lies inside the 95%
    interval of that sweep's answer's): the search's own loss, without the noise of the seeds."""

    answer: Candidate
    runs: int
    finished: bool
    agrees: bool


@dataclass(frozen=True)
class Replay:
    """The trials of one set of options against the pool's target."""

    options: SearchOptions
    n_seeds: int
    target: Candidate
    target_interval: tuple[float, float, float]   # |mean gap|, 95% low, high
    pooled_gap: dict[Candidate, float]
    trials: list[Trial]

    def hit(self, trial: Trial) -> bool:
        _, low, high = self.target_interval
        return bool(low <= self.pooled_gap[trial.answer] <= high)

    @property
    def hit_rate(self) -> float:
        return sum(map(self.hit, self.trials)) / len(self.trials) if self.trials else math.nan

    @property
    def agreement(self) -> float:
        """Share of trials that agree with a full sweep on their own seeds."""
        return sum(t.agrees for t in self.trials) / len(self.trials) if self.trials else math.nan

    @property
    def mean_runs(self) -> float:
        return float(np.mean([t.runs for t in self.trials])) if self.trials else math.nan

    def answers(self) -> Counter[str]:
        return Counter(t.answer.setting for t in self.trials)


def bootstrap(pool: Values, candidates: Sequence[Candidate], reference: Reference, pool_seeds: Sequence[int],
              n_seeds: int, options: SearchOptions, trials: int, rng_seed: int = 0) -> Replay:
    """``trials`` searches, each on ``n_seeds`` seeds drawn with replacement from ``pool_seeds`` (module doc)."""
    if not pool_seeds:
        raise ValueError("the pool has no seed on which every setting ran")
    target, target_interval, gaps = pooled_target(pool, candidates, reference, pool_seeds, options.tolerance)
    rng = random.Random(rng_seed)
    settings, population = _settings(candidates, reference), list(pool_seeds)
    out = []
    for _ in range(trials):
        draw = [rng.choice(population) for _ in range(n_seeds)]
        lookup = {(c, i): pool[c, s] for c in settings for i, s in enumerate(draw)}
        seeds = list(range(n_seeds))
        values, spent, finished = search_on(lookup, candidates, reference, seeds, options)
        answer = answer_of(candidates, reference, seeds, values, options)
        _, (_, low, high), same_seeds = pooled_target(lookup, candidates, reference, seeds, options.tolerance)
        out.append(Trial(answer, spent, finished, bool(low <= same_seeds[answer] <= high)))
    return Replay(options, n_seeds, target, target_interval, gaps, out)


@dataclass(frozen=True)
class Check:
    """A recommendation judged against a full sweep (issue 14's rule; ``benchmarks/recommend_check.py``): the
    sweep's answer on ``seeds`` (the **target**), the 95% interval of its ``|mean gap|``, and the sweep's
    ``|mean gap|`` of the recommended setting on the same seeds. It **hits** when that lies inside the interval."""

    answer: Candidate
    target: Candidate
    target_interval: tuple[float, float, float]   # |mean gap|, 95% low, high
    answer_gap: float
    seeds: tuple[int, ...]

    @property
    def hit(self) -> bool:
        _, low, high = self.target_interval
        return bool(low <= self.answer_gap <= high)


def check(answer: Candidate, pool: Values, candidates: Sequence[Candidate], reference: Reference,
          seeds: Sequence[int], tolerance: float) -> Check:
    """``answer`` (a recommendation's setting) against the full sweep ``pool`` read on ``seeds``."""
    if not seeds:
        raise ValueError("no seed to judge on: the sweep has no seed on which every setting ran")
    missing = [s for s in seeds if any((c, s) not in pool for c in _settings(candidates, reference))]
    if missing:
        raise ValueError(f"the sweep lacks runs on seeds {missing}: a full sweep runs every setting on every seed")
    target, target_interval, gaps = pooled_target(pool, candidates, reference, seeds, tolerance)
    if answer not in gaps:
        raise ValueError(f"the sweep has no runs of the recommended {answer.setting}; it tried "
                         f"{', '.join(sorted(c.setting for c in gaps))}")
    return Check(answer, target, target_interval, gaps[answer], tuple(seeds))


def pool_of(runs: pd.DataFrame, gap: str) -> tuple[Values, list[Candidate], Reference, list[int]]:
    """A pool from tidy run rows (``runs_frame`` of a sweep's or a recommendation's folder) of one task, N, test
    level and objective: ``(values, candidates, reference, seeds on which every setting ran)``. The reference is
    ``collect`` at the test level on each base."""
    if runs.empty:
        raise ValueError("no finished runs to pool")
    size = "n_requested" if "n_requested" in runs.columns else "n_train"  # a subselect set is smaller than N
    for col in ("task", size, "test_label", "objective"):
        if col in runs.columns and runs[col].nunique(dropna=False) > 1:
            raise ValueError(f"the runs mix several values of {col!r} ({sorted(map(str, runs[col].unique()))}); "
                             "pool the runs of one task, N, test level and objective (--experiment picks a block)")
    if gap not in runs.columns:
        raise ValueError(f"the runs have no column {gap!r}")
    reference = reference_at(str(runs["test_label"].iloc[0]))
    values: dict[tuple[Candidate, int], tuple[float, float]] = {}
    for _, row in runs.iterrows():
        values[row_candidate(row), int(row["seed"])] = (float(row["auc"]), float(row[gap]))
    settings = sorted({c for c, _ in values})
    candidates = [c for c in settings if c != reference(c)]
    needed = _settings(candidates, reference)
    seeds = sorted(s for s in {s for _, s in values} if all((c, s) in values for c in needed))
    return values, candidates, reference, seeds

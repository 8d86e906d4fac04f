"""The recommender's search, as pure functions of the finished runs (docs/recommend.md).

A **candidate** is one finetuning setting of a base: an intervention (with its options) at a level. Its
**reference** is ``collect`` at the test-equal level on the same base (what a user who matches the test
distribution would do). A candidate is scored against its reference by **paired** differences over the seeds
both have (they share their finetuning draw at a seed), with the sweep's rule (:func:`keeps_auc`):

* it **keeps AUC** when the lower bound of the two-sided 95% Student-t interval of ``AUC(c, s) − AUC(ref, s)``
  lies above ``−ε`` (``n ≥ 2`` seeds);
* it is **inferior** when the upper bound lies below ``−ε`` (its AUC is shown to be more than ε lower);
* otherwise it is undecided (more seeds may decide it).

**Successive halving** (:func:`schedule`, :func:`next_round`): round 0 runs every candidate (and each base's
reference) on the first ``s₀ = min_seeds`` seeds; round r+1 keeps the best half of round r's survivors
(:func:`select_survivors`: inferior ones dropped; those that keep AUC first, then the undecided, each by the
smallest ``|mean gap|``) and runs them on ``s_{r+1} = min(2·s_r, S)`` seeds. It ends when the survivors have
every seed of the block (``S``). Each round is replayed from the stored results, so a study run stopped by its
budget goes on where it stopped, and runs already in the folder cost nothing.

**Screen and confirm** (:func:`next_screen`, the default strategy): halving spends most of a small budget on its
first round, and a round of 2–3 seeds cannot show any setting non-inferior within ε. This strategy spends seeds
where the decision is made instead:

1. *screen*: every candidate and each base's reference on the first ``s₀ = screen_seeds`` seeds;
2. *order* (:func:`screen_order`): candidates whose mean paired AUC difference on those seeds is at least ``−ε``
   first, then the rest; each group by the smallest ``|mean gap|`` (ties: the higher AUC, then the name);
3. *confirm*, in that order, one candidate at a time together with its reference, on ``2·s₀, 4·s₀, …, S``
   seeds (:func:`confirmation`). After each stage of ``n ≥ 2`` seeds it is **accepted** when it keeps AUC by
   the paired rule, **dropped** when its mean paired AUC difference is below ``−ε`` (more seeds would narrow the
   interval around a mean that already fails) or when it has all ``S`` seeds without keeping AUC; otherwise it
   gets the next stage. The search ends at the first accepted candidate, or when every candidate is dropped.

**Screen and full confirmation** (strategy ``screen_full``): the same screen, order and stages, but a candidate is
accepted only on all ``S`` seeds and dropped before that only when it is inferior. Each decision is then the one a
full sweep on the same seeds makes for that candidate (but for an early drop as inferior, which the other seeds
would rarely reverse); an early acceptance on a few lucky seeds, or a drop on a few unlucky ones whose interval
still reaches −ε, cannot happen. It costs more per candidate confirmed (every accepted one runs to ``S``).

The first accepted candidate is the one the screen ranked best among those that can keep AUC, so the answer
(:func:`choose`, the same for both strategies) is it. From an empty folder, with ``B`` bases, ``K`` candidates
and the first candidate accepted on all ``S`` seeds, it costs ``(K + B)·s₀ + 2·(S − s₀)`` runs
(:func:`screen_runs`); each dropped candidate adds the seeds it got beyond the screen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from biastransfer.analysis.aggregate import paired_interval
from biastransfer.experiments.correlation_sweep.analysis import ALPHA, keeps_auc

GAPS = ("fpr_diff", "tpr_diff", "eo_diff")
"""The gaps a recommendation can minimise (their absolute mean over seeds)."""


@dataclass(frozen=True, order=True)
class Candidate:
    """One setting searched: base, intervention, its options (as sorted items) and level."""

    base: str
    intervention: str
    options: tuple[tuple[str, Any], ...]
    level: float | str

    @property
    def setting(self) -> str:
        """``reweight(start_level=0.8) @ 0.3``: the intervention, its options and level."""
        opts = f"({', '.join(f'{k}={v}' for k, v in self.options)})" if self.options else ""
        level = self.level if isinstance(self.level, str) else f"{float(self.level):g}"
        return f"{self.intervention}{opts} @ {level}"

    @property
    def label(self) -> str:
        return f"{self.setting}, base {self.base}"


def candidate_of(spec: Mapping[str, Any]) -> Candidate:
    """The candidate a run (its spec as a dict) belongs to."""
    level = spec["level"]
    return Candidate(str(spec["base_name"]), str(spec["intervention"]),
                     tuple(sorted((spec.get("intervention_options") or {}).items())),
                     level if isinstance(level, str) else float(level))


def schedule(n_candidates: int, n_seeds: int, min_seeds: int) -> list[tuple[int, int]]:
    """``(survivors, seeds)`` of each round when no candidate is dropped as inferior: ``K`` candidates on
    ``s₀ = min(min_seeds, S)`` seeds, then ``⌈K_r/2⌉`` on ``min(2·s_r, S)``, until the seeds reach ``S``."""
    rounds, k, s = [], n_candidates, min(min_seeds, n_seeds)
    while True:
        rounds.append((k, s))
        if s >= n_seeds or k <= 0:
            return rounds
        k, s = math.ceil(k / 2), min(2 * s, n_seeds)


def halving_runs(n_candidates: int, n_bases: int, n_seeds: int, min_seeds: int) -> int:
    """Runs successive halving needs from an empty folder when no candidate is dropped as inferior: each round
    adds its survivors' new seeds, and each base's reference runs on every seed a round reaches (the bound
    assumes every base keeps a survivor)."""
    total, prev = 0, 0
    for k, s in schedule(n_candidates, n_seeds, min_seeds):
        total += k * (s - prev)
        prev = s
    return total + n_bases * prev


@dataclass(frozen=True)
class Score:
    """A candidate against its reference over the seeds both have."""

    candidate: Candidate
    n: int
    auc: float                 # mean AUC of the candidate
    auc_diff: tuple[float, float, float]   # paired AUC(c) − AUC(ref): mean, 95% low, high
    gap: float                 # mean gap over the seeds
    keeps: bool
    inferior: bool

    @property
    def abs_gap(self) -> float:
        return abs(self.gap)


Values = Mapping[tuple[Candidate, int], tuple[float, float]]
"""(candidate, seed) → (AUC, gap) of a finished run."""


def _series(values: Values, candidate: Candidate, seeds: Sequence[int]) -> tuple[pd.Series, pd.Series]:
    have = [s for s in seeds if (candidate, s) in values]
    auc = pd.Series([values[candidate, s][0] for s in have], index=have, dtype=float)
    gap = pd.Series([values[candidate, s][1] for s in have], index=have, dtype=float)
    return auc, gap


def score(values: Values, candidate: Candidate, reference: Candidate, seeds: Sequence[int],
          tolerance: float) -> Score:
    """``candidate`` against ``reference`` on ``seeds`` (those both have), by the paired rule."""
    auc, gap = _series(values, candidate, seeds)
    ref_auc, _ = _series(values, reference, seeds)
    keeps, (mean, low, high, n) = keeps_auc(auc, ref_auc, tolerance)
    common = auc.index.intersection(ref_auc.index)
    inferior = bool(n >= 2 and not math.isnan(high) and high < -tolerance)
    return Score(candidate, n, float(auc.loc[common].mean()) if n else math.nan, (mean, low, high),
                 float(gap.loc[common].mean()) if n else math.nan, keeps, inferior)


def _rank(s: Score) -> tuple[Any, ...]:
    gap = s.abs_gap if not math.isnan(s.gap) else math.inf
    return (0 if s.keeps else 1, gap, -s.auc if not math.isnan(s.auc) else math.inf, s.candidate)


def select_survivors(scores: Sequence[Score], keep: int) -> list[Candidate]:
    """The best ``keep`` candidates of a round: those whose AUC is significantly inferior dropped; those that keep
    AUC first, then the undecided, each by the smallest ``|mean gap|`` (ties: the higher AUC, then the name)."""
    alive = sorted((s for s in scores if not s.inferior), key=_rank)
    return [s.candidate for s in alive[:keep]]


@dataclass(frozen=True)
class Progress:
    """Where the halving stands: the runs it wants next (``(candidate, seed)``, priority order; empty when done),
    each round's ``(survivors, seeds)``, and how far each candidate got (its last round)."""

    wanted: list[tuple[Candidate, int]]
    rounds: list[tuple[list[Candidate], int]]
    reached: dict[Candidate, int]


def next_round(candidates: Sequence[Candidate], reference: Callable[[Candidate], Candidate], seeds: Sequence[int],
               min_seeds: int, values: Values, tolerance: float) -> Progress:
    """Replay the halving on ``values`` (the finished runs) and return what it needs next: the runs of the first
    round that lacks some, seed by seed (the references first at each seed), or nothing when the survivors have
    every seed."""
    survivors, s = list(candidates), min(min_seeds, len(seeds))
    rounds: list[tuple[list[Candidate], int]] = []
    reached = {c: 0 for c in candidates}
    while survivors:
        rounds.append((survivors, s))
        for c in survivors:
            reached[c] = len(rounds) - 1
        wanted = []
        for seed in seeds[:s]:
            refs = list(dict.fromkeys(reference(c) for c in survivors))
            wanted += [(c, seed) for c in [*refs, *survivors] if (c, seed) not in values]
        if wanted or s >= len(seeds):
            return Progress(wanted, rounds, reached)
        scores = [score(values, c, reference(c), seeds[:s], tolerance) for c in survivors]
        survivors, s = select_survivors(scores, math.ceil(len(survivors) / 2)), min(2 * s, len(seeds))
    return Progress([], rounds, reached)


SCREENS = ("screen", "screen_full")  # the screen-and-confirm strategies (early decisions; decisions on all S seeds)


def screen_runs(n_candidates: int, n_bases: int, n_seeds: int, screen_seeds: int) -> int:
    """Runs screen-and-confirm needs from an empty folder when its first confirmed candidate is accepted on all
    ``S`` seeds: the screen, ``(K + B)·s₀``, and the candidate with its reference on the other ``S − s₀``."""
    s0 = min(screen_seeds, n_seeds)
    return (n_candidates + n_bases) * s0 + 2 * (n_seeds - s0)


def _mean_below_tolerance(s: Score, tolerance: float) -> bool:
    """The mean paired AUC difference lies below ``−ε`` (−ε itself does not; NaN does not)."""
    return not math.isnan(s.auc_diff[0]) and s.auc_diff[0] < -tolerance - 1e-12


def screen_order(scores: Sequence[Score], tolerance: float) -> list[Candidate]:
    """Candidates ordered for confirmation from their screen: mean paired AUC difference ``≥ −ε`` first, then the
    rest, each by the smallest ``|mean gap|`` (ties: the higher AUC, then the name)."""
    def rank(s: Score) -> tuple[Any, ...]:
        plausible = not math.isnan(s.auc_diff[0]) and not _mean_below_tolerance(s, tolerance)
        return (0 if plausible else 1, *_rank(s)[1:])
    return [s.candidate for s in sorted(scores, key=rank)]


def _stages(s0: int, n_seeds: int) -> list[int]:
    """Seed counts a confirmed candidate is judged at: ``2·s₀, 4·s₀, …`` capped at ``S`` (at least 2 seeds)."""
    out, s = [], min(max(2 * s0, 2), n_seeds)
    while True:
        out.append(s)
        if s >= n_seeds:
            return out
        s = min(2 * s, n_seeds)


def confirmation(values: Values, candidate: Candidate, reference: Candidate, seeds: Sequence[int],
                 screen_seeds: int, tolerance: float, full: bool = False) -> tuple[str, int]:
    """Where a candidate's confirmation stands, replayed from ``values``: ``("accepted", n)`` or
    ``("dropped", n)`` with the seeds it was decided on, or ``("wants", n)``: it (and its reference) need the
    first ``n`` seeds.

    ``full`` (strategy ``screen_full``): accepted only on all ``S`` seeds, and dropped before that only when
    inferior (the paired upper bound below ``−ε``), so the candidate's decision is the one a full sweep on the
    same seeds makes (but for such an early drop); otherwise (``screen``) accepted at the end of any stage where
    it keeps AUC, and dropped as soon as its mean paired AUC difference lies below ``−ε``."""
    s0 = min(screen_seeds, len(seeds))
    for n in _stages(s0, len(seeds)):
        if any((c, seed) not in values for seed in seeds[:n] for c in (candidate, reference)):
            return "wants", n
        sc = score(values, candidate, reference, seeds[:n], tolerance)
        last = n >= len(seeds)
        if sc.keeps and (last or not full):  # the paired rule needs n ≥ 2
            return "accepted", n
        if sc.inferior or last or (not full and _mean_below_tolerance(sc, tolerance)):
            return "dropped", n
    return "dropped", len(seeds)  # only reached when a block has a single seed


def next_screen(candidates: Sequence[Candidate], reference: Callable[[Candidate], Candidate], seeds: Sequence[int],
                screen_seeds: int, values: Values, tolerance: float, full: bool = False) -> Progress:
    """Replay screen-and-confirm on ``values`` and return what it needs next: the screen's missing runs (the
    references first at each seed), else the next stage of the first candidate in screen order that is neither
    accepted nor dropped (its reference's seeds first), else nothing. ``rounds`` holds the screen and then each
    confirmed candidate with the seeds it reached; ``reached`` is 0 for the screen, ``i`` for the i-th confirmed."""
    s0 = min(screen_seeds, len(seeds))
    reached = {c: 0 for c in candidates}
    rounds: list[tuple[list[Candidate], int]] = [(list(candidates), s0)]
    wanted = []
    for seed in seeds[:s0]:
        refs = list(dict.fromkeys(reference(c) for c in candidates))
        wanted += [(c, seed) for c in [*refs, *candidates] if (c, seed) not in values]
    if wanted:
        return Progress(wanted, rounds, reached)
    screened = [score(values, c, reference(c), seeds[:s0], tolerance) for c in candidates]
    for c in screen_order(screened, tolerance):
        state, n = confirmation(values, c, reference(c), seeds, screen_seeds, tolerance, full)
        rounds.append(([c], n))
        reached[c] = len(rounds) - 1
        if state == "accepted":
            break
        if state == "wants":
            ref = reference(c)
            return Progress([(x, seed) for seed in seeds[:n] for x in (ref, c) if (x, seed) not in values],
                            rounds, reached)
    return Progress([], rounds, reached)


def accepted(strategy: str, candidates: Sequence[Candidate], reference: Callable[[Candidate], Candidate],
             seeds: Sequence[int], screen_seeds: int, values: Values, tolerance: float) -> set[Candidate] | None:
    """The candidates screen-and-confirm accepted at the end of a stage (:func:`confirmation`), replayed from
    ``values``; ``None`` for halving, whose answer may be any candidate that keeps AUC."""
    if strategy not in SCREENS:
        return None
    full = strategy == "screen_full"
    return {c for c in candidates
            if confirmation(values, c, reference(c), seeds, screen_seeds, tolerance, full)[0] == "accepted"}


def progress(strategy: str, candidates: Sequence[Candidate], reference: Callable[[Candidate], Candidate],
             seeds: Sequence[int], screen_seeds: int, min_seeds: int, values: Values, tolerance: float) -> Progress:
    """The search of ``strategy`` (``screen`` and ``screen_full``: :func:`next_screen`; ``halving``:
    :func:`next_round`) replayed on ``values``."""
    if strategy in SCREENS:
        return next_screen(candidates, reference, seeds, screen_seeds, values, tolerance, strategy == "screen_full")
    return next_round(candidates, reference, seeds, min_seeds, values, tolerance)


@dataclass(frozen=True)
class Choice:
    """The recommendation: ``status`` is ``chosen`` (a setting keeps AUC and has a smaller |gap| than its
    reference), ``reference`` (none tried beats the test-equal set) or ``none`` (no setting keeps AUC: the
    test-equal set is the answer, ``closest`` the settings nearest to keeping it)."""

    status: str
    best: Score | None
    reference: Candidate
    ref_gap: float
    ref_auc: float
    gap_paired: tuple[float, float, float]   # |gap(best, s)| − |gap(ref, s)|: mean, low, high (Bonferroni)
    confidence: float
    scores: list[Score]
    closest: list[Score]


def choose(candidates: Sequence[Candidate], reference: Callable[[Candidate], Candidate], seeds: Sequence[int],
           values: Values, tolerance: float, eligible: Collection[Candidate] | None = None) -> Choice:
    """Every candidate scored on all the seeds it has; the one that keeps AUC with the smallest |mean gap| (ties:
    higher AUC), compared with its reference by the paired difference of |gap| (Bonferroni over the candidates
    tried, as the sweep does over its levels). ``eligible`` (default: all) limits the answer to the candidates the
    search itself accepted: screen-and-confirm accepts only at the end of a stage, so a candidate whose AUC
    happens to pass on the seeds of an unfinished stage (a budget spent mid-stage) is not the answer."""
    scores = [score(values, c, reference(c), seeds, tolerance) for c in candidates]
    tried = [s for s in scores if s.n > 0]
    kept = sorted((s for s in tried if s.keeps and (eligible is None or s.candidate in eligible)), key=_rank)
    confidence = 1.0 - ALPHA / max(len(tried), 1)
    nan3 = (math.nan, math.nan, math.nan)
    refs = list(dict.fromkeys(reference(c) for c in candidates))

    def ref_stats(ref: Candidate) -> tuple[float, float]:
        auc, gap = _series(values, ref, seeds)
        return float(auc.mean()) if len(auc) else math.nan, float(gap.mean()) if len(gap) else math.nan

    if kept:
        best = kept[0]
        ref = reference(best.candidate)
        ref_auc, ref_gap = ref_stats(ref)
        _, gap = _series(values, best.candidate, seeds)
        _, rgap = _series(values, ref, seeds)
        mean, low, high, _ = paired_interval(gap.abs(), rgap.abs(), confidence=confidence)
        status = "chosen" if best.abs_gap < abs(ref_gap) else "reference"
        return Choice(status, best, ref, ref_gap, ref_auc, (mean, low, high), confidence, scores, [])
    ref = min(refs, key=lambda r: abs(ref_stats(r)[1]) if not math.isnan(ref_stats(r)[1]) else math.inf)
    ref_auc, ref_gap = ref_stats(ref)
    lower = [s for s in tried if not math.isnan(s.auc_diff[1])]
    closest = sorted(lower, key=lambda s: (-s.auc_diff[1], s.abs_gap))[:3]
    return Choice("none", None, ref, ref_gap, ref_auc, nan3, confidence, scores, closest)

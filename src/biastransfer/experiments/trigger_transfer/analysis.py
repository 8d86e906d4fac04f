"""The reading of a trigger experiment: does Salman et al.'s ordering fixed-feature > full > scratch of the attack
success rate hold, with intervals of the paired differences (at a seed every mode is finetuned on the same
images)?"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pandas as pd

from biastransfer.analysis.aggregate import paired_interval
from biastransfer.analysis.text import fmt, fmt_signed

SCRATCH = "scratch"
ORDER = ("fixed_feature", "full", SCRATCH)
"""Salman et al.'s ordering of the attack success rate, highest first."""


@dataclass(frozen=True)
class Step:
    """One link ``higher > lower`` of the ordering at one (source, N, p): the paired difference of the ASR."""

    higher: str
    lower: str
    mean: float
    low: float
    high: float
    n_pairs: int

    @property
    def status(self) -> str:
        """``holds`` (interval above 0), ``reversed`` (below 0), ``not established`` (contains 0), ``one seed``."""
        if self.n_pairs == 0 or math.isnan(self.mean):
            return "no data"
        if math.isnan(self.low):
            return "one seed"
        if self.low > 0:
            return "holds"
        if self.high < 0:
            return "reversed"
        return "not established"

    def text(self) -> str:
        return (f"{self.higher} − {self.lower} {fmt_signed(self.mean)} [{fmt(self.low)}, {fmt(self.high)}] "
                f"({self.status})")


@dataclass(frozen=True)
class Ordering:
    """The ordering's links at one (block, source base, N, p)."""

    experiment: str
    source: str
    n_train: int
    rate: float
    means: dict[str, float]
    steps: tuple[Step, ...]

    @property
    def holds(self) -> bool:
        return bool(self.steps) and all(s.status == "holds" for s in self.steps)

    @property
    def status(self) -> str:
        statuses = {s.status for s in self.steps}
        if self.holds:
            return "holds"
        if "reversed" in statuses:
            return "does not hold"
        return "not established"

    def sentence(self) -> str:
        chain = " > ".join(m for m in ORDER if m in self.means)
        values = ", ".join(f"{m} {fmt(self.means[m])}" for m in ORDER if m in self.means)
        return (f"Block {self.experiment}, source {self.source}, N={self.n_train}, p={fmt(self.rate, 2)}: attack "
                f"success {values}; "
                f"{chain} {self.status} ({'; '.join(s.text() for s in self.steps)}; paired by seed).")


def orderings(runs: pd.DataFrame) -> list[Ordering]:
    """For every (block, source base, N, p): the paired differences of the ASR along :data:`ORDER` between the
    modes present (adjacent present modes are compared). Other modes (``fixed_feature+update_bn``,
    ``linear_probe_then_finetune`` …) are shown in the tables and the figure but not ordered."""
    out: list[Ordering] = []
    if runs.empty:
        return out
    for (experiment, source, n, rate), rows in runs.groupby(["experiment", "source_base", "n_train", "trigger_rate"],
                                                             sort=True):
        series = {str(m): g.groupby("seed")["attack_success_rate"].mean() for m, g in rows.groupby("mode")}
        present = [m for m in ORDER if m in series]
        if len(present) < 2:
            continue
        steps = tuple(Step(a, b, *paired_interval(series[a], series[b])) for a, b in itertools.pairwise(present))
        means = {m: float(series[m].mean()) for m in present}
        out.append(Ordering(str(experiment), str(source), int(n), float(rate), means, steps))
    return out


@dataclass(frozen=True)
class Contrast:
    """A planted source against a control source (``rate: 0``, the same source task without the trigger), in one
    mode at one (N, p): the paired difference of the ASR (the runs share their images at a seed, whatever block
    they are in)."""

    n_train: int
    rate: float
    mode: str
    planted: str
    control: str
    planted_asr: float
    control_asr: float
    step: Step

    def sentence(self) -> str:
        s = self.step
        return (f"N={self.n_train}, p={fmt(self.rate, 2)}, {self.mode}: planted source {self.planted} "
                f"{fmt(self.planted_asr)} against control source {self.control} {fmt(self.control_asr)}; the planted "
                f"trigger adds {fmt_signed(s.mean)} [{fmt(s.low)}, {fmt(s.high)}] to the attack success rate "
                f"({_CONTRAST_WORDS.get(s.status, s.status)}; paired by seed).")


_CONTRAST_WORDS = {"holds": "established", "reversed": "reversed: the control is higher"}


def control_contrasts(runs: pd.DataFrame) -> list[Contrast]:
    """For every (N, p, mode) with runs of a planted source (``source_rate`` > 0) and of a control source
    (``source_rate`` = 0): the paired difference planted − control of the ASR."""
    if runs.empty or "source_rate" not in runs.columns:
        return []
    rated = runs[pd.to_numeric(runs["source_rate"], errors="coerce").notna()]
    out: list[Contrast] = []
    for (n, rate, mode), rows in rated.groupby(["n_train", "trigger_rate", "mode"], sort=True):
        series = {(str(src), float(r)): g.groupby("seed")["attack_success_rate"].mean()
                  for (src, r), g in rows.groupby(["source_base", "source_rate"])}
        for (planted, p_rate), a in series.items():
            for (control, c_rate), b in series.items():
                if p_rate > 0 and c_rate == 0:
                    out.append(Contrast(int(n), float(rate), str(mode), planted, control, float(a.mean()),
                                        float(b.mean()), Step(planted, control, *paired_interval(a, b))))
    return out

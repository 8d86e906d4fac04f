"""The reading of a domain mixture: where one base catches up with another on the diverse domain."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pandas as pd

from biastransfer.analysis.aggregate import paired_interval
from biastransfer.analysis.text import fmt, fmt_signed
from biastransfer.render.plots import role_order


@dataclass(frozen=True)
class CatchUp:
    """Where a follower base reaches a leader base's accuracy on the diverse domain at the lowest share."""

    n_train: int
    top_k: int
    domain: str
    leader: str
    follower: str
    low_share: float
    leader_acc: float
    follower_acc: float
    reached_share: float | None
    reached_acc: float
    diff: tuple[float, float, float, int]  # follower at reached_share − leader at low_share, paired by seed

    def sentence(self, short: bool = False) -> str:
        head = (f"With N={self.n_train} at q={fmt(self.low_share, 2)} from {self.domain}, base {self.leader} "
                f"reaches {fmt(self.leader_acc)} top-{self.top_k} accuracy on {self.domain} and {self.follower} "
                f"{fmt(self.follower_acc)}")
        if self.reached_share is None:
            return head + f"; {self.follower} does not reach it at any share tried."
        mean, low, high, k = self.diff
        sure = ("established" if not math.isnan(low) and low >= 0 else
                "one seed" if math.isnan(low) else "not established: the interval includes a deficit")
        tail = (f"; {self.follower} reaches it at q={fmt(self.reached_share, 2)} ({fmt(self.reached_acc)}; "
                f"difference {fmt_signed(mean)} [{fmt(low)}, {fmt(high)}], paired by seed over {k}, {sure})")
        if short:
            return (f"Base {self.follower} needs a share q={fmt(self.reached_share, 2)} from {self.domain} (N="
                    f"{self.n_train}) to reach base {self.leader}'s top-{self.top_k} accuracy at "
                    f"q={fmt(self.low_share, 2)} ({fmt(self.reached_acc)} vs {fmt(self.leader_acc)}; {sure}).")
        return head + tail + "."


def catch_up(runs: pd.DataFrame) -> list[CatchUp]:
    """For every (N, k, domain) and ordered pair of bases where the leader is ahead at the lowest share on the
    diverse domain (mean over seeds): the smallest share at which the follower's mean reaches the leader's mean at
    the lowest share, with the paired interval (by seed) of that difference."""
    if runs.empty:
        return []
    out = []
    for (n, k, domain), rows in runs.groupby(["n_train", "top_k", "diverse_domain"], sort=True):
        shares = sorted(rows["share"].round(6).unique())
        if len(shares) < 2:
            continue
        series = {(str(b), q): g.groupby("seed")["topk_diverse"].mean()
                  for (b, q), g in rows.assign(share=rows["share"].round(6)).groupby(["base", "share"])}
        bases = role_order(sorted(rows["base"].astype(str).unique()), rows)
        q0 = shares[0]
        for leader, follower in itertools.permutations(bases, 2):
            if (leader, q0) not in series or (follower, q0) not in series:
                continue
            lead = float(series[(leader, q0)].mean())
            if not float(series[(follower, q0)].mean()) < lead:
                continue
            reached = next((q for q in shares[1:] if (follower, q) in series
                            and float(series[(follower, q)].mean()) >= lead), None)
            acc = float(series[(follower, reached)].mean()) if reached is not None else math.nan
            diff = (paired_interval(series[(follower, reached)], series[(leader, q0)]) if reached is not None
                    else (math.nan, math.nan, math.nan, 0))
            out.append(CatchUp(int(n), int(k), str(domain), leader, follower, float(q0), lead,
                               float(series[(follower, q0)].mean()), reached, acc, diff))
    return out

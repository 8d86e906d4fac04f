"""How reliable is the recommender at a given number of seeds, budget and screen? A bootstrap replay of the search
on a stored full sweep (:mod:`biastransfer.experiments.recommend.replay`; docs/recommend.md).

    python benchmarks/recommend_replay.py SWEEP_DIR [SWEEP_DIR ...] --seeds 16 --budget 57 --screen-seeds 1,2

pools the finished runs of the folders (one task, N and test level; a correlation sweep's or recommendation's),
reads the pool's own answer (the target), and for each screen size replays ``--trials`` searches on ``--seeds``
seeds drawn with replacement from the pool. It prints, per screen size, the share of searches whose answer hits the
target's interval, the share that agree with a full sweep on their own seeds (the search's own loss, without
the seeds' noise), the mean runs they spent and their commonest answers, after the same for a full sweep on the
resampled seeds (the ceiling). It trains nothing: a design tool, not a speed benchmark, and its hit rates are
optimistic where the pool has few seeds.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from biastransfer.experiments.recommend.replay import SearchOptions, bootstrap, pool_of
from biastransfer.store.current import split_runs
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore


def folder_runs(folder: Path) -> pd.DataFrame:
    """The tidy rows of the current study's finished runs in ``folder`` (as `biastransfer export` writes them)."""
    store = ResultStore.open_existing(folder)
    try:
        current, _ = split_runs(store)
        return runs_frame(store, current)
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path, help="study output folders holding the full sweep's runs")
    p.add_argument("--experiment", help="only the runs of this block (default: every block in the folders)")
    p.add_argument("--seeds", type=int, help="S, the seeds a setting may get (default: the pool's seed count)")
    p.add_argument("--budget", type=int, help="new runs per search (default: 30%% of a full sweep on S seeds)")
    p.add_argument("--screen-seeds", default="1", help="screen sizes to compare, comma-separated (default 1)")
    p.add_argument("--strategy", default="screen", choices=["screen", "screen_full", "halving"])
    p.add_argument("--min-seeds", type=int, default=3, help="first round of halving")
    p.add_argument("--tolerance", type=float, default=0.01, help="ε of the AUC rule")
    p.add_argument("--gap", default="fpr_diff", choices=["fpr_diff", "tpr_diff", "eo_diff"])
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--rng", type=int, default=0, help="seed of the resampling")
    args = p.parse_args(argv)
    try:
        runs = pd.concat([folder_runs(f) for f in args.folders], ignore_index=True)
        if args.experiment:
            runs = runs[runs["experiment"] == args.experiment]
        pool, candidates, reference, seeds = pool_of(runs, args.gap)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_seeds = args.seeds or len(seeds)
    n_settings = len(candidates) + len({reference(c) for c in candidates})
    budget = args.budget or math.floor(0.3 * n_settings * n_seeds)
    print(f"pool: {len(candidates)} candidates + {n_settings - len(candidates)} reference(s) on {len(seeds)} seeds; "
          f"S = {n_seeds}, budget {budget} of a {n_settings * n_seeds}-run full sweep, ε = {args.tolerance:g}")
    runs_: list[tuple[str, SearchOptions]] = [("a full sweep (the ceiling)", SearchOptions("full",
                                                tolerance=args.tolerance))]
    for s0 in (int(x) for x in args.screen_seeds.split(",")):
        label = (f"{args.strategy}, screen_seeds {s0}" if args.strategy != "halving"
                 else f"halving, min_seeds {args.min_seeds}")
        runs_.append((label, SearchOptions(args.strategy, s0, args.min_seeds, args.tolerance, budget)))
    for i, (label, options) in enumerate(runs_):
        r = bootstrap(pool, candidates, reference, seeds, n_seeds, options, args.trials, args.rng)
        if i == 0:
            g, lo, hi = r.target_interval
            print(f"target (the pool's answer): {r.target.label}, |{args.gap}| {g:.3f} [{lo:.3f}, {hi:.3f}]")
        top = ", ".join(f"{k} {v}" for k, v in r.answers().most_common(4))
        print(f"{label}: hit {r.hit_rate:.2f} of {len(r.trials)}; agrees with a full sweep on its own seeds "
              f"{r.agreement:.2f}; mean runs {r.mean_runs:.1f}; "
              f"unfinished {sum(not t.finished for t in r.trials)}; answers: {top}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

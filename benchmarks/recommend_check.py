"""Did a recommendation find a full sweep's answer? Issue 14's rule, on stored folders: the recommendation's
setting hits when the sweep's |mean gap| of it lies inside the 95% interval of the sweep's own answer
(:func:`biastransfer.experiments.recommend.replay.check`; docs/recommend.md, "Measured").

    python benchmarks/recommend_check.py REC_DIR [REC_DIR ...] --sweep SWEEP_DIR [SWEEP_DIR ...] [--seeds own]

reads each recommendation's answer as the report does, pools the sweep folders' finished runs (a correlation
sweep's, or a recommend block run as a full sweep: ``strategy: halving`` with ``min_seeds`` equal to the number of
seeds) and judges the answer on the recommendation's own seeds (``--seeds own``, the default: every seed its block
declares, also those a search that accepted early never ran, so the comparison is with a full sweep of the same
seeds and the search's own loss shows; the sweep must have run them all, which a copy of the recommendation's
folder with the sweep run in it gives at the cost of the runs it lacks) or on every seed of the sweep
(``--seeds all``: against an independent sweep). It prints one line per recommendation and the count of hits. It
trains nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from recommend_replay import folder_runs

from biastransfer.experiments.recommend.replay import check, pool_of
from biastransfer.experiments.recommend.report import answers, reference_at
from biastransfer.store.sqlite import ResultStore


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("recommendations", nargs="+", type=Path, help="recommendation folders (one answer or more each)")
    p.add_argument("--sweep", nargs="+", type=Path, required=True, help="folders holding the full sweep's runs")
    p.add_argument("--seeds", choices=["own", "all"], default="own",
                   help="judge on the recommendation's seeds (own, default) or on every seed of the sweep (all)")
    p.add_argument("--experiment", help="only the sweep's runs of this block (default: every block)")
    args = p.parse_args(argv)
    hits = total = 0
    pools: dict[str, tuple] = {}
    try:
        sweep = pd.concat([folder_runs(f) for f in args.sweep], ignore_index=True)
        if args.experiment:
            sweep = sweep[sweep["experiment"] == args.experiment]
        if sweep.empty:
            raise ValueError("the sweep folders hold no finished runs"
                             + (f" of a block {args.experiment!r}" if args.experiment else ""))
        for folder in args.recommendations:
            rows = folder_runs(folder)
            if "auc_tolerance" not in rows.columns:
                raise ValueError(f"{folder} holds no recommend block's runs")
            rows = rows[rows["auc_tolerance"].notna()]
            declared = _declared_seeds(folder) if args.seeds == "own" else {}
            for name, a in answers(rows).items():
                _same_setup(a.task, a.n_train, a.test, sweep)
                if a.gap not in pools:  # one pool per gap, read once for every recommendation judged on it
                    pools[a.gap] = pool_of(sweep, a.gap)
                pool, candidates, reference, complete = pools[a.gap]
                if args.seeds == "own" and name not in declared:
                    raise ValueError(f"{folder} stores no study with a block {name!r}; judge it on the sweep's seeds "
                                     "(--seeds all)")
                seeds = declared[name] if args.seeds == "own" else complete
                c = check(a.recommended, pool, candidates, reference, seeds, a.tolerance)
                g, lo, hi = c.target_interval
                hits, total = hits + c.hit, total + 1
                setting = a.recommended.setting
                if a.recommended == reference_at(a.test)(a.recommended):
                    setting += " (the test-equal set)"
                print(f"{folder} [{name}]: seeds {_span(seeds)}; {a.choice.status}; recommended {setting} "
                      f"in {a.runs} runs ({a.reused} reused) of a {a.full}-run full sweep"
                      f"{'' if a.finished else ', budget spent'}. Sweep: {c.target.setting}, |{a.gap}| {g:.3f} "
                      f"[{lo:.3f}, {hi:.3f}]; the recommendation's {c.answer_gap:.3f}: "
                      f"{'HIT' if c.hit else 'miss'}")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{hits} of {total} hit the full sweep's answer (judged on seeds: {args.seeds})")
    return 0


def _declared_seeds(folder: Path) -> dict[str, list[int]]:
    """The seeds each block declares in the folder's stored study (read once per folder): a search stops short of
    some of them when it accepts early, and a full sweep of the same cost in seeds runs them all."""
    store = ResultStore.open_existing(folder)
    try:
        study = store.get_meta("study") or {}
    finally:
        store.close()
    return {e["name"]: sorted(int(s) for s in e["seeds"]) for e in study.get("experiments", []) if "seeds" in e}


def _same_setup(task: str, n_train: int, test: str, sweep: pd.DataFrame) -> None:
    """The sweep must be of the recommendation's task, N and test level."""
    size = "n_requested" if "n_requested" in sweep.columns else "n_train"
    for col, want in (("task", task), (size, n_train), ("test_label", test)):
        have = sorted({str(v) for v in sweep[col].unique()})
        if have != [str(want)]:
            raise ValueError(f"the sweep's {col} is {', '.join(have)}; the recommendation's is {want}")


def _span(seeds: list[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]} ({len(seeds)})" if seeds else "none"


if __name__ == "__main__":
    raise SystemExit(main())

"""How many trainings a study needs here, and how many the original protocol would have needed for its grid.

The accounting of the original paper's protocol (princetonvisualai/overcoming-pretraining-bias) lives with the
benchmarks, not on the run path: the package only plans its own trainings
(:func:`biastransfer.plan.planned_trainings`), and ``run.py`` compares the two.
"""

from __future__ import annotations

import json

from biastransfer.models.bases import BASES
from biastransfer.plan import Study, planned_trainings

ORIGINAL_TRIALS = 40
"""Trials of one hyperparameter search in the original protocol: the grid lr ∈ {.1, .05, .01, .005, .001} ×
weight decay ∈ {0, 1e-4, 5e-4, 1e-3} (20 points) sampled ``hp_num_samples=2`` times under Ray Tune
(classifier.py), i.e. the "~100 hyperparameter searches of 40 trials" of docs/protocols.md §8. ASHA stops many trials
early; each trial still counts as one training here."""


def our_protocol_trainings(study: Study) -> dict[str, int]:
    """Trainings ``run_study`` needs for ``study`` from an empty store and cache, as the package plans them
    (:func:`biastransfer.plan.planned_trainings`): every run once, every distinct trained base once, and each
    distinct hyperparameter search's trials (one search per (base, task, N, training settings), reused across
    levels, interventions and seeds). Returns ``{runs, bases, searches, search_trainings, total}``."""
    return planned_trainings(study)


def original_protocol_settings(study: Study) -> set[tuple]:
    """The settings the original protocol searched hyperparameters for: one per (base, task, intervention,
    level, N) — the finetuning set — with no reuse across levels or experiments. A salience run's level (1 for
    the X = a set, 0 for the inverse set) makes the two sets two settings, as in the original (``celeba_X&Male``
    and ``celeba_X&Male&`` were searched separately)."""
    return {(json.dumps(s.base, sort_keys=True), s.task, s.intervention, str(s.level), s.n_train)
            for s in study.expand()}


def original_protocol_trainings(study: Study, trials: int = ORIGINAL_TRIALS) -> int:
    """Trainings the original protocol would run for the grid of ``study``.

    Assumptions (documented in BENCHMARKS.md): every run of the grid is one training, as ours; every setting
    (:func:`original_protocol_settings`) gets its own ``trials``-trial search (40: the 20-point lr × wd grid
    sampled twice); every trained base is one search plus one training (main.py trains each base with
    ``hp_search`` first). This follows the brief's "no reuse" reading; the original code did reuse one search
    across the 11 levels of its constant-N sweeps (main.py, bias_type 1, part 1), not in its other experiments.
    """
    specs = study.expand()
    trained_bases = {json.dumps({"base": s.base, "arch": s.arch}, sort_keys=True)
                     for s in specs if BASES.get(s.base["kind"]).trains}
    return len(specs) + trials * len(original_protocol_settings(study)) + (trials + 1) * len(trained_bases)

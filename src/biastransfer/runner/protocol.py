"""How many trainings a study needs here, and how many the original protocol would have needed for its grid."""

from __future__ import annotations

import json

from biastransfer.config import StudyConfig

ORIGINAL_TRIALS = 40
"""Trials of one hyperparameter search in the original protocol: the grid lr ∈ {.1, .05, .01, .005, .001} ×
weight decay ∈ {0, 1e-4, 5e-4, 1e-3} (20 points) sampled ``hp_num_samples=2`` times under Ray Tune
(classifier.py), i.e. the "~100 hyperparameter searches of 40 trials" of REFERENCE §8. ASHA stops many trials
early; each trial still counts as one training here."""

def _study_specs(study: StudyConfig):
    from biastransfer.runner.execute import expand_study

    return expand_study(study)


def our_protocol_trainings(study: StudyConfig) -> dict[str, int]:
    """Trainings ``run_study`` needs for ``study`` from an empty store and cache, as the runner plans them:
    every run once, every distinct trained base once, and one grid search (``|lr| × |weight decay| × hp_seeds``
    trainings) per distinct (base, task, N, training settings) among experiments that need hyperparameters.
    (Experiments that search inside their runs, like ``underrepresentation``, are not counted here.)"""
    from biastransfer.experiments.base import EXPERIMENTS
    from biastransfer.runner.spec import content_key

    specs = _study_specs(study)
    bases = {content_key({"base": s.base, "arch": s.arch, "data": s.dataset, "training": s.base_training})
             for s in specs if s.base.get("kind") == "trained"}
    searches = {content_key(s.hparam_key()): s for s in specs if EXPERIMENTS.get(s.kind).needs_hparams}
    search_trainings = sum(len(s.train["lr"]) * len(s.train["weight_decay"]) * s.train["hp_seeds"]
                           for s in searches.values())
    return {"runs": len(specs), "bases": len(bases), "searches": len(searches),
            "search_trainings": search_trainings, "total": len(specs) + len(bases) + search_trainings}


def original_protocol_settings(study: StudyConfig) -> set[tuple]:
    """The settings the original protocol searched hyperparameters for: one per (base, task, intervention,
    level, N) — the finetuning set — with no reuse across levels or experiments. A salience run's level (1 for
    the X = a set, 0 for the inverse set) makes the two sets two settings, as in the original (``celeba_X&Male``
    and ``celeba_X&Male&`` were searched separately)."""
    return {(json.dumps(s.base, sort_keys=True), s.task, s.intervention, str(s.level), s.n_train)
            for s in _study_specs(study)}


def original_protocol_trainings(study: StudyConfig, trials: int = ORIGINAL_TRIALS) -> int:
    """Trainings the original protocol would run for the grid of ``study``.

    Assumptions (documented in BENCHMARKS.md): every run of the grid is one training, as ours; every setting
    (:func:`original_protocol_settings`) gets its own ``trials``-trial search (40: the 20-point lr × wd grid
    sampled twice); every trained base is one search plus one training (main.py trains each base with
    ``hp_search`` first). This follows the brief's "no reuse" reading; the original code did reuse one search
    across the 11 levels of its constant-N sweeps (main.py, bias_type 1, part 1), not in its other experiments.
    """
    specs = _study_specs(study)
    trained_bases = {json.dumps({"base": s.base, "arch": s.arch}, sort_keys=True)
                     for s in specs if s.base.get("kind") == "trained"}
    return len(specs) + trials * len(original_protocol_settings(study)) + (trials + 1) * len(trained_bases)

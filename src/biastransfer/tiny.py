"""``--tiny``: any study shrunk to a smoke run that exercises every block in a minute or two on 2 CPU cores.

The shrinking works on the study's raw mapping (before validation), so the shrunk study is validated, keyed and
stored like any other; its runs never share keys with the full study's (the data, sizes and budgets differ).
Study-wide settings shrink here; each dataset shrinks its own parameters
(:meth:`~biastransfer.data.registry.DatasetSource.tiny_params`) and each experiment kind its own block
(:meth:`~biastransfer.experiments.base.Experiment.tiny_block`), so a new dataset or kind brings its own rule.

A tiny run is for checking that a study runs end to end (its files, bases, blocks and report); its numbers
are not evidence of anything.
"""

from __future__ import annotations

import copy
from typing import Any

#: Study-wide budgets of a tiny run.
TINY_RESOLUTION = 16
TINY_EPOCHS = 2
TINY_BASE_EPOCHS = 1
TINY_BASE_EXAMPLES = 600
TINY_TEST_SIZE = 200


def _first(values: Any) -> Any:
    return values[:1] if isinstance(values, list) and values else values


def shrink_study(data: dict[str, Any]) -> dict[str, Any]:
    """The tiny version of a study mapping (a deep copy; ``data`` is not changed).

    * name ``NAME-tiny``; images at most 16×16; each dataset's (``dataset`` and ``datasets``) own
      :meth:`tiny_params`;
    * training: the first learning rate and weight decay only (a 1 × 1 grid trains no search), at most 2
      epochs, patience 1, one search seed;
    * bases: 1 epoch on at most 600 examples; test sets of at most 200 examples;
    * every experiment block shrunk by its kind's :meth:`tiny_block`.

    Unknown dataset names or kinds are left as they are, so validation reports them as for the full study.
    """
    from biastransfer import plugins  # noqa: F401  (every dataset and experiment kind registered)
    from biastransfer.data.registry import DATASETS
    from biastransfer.experiments.base import EXPERIMENTS

    out = copy.deepcopy(data)
    out["name"] = f"{out.get('name', 'study')}-tiny"
    out.pop("estimated_minutes", None)
    extra = out.get("datasets")
    for dataset in [out.setdefault("dataset", {}), *(extra.values() if isinstance(extra, dict) else ())]:
        if isinstance(dataset, dict):
            dataset["resolution"] = min(int(dataset.get("resolution", 32)), TINY_RESOLUTION)
            name = dataset.get("name", "synthetic")
            if name in DATASETS:
                dataset["params"] = DATASETS.get(name)().tiny_params(dict(dataset.get("params") or {}))
    train = out.setdefault("train", {})
    if isinstance(train, dict):
        for key in ("lr", "weight_decay"):
            if key in train:
                train[key] = _first(train[key])
        train["max_epochs"] = min(int(train.get("max_epochs", TINY_EPOCHS)), TINY_EPOCHS)
        train["patience"] = 1
        train["hp_seeds"] = 1
    base = out.setdefault("base_training", {})
    if isinstance(base, dict):
        base["epochs"] = TINY_BASE_EPOCHS
        base["max_examples"] = min(int(base.get("max_examples") or TINY_BASE_EXAMPLES), TINY_BASE_EXAMPLES)
    evaluation = out.setdefault("evaluation", {})
    if isinstance(evaluation, dict):
        evaluation["test_size"] = min(int(evaluation.get("test_size", TINY_TEST_SIZE)), TINY_TEST_SIZE)
    blocks = out.get("experiments")
    if isinstance(blocks, list):
        out["experiments"] = [
            EXPERIMENTS.get(b["kind"]).tiny_block(b) if isinstance(b, dict) and b.get("kind") in EXPERIMENTS else b
            for b in blocks]
    return out

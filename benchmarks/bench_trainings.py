"""``trainings_ratio``: trainings the demo study runs over those the original protocol would run (:mod:`protocol`).

The package is imported here only when a benchmark needs a study, so that ``run.py --compile-probe`` imports no
more of it than the engine (its first run would otherwise be measured without those imports)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench_common import DETAILS, emit

if TYPE_CHECKING:
    from biastransfer.plan import Study


def bundled_study(name: str) -> Study:
    """A study file shipped with the package (``biastransfer/studies/NAME``), validated."""
    from importlib import resources

    from biastransfer.plan import load_study

    with resources.as_file(resources.files("biastransfer.studies") / name) as path:
        return load_study(path)


def bench_trainings() -> None:
    from protocol import original_protocol_settings, original_protocol_trainings, our_protocol_trainings

    study = bundled_study("demo.yaml")
    ours = our_protocol_trainings(study)
    original = original_protocol_trainings(study)
    DETAILS["trainings"] = {"demo": ours, "original": original,
                            "original_settings": len(original_protocol_settings(study))}
    emit("trainings_demo", ours["total"])
    emit("trainings_original_protocol", original)
    emit("trainings_ratio", ours["total"] / original, "{:.4f}")

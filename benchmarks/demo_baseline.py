"""Time a bundled study on this checkout and on the code of an earlier commit, in one sitting.

Used by ``run.py`` for ``demo_seconds`` and its baseline (the engine before the speed issue, commit
:data:`BASELINE_REV`). The earlier code is exported with ``git archive`` into a temporary folder and put first on
``PYTHONPATH`` of its subprocess, so the installed package is not touched; both sides run the same command
(``run <study.yaml> --out --cache-dir --quiet``) on the same study file, each with a fresh output folder and a
fresh cache (data generation and base training included), and their result stores are compared run by run.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

BASELINE_REV = "c8d2fc8"
"""The last commit before the speed issue's changes (``d54b1f4`` is the first): the foundation engine, whose
evaluation ran in batches of 1024, with the phase-by-phase runner."""

_BASELINE_FIXES = [
    # (file, old text, new text, applied only if this module is missing). c8d2fc8's plugins.py imports a module
    # that was only committed with d54b1f4; without the fix the package does not import (the demo does not use it).
    ("src/biastransfer/plugins.py", "from biastransfer.experiments import finetune, salience, underrepresentation",
     "from biastransfer.experiments import finetune, salience", "src/biastransfer/experiments/underrepresentation.py"),
]


def export_source(rev: str, dest: Path) -> Path:
    """``src/`` of ``rev`` under ``dest``; returns the folder to put on PYTHONPATH."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "src.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "src"], stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    for relative, old, new, missing in _BASELINE_FIXES:
        path = dest / relative
        text = path.read_text()
        if old in text and not (dest / missing).exists():
            path.write_text(text.replace(old, new))
    return dest / "src"


@dataclass
class StudyTiming:
    label: str
    seconds: float
    returncode: int
    out_dir: Path
    load_before: float
    load_after: float
    stderr: str = ""
    last_run: dict[str, Any] = field(default_factory=dict)


def time_study(label: str, study: Path, work: Path, *, pythonpath: Path | None = None,
               workers: str = "auto") -> StudyTiming:
    """Run ``study`` from an empty output folder and cache in a subprocess; wall seconds and the store's meta."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    out, cache = work / label / "out", work / label / "cache"
    cmd = [sys.executable, "-c", "from biastransfer.cli import app; app()", "run", str(study), "--out", str(out),
           "--cache-dir", str(cache), "--quiet", "--workers", workers]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    timing = StudyTiming(label, seconds, proc.returncode, out, load_before, os.getloadavg()[0], proc.stderr[-2000:])
    if proc.returncode == 0:
        with sqlite3.connect(out / "results.db") as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = 'last_run'").fetchone()
        timing.last_run = json.loads(row[0]) if row else {}
    return timing


_ADDED_FIELDS = {"intervention_options": {}}
"""Spec fields added after the baseline, with the default at which a run is the baseline's run."""


def _normalised_spec(spec: dict[str, Any]) -> str:
    """A spec without the fields that were added later, where they hold the defaults that leave keys unchanged
    (``train.compile``/``train.precision`` of the speed issue, ``intervention_options`` of 0.2)."""
    train = {k: v for k, v in spec.get("train", {}).items() if k not in ("compile", "precision")}
    rest = {k: v for k, v in spec.items() if not (k in _ADDED_FIELDS and v == _ADDED_FIELDS[k])}
    return json.dumps({**rest, "train": train}, sort_keys=True)


def compare_results(a: Path, b: Path) -> dict[str, Any]:
    """Runs of two stores matched by spec: how many match, and the largest difference of any numeric result."""
    def load(out: Path) -> dict[str, dict[str, Any]]:
        with sqlite3.connect(out / "results.db") as conn:
            return {_normalised_spec(json.loads(spec)): json.loads(result)
                    for spec, result in conn.execute("SELECT spec, result FROM runs")}

    ra, rb = load(a), load(b)
    common = ra.keys() & rb.keys()
    skip = {"seconds", "fit_seconds"}
    worst = 0.0
    for key in common:
        for name, value in ra[key].items():
            other = rb[key].get(name)
            if name in skip or not isinstance(value, int | float) or not isinstance(other, int | float):
                continue
            if math.isnan(value) or math.isnan(other):
                worst = worst if math.isnan(value) and math.isnan(other) else math.inf
                continue
            worst = max(worst, abs(float(value) - float(other)))
    return {"runs_a": len(ra), "runs_b": len(rb), "matched": len(common), "max_abs_difference": worst}

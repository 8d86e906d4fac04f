"""The training path of every experiment kind, against the committed runs that the goldens are rendered from.

Each kind's tiny study (the plugin's ``example`` block) is trained again, as ``make_stores.py`` trained it, and
compared with ``tests/fixtures/stores/<kind>.db``:

* the **run keys** must be the same set (a change of keys or of the tiny study means the committed stores, and the
  goldens rendered from them, are out of date: regenerate them);
* every number a run stores that does not depend on training (counts, levels, sizes, names) must be equal;
* every number that does (AUC, rates, gaps, losses, thresholds …) must lie within the **run-to-run spread**: on
  another CPU or thread count, float sums run in another order and a training goes another way, at worst as it
  would with another seed. With σ the standard deviation the number shows across the seeds of one setting in the
  committed runs (pooled over settings), the difference of two such draws has standard deviation √2·σ and mean
  absolute value 2σ/√π ≈ 1.13σ. So the mean absolute difference over the kind's runs must stay within
  1.5·√2·σ ≈ 2.1σ, and no single run may differ by more than 4·√2·σ plus the number's smallest step. A number
  equal on every seed of every setting does not depend on training and must not change, except the epoch counts
  of early stopping (:data:`TRAINED_COUNTS`), which may move by one.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from biastransfer import plugins  # noqa: F401
from biastransfer.experiments.base import EXPERIMENTS
from tiny_study import kind_study_dict

pytestmark = pytest.mark.slow
STORES = Path(__file__).resolve().parents[1] / "fixtures" / "stores"
#: Result fields that measure time, not the model.
TIMING = ("seconds", "fit_seconds", "search_seconds")
#: Whole numbers that training decides (early stopping), equal on every seed of a tiny study by chance.
TRAINED_COUNTS = ("best_epoch", "epochs")
SQRT2 = math.sqrt(2)


def _runs(db: Path) -> dict[str, dict]:
    if not db.is_file():
        raise FileNotFoundError(f"{db} is missing: run `python tests/fixtures/stores/make_stores.py`")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT key, spec, result, provenance FROM runs").fetchall()
    finally:
        con.close()
    return {k: {"spec": json.loads(s), "result": json.loads(r), "provenance": json.loads(p)} for k, s, r, p in rows}


def _flat(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    if isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return {f"{prefix}{i}": v for i, v in enumerate(value)}
    return {prefix.rstrip("."): value}


def _numbers(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in _flat(result).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k.split(".")[-1] not in TIMING}


def _setting(spec: dict) -> str:
    return json.dumps({k: v for k, v in spec.items() if k != "seed"}, sort_keys=True)


def seed_spread(runs: dict[str, dict]) -> dict[str, float]:
    """For each number: its standard deviation across the seeds of one setting, pooled over the settings with
    two or more seeds (√ of the mean within-setting variance); the standard deviation over all runs where no
    setting has two seeds."""
    by_setting: dict[str, list[dict[str, float]]] = defaultdict(list)
    for run in runs.values():
        by_setting[_setting(run["spec"])].append(_numbers(run["result"]))
    fields = {f for rows in by_setting.values() for row in rows for f in row}
    out: dict[str, float] = {}
    for field in fields:
        variances = []
        for rows in by_setting.values():
            values = [r[field] for r in rows if field in r and math.isfinite(r[field])]
            if len(values) >= 2:
                variances.append(float(np.var(values, ddof=1)))
        if variances:
            out[field] = math.sqrt(float(np.mean(variances)))
        else:
            values = [r[field] for rows in by_setting.values() for r in rows if math.isfinite(r.get(field, math.nan))]
            out[field] = float(np.std(values, ddof=1)) if len(values) >= 2 else 0.0
    return out


def compare(stored: dict[str, dict], new: dict[str, dict]) -> list[str]:
    """What differs beyond the run-to-run spread (empty: the training path holds); see the module's docstring."""
    spread = seed_spread(stored)
    problems: list[str] = []
    deviations: dict[str, list[float]] = defaultdict(list)
    for key, run in stored.items():
        old, now = _numbers(run["result"]), _numbers(new[key]["result"])
        if set(old) != set(now):
            problems.append(f"{key}: fields differ: {sorted(set(old) ^ set(now))}")
            continue
        for field, a in old.items():
            b = now[field]
            if math.isnan(a) or math.isnan(b):
                if math.isnan(a) != math.isnan(b):
                    problems.append(f"{key}: {field} {a} → {b}")
                continue
            sd = spread.get(field, 0.0)
            if sd == 0.0:  # the same on every seed of every setting: does not depend on training
                moved = abs(a - b) <= 1 if field.split(".")[-1] in TRAINED_COUNTS else math.isclose(
                    a, b, rel_tol=1e-9, abs_tol=1e-12)
                if not moved:
                    problems.append(f"{key}: {field} {a} → {b} (equal on every seed, so it must not change)")
                continue
            deviations[field].append(abs(a - b))
            if abs(a - b) > 4 * SQRT2 * sd + _step(a, b):
                problems.append(f"{key}: {field} {a:.6g} → {b:.6g}, beyond 4·√2 seed SDs ({4 * SQRT2 * sd:.3g})")
    for field, values in deviations.items():
        if float(np.mean(values)) > 1.5 * SQRT2 * spread[field]:
            problems.append(f"{field}: mean |difference| {np.mean(values):.3g} over {len(values)} runs exceeds "
                            f"1.5·√2 seed-to-seed SDs ({1.5 * SQRT2 * spread[field]:.3g})")
    return problems


def _step(a: float, b: float) -> float:
    """A number's smallest step where it is a whole count (an epoch), else 0."""
    return 1.0 if float(a).is_integer() and float(b).is_integer() else 0.0


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("training-path-cache")


@pytest.mark.parametrize("kind", EXPERIMENTS.names())
def test_the_tiny_study_trains_to_its_committed_runs(kind: str, tmp_path: Path, cache: Path) -> None:
    import torch

    from biastransfer.cli import app

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(kind_study_dict(kind)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, ["run", str(study), "--out", str(tmp_path / "out"), "--quiet", "--workers",
                                          "1", "--cache-dir", str(cache), "--no-report"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    stored, new = _runs(STORES / f"{kind}.db"), _runs(tmp_path / "out" / "results.db")
    assert set(new) == set(stored), (
        f"the run keys of {kind}'s tiny study changed: regenerate the committed stores with "
        f"`python tests/fixtures/stores/make_stores.py {kind}` and the goldens with `pytest -n0 --inline-snapshot=fix`")
    assert compare(stored, new) == []


def test_compare_flags_a_number_beyond_the_spread_and_a_changed_count() -> None:
    """The comparison bites: a metric moved by 6 seed SDs (beyond 4·√2), or a count changed, is reported."""
    stored = _runs(STORES / "inheritance.db")
    moved = json.loads(json.dumps(stored))
    key = next(iter(moved))
    sd = seed_spread(stored)["auc"]
    moved[key]["result"]["auc"] += 6 * sd
    assert any("auc" in p for p in compare(stored, moved))
    counted = json.loads(json.dumps(stored))
    counted[key]["result"]["count_a0"] += 1
    assert any("count_a0" in p for p in compare(stored, counted))
    assert compare(stored, json.loads(json.dumps(stored))) == []

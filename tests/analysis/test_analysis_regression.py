"""The mixed-effects regression recovers a known slope; too few attributes gives None with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_builders import inheritance_runs, salience_runs

from biastransfer.analysis.regression import (
    inheritance_regression,
    inheritance_regression_with_reason,
    regression_data,
)

TRUE = {"Intercept": 0.02, "correlation": 0.40, "salience": 0.30}


def synthetic(n_attr: int = 14, seed: int = 7, with_salience: bool = True) -> pd.DataFrame:
    """Inherited bias = 0.02 + 0.40·|2c − 1| + 0.30·salience + attribute effect + noise."""
    rng = np.random.default_rng(seed)
    values: dict[tuple[str, str], tuple[float, float]] = {}
    levels: dict[str, float] = {}
    saliences: dict[str, float] = {}
    for j in range(n_attr):
        task = f"attr{j:02d}"
        natural = float(rng.choice([rng.uniform(0.05, 0.4), rng.uniform(0.6, 0.95)]))
        sal = float(rng.uniform(0.2, 0.8))
        u = rng.normal(0, 0.01)
        levels[task], saliences[task] = natural, sal
        bias = {}
        for label, c in (("natural", natural), ("0.8", 0.8)):
            bias[label] = (
                TRUE["Intercept"]
                + TRUE["correlation"] * abs(2 * c - 1)
                + TRUE["salience"] * sal
                + u
                + rng.normal(0, 0.004)
            )
        sign = 1.0 if natural >= 0.5 else -1.0
        values[(task, "control-hat")] = (sign * 0.10, 0.10)
        values[(task, "control-bangs")] = (sign * 0.06, 0.06)
        values[(task, "gendered")] = (sign * (0.10 + bias["natural"]), 0.10 + bias["0.8"])
    runs = inheritance_runs(values, levels=levels)
    if with_salience:
        runs = pd.concat([runs, salience_runs(saliences)], ignore_index=True)
    return runs


def test_regression_recovers_known_coefficients() -> None:
    res = inheritance_regression(synthetic())
    assert res is not None
    assert res["n_obs"] == 28 and res["n_groups"] == 14
    assert res["formula"] == "inherited_bias ~ correlation + salience + (1 | task)"
    for term, truth in TRUE.items():
        c = res["coefficients"][term]
        assert c["coef"] == pytest.approx(truth, abs=0.05), term
        assert c["low"] < truth < c["high"], term
    assert res["coefficients"]["correlation"]["p"] < 0.05
    assert res["coefficients"]["salience"]["p"] < 0.05


def test_regression_data_definition() -> None:
    data = regression_data(synthetic(n_attr=3))
    assert len(data) == 6
    row = data.iloc[0]
    assert row["correlation"] == pytest.approx(abs(2 * row["level"] - 1))
    # inherited bias = |gendered| − max |control| = (0.10 + bias) − 0.10 = bias > 0
    assert (data["inherited_bias"] > 0).all()


def test_too_few_attributes_returns_none_with_reason() -> None:
    assert inheritance_regression(synthetic(n_attr=2)) is None
    res, reason = inheritance_regression_with_reason(synthetic(n_attr=2))
    assert res is None and "too few attributes (2" in reason
    res, reason = inheritance_regression_with_reason(synthetic(n_attr=3).query("base != 'gendered'"))
    assert res is None and "Gendered" in reason


def test_without_salience_runs_fits_correlation_only() -> None:
    res = inheritance_regression(synthetic(with_salience=False))
    assert res is not None
    assert "salience" not in res["coefficients"]
    assert "without the salience term" in res["note"]

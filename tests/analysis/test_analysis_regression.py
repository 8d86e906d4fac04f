"""The mixed-effects regression recovers a known slope; too few attributes gives None with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from analysis_builders import inheritance_runs, salience_runs

from biastransfer.experiments.inheritance import Inheritance
from biastransfer.experiments.inheritance.regression import (
    MIN_ATTRIBUTES,
    inheritance_regression,
    inheritance_regression_with_reason,
    regression_data,
)
from biastransfer.experiments.salience import salience_table

TRUE = {"Intercept": 0.02, "correlation": 0.40, "salience": 0.30}


def synthetic(n_attr: int = 14, seed: int = 7, with_salience: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inheritance runs and salience runs (empty when ``with_salience`` is False) with
    inherited bias = 0.02 + 0.40·|2c − 1| + 0.30·salience + attribute effect + noise."""
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
    inh = inheritance_runs(values, levels=levels)
    sal = salience_runs(saliences) if with_salience else pd.DataFrame()
    return inh, sal


def inputs(inh: pd.DataFrame, sal: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the regression takes: the inheritance aggregate and the salience table."""
    return Inheritance().aggregate(inh), salience_table(sal)


def fit_inputs(**kw: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    return inputs(*synthetic(**kw))


def test_regression_recovers_known_coefficients() -> None:
    res = inheritance_regression(*fit_inputs())
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
    data = regression_data(*fit_inputs(n_attr=3), "strength")
    assert len(data) == 6
    row = data.iloc[0]
    assert row["correlation"] == pytest.approx(abs(2 * row["level"] - 1))
    # inherited bias = |biased| − max |control| = (0.10 + bias) − 0.10 = bias > 0
    assert (data["inherited_bias"] > 0).all()
    assert data["salience"].notna().all()
    raw = regression_data(*fit_inputs(n_attr=3), "raw")
    assert raw["correlation"].tolist() == pytest.approx(raw["level"].tolist())


def test_too_few_attributes_returns_none_with_reason() -> None:
    assert MIN_ATTRIBUTES == 3
    assert inheritance_regression(*fit_inputs(n_attr=2)) is None
    res, reason = inheritance_regression_with_reason(*fit_inputs(n_attr=2))
    assert res is None and "too few attributes (2" in reason
    inh, sal = synthetic(n_attr=3)
    res, reason = inheritance_regression_with_reason(*inputs(inh.query("base_role != 'biased'"), sal))
    assert res is None and "need a biased and a control base" in reason


def test_without_salience_runs_fits_correlation_only() -> None:
    res = inheritance_regression(*fit_inputs(with_salience=False))
    assert res is not None
    assert "salience" not in res["coefficients"]
    assert "without the salience term" in res["note"]

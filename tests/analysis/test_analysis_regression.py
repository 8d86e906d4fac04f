"""The inheritance regression: the paper's ratio (signed, clamped as the original), nominal covariates, Student-t
inference with between-within df, refusals, and fit warnings that reach the result."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from analysis_builders import run_row
from scipy import stats

from biastransfer.experiments.inheritance import Inheritance, _regression_line
from biastransfer.experiments.inheritance import regression as reg
from biastransfer.experiments.inheritance.regression import (
    RATIO_OPPOSITE,
    bias_ratio,
    inheritance_regression,
    inheritance_regression_with_reason,
    regression_data,
)

TRUE = {"Intercept": 0.5, "correlation": 4.0, "salience": 2.0}
CONTROL = 0.1  # signed FPR difference of the most biased control (the other control is below it)


def agg_row(task: str, label: str, level: float, base: str, role: str, fpr: float,
            intervention: str = "collect") -> dict[str, object]:
    return {"experiment": "inh", "task": task, "level_label": label, "level": level, "intervention": intervention,
            "n_train": 256, "base": base, "base_role": role, "n_seeds": 5, "fpr_diff_mean": fpr,
            "fpr_diff_low": fpr - 0.01, "fpr_diff_high": fpr + 0.01}


def observation(task: str, label: str, level: float, ratio: float, **kw: str) -> list[dict[str, object]]:
    """Aggregated rows of one (task, level) whose biased/control ratio of signed FPR differences is ``ratio``:
    the signed values are multiplied by d = sign(c − 0.5) to give the (a=1 − a=0) means the runs record."""
    c = float(label) if label != "natural" else round(level, 2)
    d = 1.0 if c > 0.5 else -1.0
    return [agg_row(task, label, level, "gendered", "biased", d * ratio * CONTROL, **kw),
            agg_row(task, label, level, "control-t0", "control", d * CONTROL, **kw),
            agg_row(task, label, level, "control-t2", "control", d * CONTROL / 2, **kw),
            agg_row(task, label, level, "scratch", "scratch", 0.0, **kw)]


Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def study(n_attr: int = 8, levels: tuple[str, ...] = ("natural", "0.8", "0.65"), seed: int = 3,
          naturals: list[float] | None = None, noise: float = 0.05, u_sd: float = 0.2) -> Frames:
    """(aggregate, salience table, the expected observations): ratio = β·(1, |c − 0.5|, salience) + u_j + ε."""
    rng = np.random.default_rng(seed)
    rows, sal, expected = [], [], []
    for j in range(n_attr):
        task = f"x{j}"
        natural = naturals[j] if naturals else float(rng.choice([0.2, 0.3, 0.35, 0.6, 0.7, 0.9]))
        salience = float(rng.uniform(0.3, 0.8))
        u = rng.normal(0, u_sd)
        sal.append({"task": task, "salience_mean": salience})
        for label in levels:
            c = round(natural, 2) if label == "natural" else float(label)
            ratio = (TRUE["Intercept"] + TRUE["correlation"] * abs(c - 0.5) + TRUE["salience"] * salience + u
                     + rng.normal(0, noise))
            rows += observation(task, label, natural if label == "natural" else float(label), ratio)
            expected.append({"task": task, "level_label": label, "correlation": abs(c - 0.5),
                             "salience": salience, "bias_ratio": ratio})
    return pd.DataFrame(rows), pd.DataFrame(sal), pd.DataFrame(expected).sort_values(["task", "level_label"])


def in_order(data: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` of ``data`` in (task, level_label) order, as :func:`study` sorts its expected observations."""
    return data.sort_values(["task", "level_label"])[column].to_numpy(dtype=float)


def test_reproduces_mixedlm_with_hand_t_intervals() -> None:
    agg, sal, expected = study()
    res = inheritance_regression(agg, sal)
    assert res is not None and res["n_obs"] == 24 and res["n_groups"] == 8
    assert res["formula"] == "bias_ratio ~ correlation + salience + (1 | task)"
    fit = smf.mixedlm("bias_ratio ~ correlation + salience", expected, groups=expected["task"]).fit(reml=True)
    # between-within df: correlation varies within attributes (24 − 8 − 1); intercept and salience do not (8 − 2)
    dfs = {"Intercept": 6, "correlation": 15, "salience": 6}
    for term, c in res["coefficients"].items():
        coef, se = float(fit.fe_params[term]), float(fit.bse_fe[term])
        q = stats.t.ppf(0.975, dfs[term])
        assert c["coef"] == pytest.approx(coef, rel=1e-6) and c["se"] == pytest.approx(se, rel=1e-6), term
        assert c["df"] == dfs[term]
        assert (c["low"], c["high"]) == pytest.approx((coef - q * se, coef + q * se), rel=1e-6), term
        assert c["p"] == pytest.approx(2 * stats.t.sf(abs(coef / se), dfs[term]), rel=1e-6), term
        assert c["low"] < TRUE[term] < c["high"], term
    # wider than the normal (Wald) interval statsmodels reports
    wald = fit.conf_int().loc["salience"]
    assert res["coefficients"]["salience"]["high"] - res["coefficients"]["salience"]["low"] > wald[1] - wald[0]
    assert res["converged"] is True and res["warnings"] == [] and res["dependent"] == "ratio"


def test_covariates_at_nominal_levels_and_signed_dependent() -> None:
    # natural level 0.203 (towards a=0) records noise: the covariate uses 0.20, so |0.20 − 0.5| = 0.30
    rows = observation("x0", "natural", 0.203, 3.0) + observation("x0", "0.8", 0.8, 2.0)
    data, notes = regression_data(pd.DataFrame(rows), pd.DataFrame({"task": ["x0"], "salience_mean": [0.7]}))
    nat, high = (data.set_index("level_label").loc[lb] for lb in ("natural", "0.8"))
    assert (nat["level"], nat["direction"], high["direction"]) == (0.2, -1.0, 1.0)
    assert nat["correlation"] == pytest.approx(0.3) and high["correlation"] == pytest.approx(0.3)
    # recorded a=1 − a=0 means are −0.3 (biased) and −0.1 (control) towards a=0: signed +0.3 and +0.1
    assert nat["biased_signed"] == pytest.approx(0.3) and nat["control_signed"] == pytest.approx(CONTROL)
    assert nat["bias_ratio"] == pytest.approx(3.0) and nat["bias_difference"] == pytest.approx(0.2)
    assert nat["control_base"] == "control-t0" and nat["salience"] == 0.7 and notes == []


def test_ratio_clamping_rule_of_the_original() -> None:
    assert bias_ratio(-0.1, 0.2) == (0.0, "b<0<k")
    assert bias_ratio(0.1, -0.2) == (RATIO_OPPOSITE, "k<0<b") and RATIO_OPPOSITE == 5.0
    assert bias_ratio(-0.2, -0.1) == (pytest.approx(2.0), "b/k")  # both against the direction: positive ratio
    assert bias_ratio(0.3, 0.1) == (pytest.approx(3.0), "b/k")
    assert bias_ratio(0.0, 0.1) == (0.0, "b/k")
    r, rule = bias_ratio(0.1, 0.0)
    assert math.isnan(r) and rule == "k=0"


def test_max_control_is_the_largest_signed_value_and_edges_are_noted() -> None:
    rows = [agg_row("x0", "0.8", 0.8, "gendered", "biased", 0.2),
            agg_row("x0", "0.8", 0.8, "control-t0", "control", 0.05),
            agg_row("x0", "0.8", 0.8, "control-t2", "control", -0.4),   # larger |·| but against the direction
            agg_row("x1", "0.8", 0.8, "gendered", "biased", -0.1),
            agg_row("x1", "0.8", 0.8, "control-t0", "control", 0.1),
            agg_row("x2", "0.8", 0.8, "gendered", "biased", 0.1),
            agg_row("x2", "0.8", 0.8, "control-t0", "control", 0.0),
            agg_row("x3", "0.8", 0.8, "gendered", "biased", 0.1),
            agg_row("x3", "0.8", 0.8, "control-t0", "control", 0.005),
            agg_row("x4", "0.5", 0.5, "gendered", "biased", 0.1),
            agg_row("x4", "0.5", 0.5, "control-t0", "control", 0.1),
            agg_row("x5", "natural", 0.8, "gendered", "biased", 0.1, intervention="natural"),
            agg_row("x5", "natural", 0.8, "control-t0", "control", 0.1, intervention="natural")]
    data, notes = regression_data(pd.DataFrame(rows), pd.DataFrame())
    by = data.set_index("task")
    assert by.loc["x0", "control_base"] == "control-t0" and by.loc["x0", "bias_ratio"] == pytest.approx(4.0)
    assert (by.loc["x1", "bias_ratio"], by.loc["x1", "ratio_rule"]) == (0.0, "b<0<k")
    assert math.isnan(by.loc["x2", "bias_ratio"]) and by.loc["x2", "bias_difference"] == pytest.approx(0.1)
    assert by.loc["x3", "bias_ratio"] == pytest.approx(20.0)
    assert set(data["task"]) == {"x0", "x1", "x2", "x3"}  # x4: c = P(a=1); x5: unbalanced sampler
    text = " | ".join(notes)
    for part in ("sampler(s) natural", "no direction: x4 (0.5)", "is 0): x2 (0.8)", "< 0.01 (mostly noise): x3",
                 "clamped", "x1 (0.8) → 0"):
        assert part in text, part


def test_refuses_a_covariate_that_only_noise_makes_vary() -> None:
    # every set at strength 0.3 (natural 0.8 or 0.2 with sampling noise, and 0.8): as the demo's tasks
    naturals = [0.81, 0.79, 0.203, 0.8, 0.196, 0.82, 0.8, 0.2]
    res, reason = inheritance_regression_with_reason(*study(naturals=naturals, levels=("natural", "0.8"))[:2])
    assert res is None and "the correlation covariate does not vary" in reason and "0.29–0.32" in reason
    agg, sal, _ = study()
    sal["salience_mean"] = 0.6
    res, reason = inheritance_regression_with_reason(agg, sal)
    assert res is None and "the salience covariate does not vary" in reason


def test_refuses_too_few_observations_per_fixed_effect() -> None:
    naturals = [0.2, 0.3, 0.6, 0.7, 0.9, 0.35]
    agg, sal, _ = study(n_attr=6, levels=("natural", "0.8"), naturals=naturals)
    assert inheritance_regression(agg, sal) is not None  # 12 observations, 3 fixed effects: enough
    fewer = agg[~((agg["task"] == "x5") & (agg["level_label"] == "0.8"))]
    res, reason = inheritance_regression_with_reason(fewer, sal)
    assert res is None and "too few observations per fixed effect (11 observations for 3 fixed effects" in reason
    no_sal = fewer[fewer["task"] != "x5"]  # 10 observations, 2 fixed effects: enough without salience
    res, _ = inheritance_regression_with_reason(no_sal, pd.DataFrame())
    assert res is not None and "salience" not in res["coefficients"]
    assert "no salience runs" in " ".join(res["notes"])
    res, reason = inheritance_regression_with_reason(*study(n_attr=2, levels=("natural", "0.8", "0.65"))[:2])
    assert res is None and "too few attributes (2" in reason


def test_difference_form() -> None:
    agg, sal, expected = study()
    res = inheritance_regression(agg, sal, dependent="difference")
    assert res is not None and res["formula"].startswith("bias_difference ~")
    assert in_order(res["data"], "bias_difference") == pytest.approx(
        (expected["bias_ratio"] * CONTROL - CONTROL).to_numpy())
    with pytest.raises(ValueError, match="dependent"):
        inheritance_regression(agg, sal, dependent="log")  # type: ignore[arg-type]


def test_fit_warnings_and_convergence_reach_the_result_and_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    real_fit = MixedLM.fit

    def fit(self: MixedLM, *args: object, **kwargs: object) -> object:
        out = real_fit(self, *args, **kwargs)
        warnings.warn("The Hessian matrix at the estimated parameter values is not positive definite.",
                      ConvergenceWarning, stacklevel=1)
        out.converged = False
        return out

    monkeypatch.setattr(MixedLM, "fit", fit)
    agg, sal, _ = study()
    res = inheritance_regression(agg, sal)
    assert res is not None and res["converged"] is False
    assert res["warnings"] == ["ConvergenceWarning: The Hessian matrix at the estimated parameter values is not "
                               "positive definite."]
    line = _regression_line(res, None)
    assert "Unreliable: the fit did not converge; ConvergenceWarning: The Hessian" in line
    assert "t with 15 df" in line and line.startswith("Mixed-effects regression of the inherited-bias ratio")


def test_real_boundary_fit_warns() -> None:
    # no attribute effect: the attribute variance is estimated on the boundary at 0
    res = inheritance_regression(*study(u_sd=0.0, seed=4)[:2])
    assert res is not None
    assert "ConvergenceWarning: The MLE may be on the boundary of the parameter space." in res["warnings"]
    assert all(w.startswith("ConvergenceWarning: ") for w in res["warnings"])


def test_builder_runs_through_the_plugin_aggregate() -> None:
    agg, sal, expected = study()
    runs = pd.DataFrame([run_row(experiment="inh", task=r["task"], base=r["base"], base_role=r["base_role"],
                                 intervention=r["intervention"], level=r["level"], level_label=r["level_label"],
                                 n_train=256, seed=s, fpr_diff=r["fpr_diff_mean"])
                         for r in agg.to_dict("records") for s in range(2)])
    data, _ = regression_data(Inheritance().aggregate(runs), sal)
    assert in_order(data, "bias_ratio") == pytest.approx(expected["bias_ratio"].to_numpy())
    assert in_order(data, "correlation") == pytest.approx(expected["correlation"].to_numpy())
    assert reg.MIN_OBS_PER_FIXED == 4 and reg.MIN_ATTRIBUTES == 3

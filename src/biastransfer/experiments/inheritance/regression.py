"""Mixed-effects regression of inherited bias on correlation level and salience (paper §4.1, docs/protocols.md §3).

One observation per (attribute, finetuning level) of the inheritance experiment (the paper: 11 attributes ×
{natural level, 0.8} = 22 observations):

    inherited_bias = |FPR diff(biased)| − max_{control bases} |FPR diff(control)|

where each FPR difference is the mean over seeds (group a=1 minus group a=0; the magnitude makes the sign of
the correlation irrelevant). The model is

    inherited_bias_ij = β0 + β1 · correlation_ij + β2 · salience_j + u_j + ε_ij,   u_j ~ N(0, σ_u²)

with a random intercept ``u_j`` per attribute ``j`` (``statsmodels.formula.api.mixedlm``, REML). The
correlation covariate is the finetuning level ``c`` normalised to [0, 1] as the correlation *strength*
``|2c − 1|`` (0 = independent, 1 = perfectly correlated with either group; paper footnote 10), or optionally
``max(c, 1 − c)`` or the raw ``c``. Salience is the per-attribute mean from
:func:`biastransfer.experiments.salience.salience_table`; if no salience runs exist the model is fitted without
it (and says so). Confidence intervals are Wald 95% intervals from the fit.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from biastransfer.experiments.inheritance.analysis import inheritance_comparison

__all__ = [
    "MIN_ATTRIBUTES",
    "inheritance_regression",
    "inheritance_regression_with_reason",
    "regression_data",
]

log = logging.getLogger(__name__)

#: Fewer attributes than this and the random-intercept model is not fitted.
MIN_ATTRIBUTES = 3

LevelTransform = Literal["strength", "max", "raw"]


def _transform(level: pd.Series, how: LevelTransform) -> pd.Series:
    """Normalise correlation levels: ``strength`` = |2c − 1|, ``max`` = max(c, 1 − c), ``raw`` = c."""
    c = pd.to_numeric(level, errors="coerce").astype(float)
    if how == "strength":
        return (2.0 * c - 1.0).abs()
    if how == "max":
        return np.maximum(c, 1.0 - c)
    if how == "raw":
        return c
    raise ValueError(f"level_transform must be 'strength', 'max' or 'raw', got {how!r}")


def regression_data(agg_inh: pd.DataFrame, sal: pd.DataFrame,
                    level_transform: LevelTransform = "strength") -> pd.DataFrame:
    """The observations of the regression: ``task``, ``level_label``, ``level``, ``correlation``,
    ``salience`` (NaN when unknown) and ``inherited_bias``; one row per (task, level) comparison.

    ``agg_inh``: the inheritance runs aggregated over seeds; ``sal``: the salience table (may be empty)."""
    comp = inheritance_comparison(agg_inh) if not agg_inh.empty else pd.DataFrame()
    cols = ["task", "level_label", "level", "correlation", "salience", "inherited_bias"]
    if comp.empty:
        return pd.DataFrame(columns=cols)
    data = comp[["task", "level_label", "level", "inherited_bias"]].copy()
    data["task"] = data["task"].astype(str)
    data["correlation"] = _transform(data["level"], level_transform)
    if sal.empty:
        data["salience"] = math.nan
    else:
        lookup = dict(zip(sal["task"].astype(str), sal["salience_mean"], strict=True))
        data["salience"] = data["task"].map(lookup).astype(float)
    return data[cols].reset_index(drop=True)


def inheritance_regression_with_reason(
    agg_inh: pd.DataFrame, sal: pd.DataFrame, *, level_transform: LevelTransform = "strength"
) -> tuple[dict[str, Any] | None, str | None]:
    """Fit the regression; ``(result, None)`` or ``(None, reason)``. See :func:`inheritance_regression`."""
    import statsmodels.formula.api as smf

    data = regression_data(agg_inh, sal, level_transform)
    if data.empty:
        return None, "no inheritance comparisons (need a biased and a control base)"
    data = data.dropna(subset=["inherited_bias", "correlation"])
    terms = ["correlation"]
    note = None
    if data["salience"].notna().any():
        missing = sorted(data.loc[data["salience"].isna(), "task"].unique())
        data = data.dropna(subset=["salience"])
        terms.append("salience")
        if missing:
            note = f"attributes without salience runs dropped: {', '.join(missing)}"
    else:
        note = "no salience runs: fitted without the salience term"
    n_groups = data["task"].nunique()
    if n_groups < MIN_ATTRIBUTES:
        return None, f"too few attributes ({n_groups}; at least {MIN_ATTRIBUTES} needed)"
    for t in terms:
        if data[t].nunique() < 2:
            return None, f"the {t} covariate does not vary"
    if len(data) < len(terms) + 3:
        return None, f"too few observations ({len(data)})"
    formula = "inherited_bias ~ " + " + ".join(terms)
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            model = smf.mixedlm(formula, data, groups=data["task"])
            fit = model.fit(reml=True)
        caught = sorted({str(x.message).splitlines()[0] for x in w})
    except (np.linalg.LinAlgError, ValueError) as exc:
        return None, f"the fit failed: {exc}"
    ci = fit.conf_int(alpha=0.05)
    coefficients: dict[str, dict[str, float]] = {}
    for term in ["Intercept", *terms]:
        coefficients[term] = {
            "coef": float(fit.fe_params[term]),
            "se": float(fit.bse_fe[term]),
            "low": float(ci.loc[term, 0]),
            "high": float(ci.loc[term, 1]),
            "p": float(fit.pvalues[term]),
        }
    result: dict[str, Any] = {
        "formula": formula + " + (1 | task)",
        "n_obs": int(fit.nobs),
        "n_groups": int(n_groups),
        "groups": sorted(data["task"].unique()),
        "coefficients": coefficients,
        "group_var": float(fit.cov_re.iloc[0, 0]),
        "residual_var": float(fit.scale),
        "converged": bool(getattr(fit, "converged", True)),
        "level_transform": level_transform,
        "note": note,
        "warnings": caught,
        "data": data.reset_index(drop=True),
    }
    return result, None


def inheritance_regression(
    agg_inh: pd.DataFrame, sal: pd.DataFrame, *, level_transform: LevelTransform = "strength"
) -> dict[str, Any] | None:
    """Mixed-effects regression ``inherited bias ~ correlation + salience + (1 | attribute)``.

    Args:
        agg_inh: the inheritance runs aggregated over seeds.
        sal: the salience table of the study (empty: fitted without the salience term).
        level_transform: how the correlation level ``c`` enters (``"strength"`` = |2c − 1| by default).

    Returns:
        ``None`` when it cannot be fitted (fewer than 3 attributes, no biased/control comparison, a constant
        covariate; the reason is logged, and returned by :func:`inheritance_regression_with_reason`).
        Otherwise a dict with ``formula``, ``n_obs``, ``n_groups``, ``groups``, ``coefficients`` (per term:
        ``coef``, ``se``, ``low``, ``high`` (Wald 95%), ``p``), ``group_var``, ``residual_var``,
        ``converged``, ``level_transform``, ``note``, ``warnings`` (messages raised by the fit) and ``data``
        (the observations).
    """
    result, reason = inheritance_regression_with_reason(agg_inh, sal, level_transform=level_transform)
    if result is None:
        log.info("inheritance regression not fitted: %s", reason)
    return result

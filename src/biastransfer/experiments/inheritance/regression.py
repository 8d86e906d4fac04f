"""Mixed-effects regression of inherited bias on correlation level and salience (paper §4.1, docs/protocols.md §3).

**Observations.** One per (attribute, finetuning level) of the inheritance runs, that is per group of aggregated
rows sharing every setting but the base (the paper: 11 attributes × {natural, 0.8} = 22 observations).

**Direction and covariates (nominal).** With ``c`` the level of the finetuning set (the nominal level as written,
e.g. 0.8; for ``natural`` the pool's recorded level rounded to :data:`LEVEL_DECIMALS` decimals) and ``p`` the
share of group a=1 in the set (``p = 1/2`` for the interventions marked ``balances``: ``collect``, ``subselect``
and ``reweight``, docs/protocols.md §2; runs do not record ``p`` for any other sampler, so such observations are
dropped)::

    direction  d = sign(c − p)         (+1: the correlation is towards a=1, −1: towards a=0; c = p: dropped)
    correlation  = |c − p|             (0 = independent, 1/2 = perfectly correlated in a balanced set)
    salience     = the attribute's mean salience (study's salience runs; no runs: the term is left out)

**Dependent variable.** Per base, ``s = d · m`` with ``m`` the mean FPR difference (a=1 − a=0) over seeds, so
``s > 0`` is a gap in the direction of the correlation (paper footnote 10). With ``b`` the biased base's ``s`` and
``k = max over control bases of s`` (the most biased control, signed, as the original takes it):

* ``ratio`` (the paper's, default)::

      ratio = 0       if b < 0 < k        (biased base against the direction, control along it)
              5       if k < 0 < b        (:data:`RATIO_OPPOSITE`; control against, biased along)
              b / k   otherwise           (so both negative gives a positive ratio, and a small k a large one)

  ``k = 0`` makes ``b / k`` undefined (the original divides anyway and gets ±inf or NaN); such observations are
  dropped and named. Observations with ``|k| <`` :data:`TINY_CONTROL` are named in a note: their ratio is
  dominated by the noise of ``k``.
* ``difference``: ``b − k``, no clamping.

**Model.** ``y_ij = β0 + β1·correlation_ij + β2·salience_j + u_j + ε_ij``, ``u_j ~ N(0, σ_u²)`` per attribute
``j`` (``statsmodels.formula.api.mixedlm``, REML). **Inference** is Student-t with between-within degrees of
freedom: a term that varies within some attribute (``correlation``) gets ``df = n_obs − n_attributes −
p_within``; a term constant within every attribute (``Intercept``, ``salience``) gets ``df = n_attributes −
p_between`` (``p_within``, ``p_between``: the number of fixed effects of each kind, the intercept counted as
between). Then ``low, high = β ∓ t_{0.975, df} · SE`` and ``p = 2 · P(T_df > |β / SE|)``, SE from the fit.

**Refusals** (no fit; the reason is returned): fewer than :data:`MIN_ATTRIBUTES` attributes; fewer than
:data:`MIN_OBS_PER_FIXED` observations per fixed effect (intercept included); a covariate that does not vary
(``correlation``: range below :data:`MIN_CORRELATION_RANGE`; ``salience``: one value); a df ≤ 0. Warnings of the
fit (convergence, Hessian not positive definite, boundary) and ``converged`` are part of the result.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from biastransfer.interventions.base import INTERVENTIONS

__all__ = [
    "MIN_ATTRIBUTES",
    "MIN_CORRELATION_RANGE",
    "MIN_OBS_PER_FIXED",
    "RATIO_OPPOSITE",
    "bias_ratio",
    "inheritance_regression",
    "inheritance_regression_with_reason",
    "regression_data",
    "t_inference",
]

log = logging.getLogger(__name__)

#: Fewer attributes than this and the random-intercept model is not fitted.
MIN_ATTRIBUTES = 3
#: Observations needed per fixed effect (intercept included).
MIN_OBS_PER_FIXED = 4
#: The correlation covariate must span at least this much (half the paper's level step of 0.1).
MIN_CORRELATION_RANGE = 0.05
#: Decimals of a natural level as a nominal value (the precision levels are written with).
LEVEL_DECIMALS = 2
#: The original's ratio when the biased base goes along the correlation and the most biased control against it.
RATIO_OPPOSITE = 5.0
#: A most-biased-control value smaller than this in magnitude is flagged (its ratio is mostly noise).
TINY_CONTROL = 0.01

Dependent = Literal["ratio", "difference"]
DEPENDENT_COLUMN = {"ratio": "bias_ratio", "difference": "bias_difference"}
_BASE_COLUMNS = ("base", "base_kind", "base_attribute", "base_role")
_STAT_SUFFIXES = ("_mean", "_low", "_high", "_n")
DATA_COLUMNS = ["task", "level_label", "level", "p_a1", "direction", "correlation", "salience", "biased_base",
                "biased_signed", "control_base", "control_signed", "bias_ratio", "ratio_rule", "bias_difference"]


def balances(sampler: str) -> bool:
    """Whether the registered intervention ``sampler`` draws sets balanced by group (P(a=1) = 1/2,
    docs/protocols.md §2; :attr:`~biastransfer.interventions.base.Intervention.balances`)."""
    return sampler in INTERVENTIONS and INTERVENTIONS.get(sampler).balances


def bias_ratio(biased: float, control: float) -> tuple[float, str]:
    """The original's ratio of signed FPR differences and which rule gave it: ``(0, "b<0<k")``,
    ``(5, "k<0<b")``, ``(b / k, "b/k")``, or ``(NaN, "k=0")`` when ``k = 0`` (or either is NaN)."""
    if math.isnan(biased) or math.isnan(control) or control == 0:
        return math.nan, "k=0" if control == 0 else "NaN"
    if biased < 0 < control:
        return 0.0, "b<0<k"
    if control < 0 < biased:
        return RATIO_OPPOSITE, "k<0<b"
    return biased / control, "b/k"


def _nominal_level(label: object, level: float) -> float:
    """The nominal level: the written one, or the recorded natural level rounded to LEVEL_DECIMALS."""
    try:
        return float(str(label))
    except ValueError:
        return round(float(level), LEVEL_DECIMALS) if not math.isnan(float(level)) else math.nan


def regression_data(agg_inh: pd.DataFrame, sal: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The observations (columns :data:`DATA_COLUMNS`) and notes on what was dropped or flagged.

    ``agg_inh``: the inheritance runs aggregated over seeds (``fpr_diff_mean``, ``base_role``); ``sal``: the
    salience table (may be empty). Groups without a biased and a control base are skipped silently."""
    notes: list[str] = []
    if agg_inh.empty or "fpr_diff_mean" not in agg_inh.columns:
        return pd.DataFrame(columns=DATA_COLUMNS), notes
    keys = [c for c in agg_inh.columns
            if c != "n_seeds" and c not in _BASE_COLUMNS and not c.endswith(_STAT_SUFFIXES)]
    lookup = {} if sal.empty else dict(zip(sal["task"].astype(str), sal["salience_mean"].astype(float),
                                           strict=True))
    records, unbalanced, independent, zero = [], set(), [], []
    grouped = agg_inh.groupby(keys, dropna=False, sort=True) if keys else [((), agg_inh)]
    for key, rows in grouped:
        rec = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        biased, controls = rows[rows["base_role"] == "biased"], rows[rows["base_role"] == "control"]
        if biased.empty or controls.empty:
            continue
        task, label = str(rec.get("task", "")), str(rec.get("level_label", ""))
        sampler = str(rec.get("intervention", ""))
        if not balances(sampler):
            unbalanced.add(sampler or "unknown")
            continue
        c, p = _nominal_level(label, float(rec.get("level", math.nan))), 0.5
        d = float(np.sign(c - p)) if not math.isnan(c) else math.nan
        if not d or math.isnan(d):
            independent.append(f"{task} ({label})")
            continue
        b_row = biased.sort_values("base").iloc[0]
        signed = {str(r["base"]): d * float(r["fpr_diff_mean"]) for _, r in controls.iterrows()}
        k_base = max(sorted(signed), key=lambda n: signed[n])
        b, k = d * float(b_row["fpr_diff_mean"]), signed[k_base]
        ratio, rule = bias_ratio(b, k)
        if rule == "k=0":
            zero.append(f"{task} ({label})")
        records.append({"task": task, "level_label": label, "level": c, "p_a1": p, "direction": d,
                        "correlation": abs(c - p), "salience": lookup.get(task, math.nan),
                        "biased_base": str(b_row["base"]), "biased_signed": b, "control_base": k_base,
                        "control_signed": k, "bias_ratio": ratio, "ratio_rule": rule, "bias_difference": b - k})
    if unbalanced:
        notes.append("observations dropped: sampler(s) " + ", ".join(sorted(unbalanced)) + " do not fix "
                     "P(a=1) of the finetuning set, and runs do not record it")
    if independent:
        notes.append("observations dropped: no correlation (c = P(a=1)), so no direction: " + ", ".join(independent))
    data = pd.DataFrame.from_records(records, columns=DATA_COLUMNS)
    if zero:
        notes.append("ratio undefined (most biased control's signed FPR difference is 0): " + ", ".join(zero))
    tiny = data[(data["control_signed"].abs() < TINY_CONTROL) & (data["ratio_rule"] == "b/k")]
    if not tiny.empty:
        notes.append(f"ratio over a most biased control with |signed FPR difference| < {TINY_CONTROL:g} (mostly "
                     "noise): " + ", ".join(f"{t} ({lv})" for t, lv in zip(tiny["task"], tiny["level_label"],
                                                                         strict=True)))
    clamped = data[data["ratio_rule"].isin(["b<0<k", "k<0<b"])]
    if not clamped.empty:
        notes.append("ratio clamped (biased and control on opposite sides of 0): " + ", ".join(
            f"{t} ({lv}) → {r:g}" for t, lv, r in zip(clamped["task"], clamped["level_label"], clamped["bias_ratio"],
                                                     strict=True)))
    return data, notes


def t_inference(coef: float, se: float, df: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(low, high, p)``: ``coef ∓ t_{(1+confidence)/2, df} · se`` and ``p = 2 · P(T_df > |coef / se|)``."""
    from scipy import stats

    q = float(stats.t.ppf((1 + confidence) / 2, df))
    p = float(2 * stats.t.sf(abs(coef / se), df)) if se > 0 else math.nan
    return coef - q * se, coef + q * se, p


def between_within_df(data: pd.DataFrame, terms: list[str], group: str = "task") -> dict[str, int]:
    """Between-within degrees of freedom per fixed effect (``Intercept`` and ``terms``); see the module doc."""
    within = [t for t in terms if (data.groupby(group)[t].nunique() > 1).any()]
    between = ["Intercept", *[t for t in terms if t not in within]]
    n_obs, n_groups = len(data), data[group].nunique()
    return {**{t: n_obs - n_groups - len(within) for t in within}, **{t: n_groups - len(between) for t in between}}


def _refusal(data: pd.DataFrame, terms: list[str]) -> str | None:
    """Why the model cannot be fitted to ``data`` with ``terms`` (None: it can)."""
    n_groups = data["task"].nunique()
    if n_groups < MIN_ATTRIBUTES:
        return f"too few attributes ({n_groups}; at least {MIN_ATTRIBUTES} needed)"
    lo, hi = (float(data["correlation"].min()), float(data["correlation"].max())) if len(data) else (0.0, 0.0)
    if hi - lo < MIN_CORRELATION_RANGE:
        return (f"the correlation covariate does not vary: |c − P(a=1)| spans {lo:.2f}–{hi:.2f} at the nominal "
                f"levels (range below {MIN_CORRELATION_RANGE:g})")
    if "salience" in terms and data["salience"].nunique() < 2:
        return "the salience covariate does not vary (one value)"
    n_fixed = len(terms) + 1
    if len(data) < MIN_OBS_PER_FIXED * n_fixed:
        return (f"too few observations per fixed effect ({len(data)} observations for {n_fixed} fixed effects, "
                f"intercept included; at least {MIN_OBS_PER_FIXED * n_fixed} needed)")
    bad = {t: d for t, d in between_within_df(data, terms).items() if d <= 0}
    if bad:
        return "no degrees of freedom left for " + ", ".join(f"{t} (df = {d})" for t, d in bad.items())
    return None


def inheritance_regression_with_reason(
    agg_inh: pd.DataFrame, sal: pd.DataFrame, *, dependent: Dependent = "ratio"
) -> tuple[dict[str, Any] | None, str | None]:
    """Fit the regression; ``(result, None)`` or ``(None, reason)``. See :func:`inheritance_regression`."""
    import statsmodels.formula.api as smf

    if dependent not in DEPENDENT_COLUMN:
        raise ValueError(f"dependent must be 'ratio' or 'difference', got {dependent!r}")
    y = DEPENDENT_COLUMN[dependent]
    data, notes = regression_data(agg_inh, sal)
    if data.empty:
        reason = "no usable inheritance comparisons (need a biased and a control base on a balanced set)"
        return None, "; ".join([reason, *notes])
    data = data[np.isfinite(data[y].astype(float))]
    if dependent == "difference":  # the ratio's clamps and undefined values do not concern b − k
        notes = [n for n in notes if not n.startswith("ratio")]
    terms = ["correlation"]
    if data["salience"].notna().any():
        missing = sorted(data.loc[data["salience"].isna(), "task"].unique())
        data = data.dropna(subset=["salience"])
        terms.append("salience")
        if missing:
            notes.append(f"attributes without salience runs dropped: {', '.join(missing)}")
    else:
        notes.append("no salience runs: the model has no salience term")
    data = data.reset_index(drop=True)
    reason = _refusal(data, terms)
    if reason is not None:
        return None, "; ".join([reason, *notes])
    formula = f"{y} ~ " + " + ".join(terms)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = smf.mixedlm(formula, data, groups=data["task"]).fit(reml=True)
    except (np.linalg.LinAlgError, ValueError) as exc:
        return None, f"the fit failed: {exc}"
    fit_warnings = list(dict.fromkeys(f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught))
    dfs = between_within_df(data, terms)
    coefficients: dict[str, dict[str, float]] = {}
    for term in ["Intercept", *terms]:
        coef, se = float(fit.fe_params[term]), float(fit.bse_fe[term])
        low, high, p = t_inference(coef, se, dfs[term])
        coefficients[term] = {"coef": coef, "se": se, "df": dfs[term], "low": low, "high": high, "p": p}
    result: dict[str, Any] = {
        "formula": formula + " + (1 | task)",
        "dependent": dependent,
        "n_obs": len(data),
        "n_groups": int(data["task"].nunique()),
        "groups": sorted(data["task"].unique()),
        "coefficients": coefficients,
        "group_var": float(fit.cov_re.iloc[0, 0]),
        "residual_var": float(fit.scale),
        "converged": bool(getattr(fit, "converged", False)),
        "warnings": fit_warnings,
        "notes": notes,
        "data": data,
    }
    return result, None


def inheritance_regression(
    agg_inh: pd.DataFrame, sal: pd.DataFrame, *, dependent: Dependent = "ratio"
) -> dict[str, Any] | None:
    """Mixed-effects regression ``y ~ correlation + salience + (1 | attribute)`` (module doc for every formula).

    Args:
        agg_inh: the inheritance runs aggregated over seeds.
        sal: the salience table of the study (empty: fitted without the salience term).
        dependent: ``"ratio"`` (the paper's, ``bias_ratio``) or ``"difference"`` (``bias_difference`` = b − k).

    Returns:
        ``None`` when refused (the reason is logged, and returned by :func:`inheritance_regression_with_reason`).
        Otherwise a dict with ``formula``, ``dependent``, ``n_obs``, ``n_groups``, ``groups``, ``coefficients``
        (per term: ``coef``, ``se``, ``df``, ``low``, ``high`` (Student-t 95%), ``p``), ``group_var``,
        ``residual_var``, ``converged``, ``warnings`` (``"Category: message"`` raised by the fit), ``notes``
        (observations dropped or flagged) and ``data`` (the observations, :data:`DATA_COLUMNS`).
    """
    result, reason = inheritance_regression_with_reason(agg_inh, sal, dependent=dependent)
    if result is None:
        log.info("inheritance regression not fitted: %s", reason)
    return result

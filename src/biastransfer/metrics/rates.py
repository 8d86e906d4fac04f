"""Group-wise error rates (the single disaggregation primitive) and the gaps derived from them.

Conventions (docs/protocols.md §1): the sensitive attribute ``a`` is coded 0/1, and every gap is
*group a=1 minus group a=0*, recorded with the two group names so a report can say "Women − Men".
A rate whose denominator is zero is NaN and raises an :class:`UndefinedRateWarning`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from biastransfer.metrics._validate import as_binary, same_length

DEFAULT_GROUP_NAMES: tuple[str, str] = ("a=0", "a=1")


class UndefinedRateWarning(UserWarning):
    """A metric's denominator is zero (e.g. FPR of a group without negatives); its value is NaN."""


@dataclass(frozen=True)
class GroupRates:
    """Confusion-matrix rates of one group ``a = group`` (counts are of examples in that group).

    With TP, FP, TN, FN counted inside the group, P = TP + FN (``positives``), N = FP + TN
    (``negatives``) and ``count`` = P + N:

    - ``tpr`` = TP / P,  ``fnr`` = FN / P = 1 − tpr
    - ``fpr`` = FP / N,  ``tnr`` = TN / N = 1 − fpr
    - ``positive_rate`` = (TP + FP) / count  (share predicted positive)
    - ``base_rate`` = P / count  (share truly positive)
    """

    group: int
    name: str
    count: int
    positives: int
    negatives: int
    tpr: float
    fpr: float
    tnr: float
    fnr: float
    positive_rate: float
    base_rate: float

    def to_dict(self) -> dict[str, int | str | float]:
        """Field name → value (floats may be NaN)."""
        return asdict(self)


@dataclass(frozen=True)
class Gaps:
    """Signed differences between the groups, always minuend (a=1) − subtrahend (a=0).

    - ``fpr_diff`` = FPR(a=1) − FPR(a=0)
    - ``tpr_diff`` = TPR(a=1) − TPR(a=0)
    - ``eo_diff`` = max(|fpr_diff|, |tpr_diff|) ≥ 0 (equalised-odds difference, worst case);
      NaN if either difference is NaN.
    """

    fpr_diff: float
    tpr_diff: float
    eo_diff: float
    minuend: str
    subtrahend: str

    @property
    def label(self) -> str:
        """Human-readable sign convention, e.g. ``"Women − Men"``."""
        return f"{self.minuend} − {self.subtrahend}"


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _warn_undefined(group: int, name: str, positives: int, negatives: int) -> None:
    """Emit one :class:`UndefinedRateWarning` per empty denominator of a group."""
    who = f"group {name!r} (a={group})"
    if positives + negatives == 0:
        warnings.warn(f"{who} has no examples: all rates are undefined (NaN)", UndefinedRateWarning, 4)
        return
    if negatives == 0:
        warnings.warn(f"{who} has no negatives: FPR is undefined (NaN), and so is TNR",
                      UndefinedRateWarning, 4)
    if positives == 0:
        warnings.warn(f"{who} has no positives: TPR is undefined (NaN), and so is FNR",
                      UndefinedRateWarning, 4)


def _rates_of(group: int, name: str, y_true: NDArray[np.int64], y_pred: NDArray[np.int64]) -> GroupRates:
    """Rates of the examples already selected for one group."""
    tp = int(np.sum((y_true == 1) & (y_pred == 1)))
    fp = int(np.sum((y_true == 0) & (y_pred == 1)))
    positives = int(np.sum(y_true == 1))
    negatives = int(np.sum(y_true == 0))
    count = positives + negatives
    _warn_undefined(group, name, positives, negatives)
    return GroupRates(
        group=group,
        name=name,
        count=count,
        positives=positives,
        negatives=negatives,
        tpr=_ratio(tp, positives),
        fpr=_ratio(fp, negatives),
        tnr=_ratio(negatives - fp, negatives),
        fnr=_ratio(positives - tp, positives),
        positive_rate=_ratio(tp + fp, count),
        base_rate=_ratio(positives, count),
    )


def _check_names(group_names: tuple[str, str]) -> tuple[str, str]:
    names = tuple(str(n) for n in group_names)
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"group_names must be two distinct names (for a=0, a=1); got {group_names!r}")
    return names  # type: ignore[return-value]


def group_rates(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    groups: ArrayLike,
    group_names: tuple[str, str] = DEFAULT_GROUP_NAMES,
) -> dict[int, GroupRates]:
    """Split by group (``a`` ∈ {0, 1}) and return each group's rates with counts.

    This is the one disaggregation primitive: every group metric and gap is derived from it.
    Both groups are always present in the result; a group with no examples (or no positives /
    negatives) gets NaN rates and an :class:`UndefinedRateWarning`.

    Raises ``ValueError`` if the inputs differ in length, labels or predictions are not 0/1,
    or groups are not 0/1.
    """
    names = _check_names(group_names)
    y = as_binary(y_true, "y_true")
    p = as_binary(y_pred, "y_pred", allowed="predictions")
    a = as_binary(groups, "groups", allowed="group codes")
    same_length(y_true=y, y_pred=p, groups=a)
    return {g: _rates_of(g, names[g], y[a == g], p[a == g]) for g in (0, 1)}


def gaps(rates: dict[int, GroupRates]) -> Gaps:
    """Derive the signed gaps from :func:`group_rates` output (group 1 minus group 0).

    fpr_diff = FPR(1) − FPR(0); tpr_diff = TPR(1) − TPR(0);
    eo_diff = max(|fpr_diff|, |tpr_diff|), NaN when either is NaN.
    """
    missing = {0, 1} - set(rates)
    if missing:
        raise ValueError(f"rates must contain groups 0 and 1; missing {sorted(missing)}")
    fpr_diff = rates[1].fpr - rates[0].fpr  # NaN propagates
    tpr_diff = rates[1].tpr - rates[0].tpr
    undefined = math.isnan(fpr_diff) or math.isnan(tpr_diff)
    eo_diff = math.nan if undefined else max(abs(fpr_diff), abs(tpr_diff))
    return Gaps(fpr_diff, tpr_diff, eo_diff, minuend=rates[1].name, subtrahend=rates[0].name)

"""Metrics: group rates and gaps, thresholds, ranking metrics, intervals over seeds, BiasAmp, audits.

Every formula is in docs/metrics.md. Group gaps are always group a=1 minus group a=0.
"""

from biastransfer.metrics.audit import AuditError, audit_csv, evaluate_predictions, to_json
from biastransfer.metrics.bias_amp import bias_amplification
from biastransfer.metrics.intervals import Interval, t_interval
from biastransfer.metrics.multiclass import top_k_accuracy
from biastransfer.metrics.ranking import auc, average_precision, normalized_average_precision
from biastransfer.metrics.rates import Gaps, GroupRates, UndefinedRateWarning, gaps, group_rates
from biastransfer.metrics.threshold import (
    CalibrationWarning,
    ThresholdPolicy,
    calibrated_threshold,
    cell_proportions,
    parse_threshold_policy,
    resolve_threshold,
    weighted_calibrated_threshold,
)

__all__ = [
    "AuditError",
    "CalibrationWarning",
    "Gaps",
    "GroupRates",
    "Interval",
    "ThresholdPolicy",
    "UndefinedRateWarning",
    "auc",
    "audit_csv",
    "average_precision",
    "bias_amplification",
    "calibrated_threshold",
    "cell_proportions",
    "evaluate_predictions",
    "gaps",
    "group_rates",
    "normalized_average_precision",
    "parse_threshold_policy",
    "resolve_threshold",
    "t_interval",
    "to_json",
    "top_k_accuracy",
    "weighted_calibrated_threshold",
]

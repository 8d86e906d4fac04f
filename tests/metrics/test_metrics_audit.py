"""evaluate_predictions and audit_csv (threshold policies, splits, group encodings, errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from biastransfer.metrics.audit import AuditError, audit_csv, evaluate_predictions, to_json
from biastransfer.metrics.rates import UndefinedRateWarning, gaps, group_rates
from biastransfer.metrics.threshold import calibrated_threshold


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    gender = rng.choice(["Men", "Women"], n)
    score = y * 0.5 + (gender == "Women") * 0.2 + rng.random(n)
    split = np.where(np.arange(n) % 2 == 0, "val", "test")
    return pd.DataFrame({"y": y, "gender": gender, "score": score, "split": split})


def _write(frame: pd.DataFrame, tmp_path: Path, name: str = "preds.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_evaluate_predictions_is_consistent_with_the_primitives() -> None:
    df = _frame()
    y, s, a = df.y.to_numpy(), df.score.to_numpy(), (df.gender == "Women").to_numpy().astype(int)
    result = evaluate_predictions(y, s, a, threshold=0.8, group_names=("Men", "Women"))
    gap = gaps(group_rates(y, (s >= 0.8).astype(int), a, ("Men", "Women")))
    assert result["fpr_diff"] == gap.fpr_diff and result["tpr_diff"] == gap.tpr_diff
    assert result["eo_diff"] == gap.eo_diff
    assert result["gap_label"] == "Women − Men"
    assert result["auc"] == pytest.approx(roc_auc_score(y, s))
    assert result["groups"]["Women"]["auc"] == pytest.approx(roc_auc_score(y[a == 1], s[a == 1]))
    women, men = result["groups"]["Women"], result["groups"]["Men"]
    assert result["auc_diff"] == pytest.approx(women["auc"] - men["auc"])
    assert result["groups"]["Men"]["count"] + result["groups"]["Women"]["count"] == result["n"] == 200
    json.loads(to_json(result))


def test_val_policy_calibrates_on_val_rows_and_evaluates_test_rows(tmp_path: Path) -> None:
    df = _frame()
    result = audit_csv(_write(df, tmp_path), "y", "score", "gender", threshold="val")
    val = df[df.split == "val"]
    assert result["threshold"] == calibrated_threshold(val.score, val.y)
    assert result["n"] == int((df.split == "test").sum())
    assert result["calibration_rows"] == len(val)
    assert (result["minuend"], result["subtrahend"]) == ("Women", "Men")


def test_test_policy_and_fixed_threshold(tmp_path: Path) -> None:
    df = _frame()
    path = _write(df, tmp_path)
    test = df[df.split == "test"]
    result = audit_csv(path, "y", "score", "gender", threshold="test")
    assert result["threshold"] == calibrated_threshold(test.score, test.y)
    assert result["positive_rate"] == pytest.approx(test.y.mean())  # no ties: predicted rate = base rate
    fixed = audit_csv(path, "y", "score", "gender", threshold=0.9)
    assert fixed["threshold"] == 0.9 and fixed["calibration_rows"] == 0


def test_val_without_split_column_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(_frame().drop(columns="split"), tmp_path)
    with pytest.raises(AuditError, match=r"no 'split' column; use threshold 'test'"):
        audit_csv(path, "y", "score", "gender", threshold="val")
    assert audit_csv(path, "y", "score", "gender", threshold="test")["n"] == 200


def test_zero_one_group_column_keeps_codes_and_names_them(tmp_path: Path) -> None:
    df = _frame().assign(is_woman=lambda d: (d.gender == "Women").astype(int))
    result = audit_csv(_write(df, tmp_path), "y", "score", "is_woman", threshold="test")
    assert set(result["groups"]) == {"is_woman=0", "is_woman=1"}
    assert result["gap_label"] == "is_woman=1 − is_woman=0"
    assert result["groups"]["is_woman=1"]["group"] == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.assign(gender=np.resize(["M", "W", "X"], len(d))), r"two values .*'M', 'W', 'X'"),
        (lambda d: d.assign(y=d.y * 2), r"label column 'y' must be binary .*'2'"),
        (lambda d: d.assign(score="high"), r"score column 'score' must be numeric"),
        (lambda d: d.assign(y=d.y.where(d.index > 0)), r"label column 'y' has 1 missing"),
    ],
)
def test_bad_columns_are_named(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    path = _write(mutate(_frame()), tmp_path)
    with pytest.raises(AuditError, match=message):
        audit_csv(path, "y", "score", "gender", threshold="test")


def test_missing_file_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match=r"predictions file not found: .*nope\.csv"):
        audit_csv(tmp_path / "nope.csv", "y", "score", "gender")
    path = _write(_frame(), tmp_path)
    expected = r"column 'prob' not found in preds\.csv; available columns: 'y', 'gender'"
    with pytest.raises(AuditError, match=expected):
        audit_csv(path, "y", "prob", "gender")


def test_group_without_negatives_at_evaluation_gives_nan_and_null_json(tmp_path: Path) -> None:
    df = _frame()
    df = df[~((df.split == "test") & (df.gender == "Women") & (df.y == 0))]
    with pytest.warns(UndefinedRateWarning) as record:
        result = audit_csv(_write(df, tmp_path), "y", "score", "gender", threshold="val")
    messages = [str(w.message) for w in record]
    assert any("group 'Women' (a=1) has no negatives: FPR is undefined" in m for m in messages)
    auc_message = "'Women' (a=1) has 35 positive(s) and 0 negative(s): its AUC is undefined"
    assert any(auc_message in m for m in messages)
    assert math.isnan(result["groups"]["Women"]["fpr"]) and math.isnan(result["fpr_diff"])
    assert not math.isnan(result["tpr_diff"])
    parsed = json.loads(to_json(result))
    assert parsed["groups"]["Women"]["fpr"] is None and parsed["eo_diff"] is None


def test_to_json_writes_null_for_infinite_threshold() -> None:
    assert json.loads(to_json({"threshold": math.inf, "x": np.float64(0.5)})) == {"threshold": None, "x": 0.5}

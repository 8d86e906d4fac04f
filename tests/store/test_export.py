"""The export of a real tiny run: one typed row per run, columns from the outcome schemas, and the numbers
recomputed independently (fairlearn, scikit-learn) from the stored scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_positive_rate, true_positive_rate
from sklearn.metrics import roc_auc_score

from biastransfer.data.synthetic import SyntheticDataset
from biastransfer.experiments.base import COMMON_COLUMNS, EXPERIMENTS
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore
from tiny_study import TINY_PARAMS


@pytest.fixture(scope="module")
def exported(kind_report):
    store = ResultStore.open_existing(kind_report("inheritance").out)
    frame = runs_frame(store)
    arts = {key: store.artifacts(key) for key in frame["run_key"]}
    store.close()
    return frame, arts


def test_columns_come_from_the_schemas(exported) -> None:
    frame, _ = exported
    plugin = EXPERIMENTS.get("inheritance")
    assert list(frame.columns) == [c.name for c in plugin.all_columns()]
    assert [c.name for c in COMMON_COLUMNS] == list(frame.columns[: len(COMMON_COLUMNS)])
    assert frame["run_key"].is_unique and len(frame) == 12
    for column in plugin.all_columns():
        if column.dtype in ("float", "int"):
            assert pd.api.types.is_numeric_dtype(frame[column.name]), column.name


def test_exported_gaps_equal_an_independent_recomputation(exported, cache_dir) -> None:
    """FPR and TPR per group at the stored threshold (fairlearn) and AUC (scikit-learn), from the stored test
    rows and scores: the exported numbers are these, finite, for every run."""
    frame, arts = exported
    data = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    for row in frame.itertuples():
        rows, scores = arts[row.run_key]["test_rows"], arts[row.run_key]["test_scores"].astype(float)
        y, a = data.table.column(row.task)[rows], data.table.column("a")[rows]
        pred = (scores >= row.threshold).astype(int)
        mf = MetricFrame(metrics={"fpr": false_positive_rate, "tpr": true_positive_rate}, y_true=y, y_pred=pred,
                         sensitive_features=a)
        fpr, tpr = mf.by_group["fpr"], mf.by_group["tpr"]
        assert np.isfinite(row.fpr_diff) and np.isfinite(row.tpr_diff)
        assert row.fpr_diff == pytest.approx(fpr[1] - fpr[0], abs=1e-12)
        assert row.tpr_diff == pytest.approx(tpr[1] - tpr[0], abs=1e-12)
        assert row.eo_diff == pytest.approx(max(abs(fpr[1] - fpr[0]), abs(tpr[1] - tpr[0])), abs=1e-12)
        assert row.auc == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_roles_in_the_export(exported) -> None:
    frame, _ = exported
    assert dict(zip(frame["base"], frame["base_role"], strict=True)) == {
        "gendered": "biased", "control-t0": "control", "scratch": "scratch"}

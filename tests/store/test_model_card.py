"""The model card of a real tiny run (``biastransfer export DIR --format model-card``): the Model Card Toolkit's
``quantitative_analysis`` fields, values that are the seed aggregates of the stored runs, fairlearn's metrics
checked against fairlearn itself, NaN written as null with a reason, and the command's errors."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from fairlearn import metrics as fm
from scipy import stats
from typer.testing import CliRunner

from biastransfer import plugins  # noqa: F401
from biastransfer.cli import app
from biastransfer.data.synthetic import SyntheticDataset
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.metrics.rates import UndefinedRateWarning, group_rates
from biastransfer.store.export import runs_frame
from biastransfer.store.model_card import FAIRLEARN_RATES, fairlearn_metrics, model_card, to_mct
from biastransfer.store.sqlite import ResultStore
from tiny_study import TINY_PARAMS

MCT_METRIC_FIELDS = {"type", "value", "slice", "confidence_interval"}  # MCT schema v0.0.2's performance_metric
MCT_INTERVAL_FIELDS = {"lower_bound", "upper_bound"}


def _strict(text: str) -> dict:
    """JSON that has no NaN or Infinity (json.loads would accept them)."""
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token} in the card")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def folder(kind_report) -> Path:
    return kind_report("inheritance").out


@pytest.fixture(scope="module")
def card(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The card as the command writes it."""
    target = tmp_path_factory.mktemp("card") / "card.json"
    result = CliRunner().invoke(app, ["export", str(folder), "--format", "model-card", "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "Wrote the model card of 12 runs (6 settings" in " ".join(result.output.split())
    return _strict(target.read_text(encoding="utf-8"))


def _metrics(card: dict) -> dict[tuple[str, str], dict]:
    return {(m["type"], m["slice"]): m for m in card["quantitative_analysis"]["performance_metrics"]}


def _check_fields(card: dict) -> None:
    """MCT's performance_metric fields on every entry, (type, slice) unique, low ≤ value ≤ high when finite, and a
    note with the reason for every null."""
    assert set(card) == {"model_details", "quantitative_analysis", "biastransfer"}
    assert {"name", "overview", "version"} <= set(card["model_details"])
    metrics = card["quantitative_analysis"]["performance_metrics"]
    assert len(metrics) == len(_metrics(card))
    notes = {(n["type"], n["slice"]): n for n in card["biastransfer"]["notes"]}
    for m in metrics:
        assert set(m) == MCT_METRIC_FIELDS and set(m["confidence_interval"]) == MCT_INTERVAL_FIELDS, m
        assert isinstance(m["type"], str) and m["type"] and isinstance(m["slice"], str) and m["slice"]
        low, high = m["confidence_interval"]["lower_bound"], m["confidence_interval"]["upper_bound"]
        for v in (m["value"], low, high):
            assert v is None or (isinstance(v, (int, float)) and math.isfinite(v)), m
        if None not in (m["value"], low, high):
            assert low <= m["value"] <= high, m
        else:
            assert notes[(m["type"], m["slice"])]["reason"], m
    definitions = card["biastransfer"]["metric_definitions"]
    assert {m["type"] for m in metrics} == set(definitions)


def test_every_metric_has_the_model_card_toolkit_fields(card: dict) -> None:
    _check_fields(card)
    metrics = card["quantitative_analysis"]["performance_metrics"]
    assert len(metrics) == 6 * 13  # 6 settings × (6 metrics of the kind, 3 of fairlearn, 2 rates × 2 groups)
    slices = {m["slice"] for m in metrics}
    assert "experiment=inheritance, task=t3, base=gendered, level=0.8" in slices
    assert "experiment=inheritance, task=t3, base=gendered, level=0.8, group=a=1 (disc)" in slices
    assert "experiment=inheritance, task=t3, base=scratch, level=natural, group=a=0 (square)" in slices


def test_values_are_means_with_student_t_intervals_over_the_seeds(card: dict, folder: Path) -> None:
    """Recomputed here from the tidy runs (numpy mean, scipy's t quantile) for every setting the card lists."""
    store = ResultStore.open_existing(folder, read_only=True)
    frame = runs_frame(store).set_index("run_key")
    store.close()
    metrics = _metrics(card)
    checked = 0
    for setting in card["biastransfer"]["settings"]:
        runs = frame.loc[[r["run_key"] for r in setting["runs"]]]
        assert sorted(runs["seed"]) == [0, 1] and setting["n_seeds"] == 2
        assert setting["settings"]["base"] == runs["base"].iloc[0]
        assert runs["level_label"].nunique() == 1
        for column, kind, where in [("auc", "auc", ""), ("fpr_diff", "fpr_diff", ""),
                                    ("fpr_a1", "fpr", ", group=a=1 (disc)"), ("tpr_a0", "tpr", ", group=a=0 (square)")]:
            x = runs[column].to_numpy(dtype=float)
            half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
            m = metrics[(kind, setting["slice"] + where)]
            assert m["value"] == pytest.approx(x.mean(), abs=1e-12)
            assert m["confidence_interval"]["lower_bound"] == pytest.approx(x.mean() - half, abs=1e-12)
            assert m["confidence_interval"]["upper_bound"] == pytest.approx(x.mean() + half, abs=1e-12)
            checked += 1
    assert checked == 6 * 4


CASES = {  # y, ŷ, a: gaps of either sign, the TPR or the FPR gap the larger
    "tpr gap larger, a=1 lower": ([1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0],
                                  [1, 1, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0],
                                  [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]),
    "fpr gap larger, a=1 higher": ([1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0],
                                   [1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0],
                                   [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
    "random": tuple(np.random.default_rng(3).integers(0, 2, size=(3, 200)).tolist()),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fairlearn_named_metrics_are_fairlearns(case: str) -> None:
    """On constructed predictions, every fairlearn-named value equals fairlearn's function of that name."""
    y, pred, a = (np.asarray(v) for v in CASES[case])
    rates = group_rates(y, pred, a)
    per_group = {f"{r}_a{g}": getattr(rates[g], r) for r in FAIRLEARN_RATES for g in (0, 1)}
    ours = fairlearn_metrics(per_group, list(FAIRLEARN_RATES))
    assert set(ours) == {f"{n}_difference" for n in FAIRLEARN_RATES.values()} | {"equalized_odds_difference"}
    for name, value in ours.items():
        assert value == pytest.approx(getattr(fm, name)(y, pred, sensitive_features=a), abs=1e-12), name
        assert value >= 0
    assert ours["equalized_odds_difference"] > 0


def test_an_undefined_rate_gives_nan_where_fairlearn_substitutes_zero() -> None:
    y, pred, a = np.array([1, 1, 0, 0, 1, 1]), np.array([1, 0, 1, 0, 1, 1]), np.array([0, 0, 0, 0, 1, 1])
    with pytest.warns(UndefinedRateWarning, match="no negatives"):
        rates = group_rates(y, pred, a)  # group a=1 has no negatives: no FPR
    ours = fairlearn_metrics({f"{r}_a{g}": getattr(rates[g], r) for r in ("fpr", "tpr") for g in (0, 1)},
                             ["fpr", "tpr"])
    assert math.isnan(ours["equalized_odds_difference"]) and math.isnan(ours["false_positive_rate_difference"])
    assert math.isfinite(fm.equalized_odds_difference(y, pred, sensitive_features=a))


def test_fairlearn_oracle_on_the_stored_runs(card: dict, folder: Path, cache_dir: Path) -> None:
    """fairlearn on each run's stored test rows, scores and threshold, averaged over the setting's seeds."""
    data = SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)
    store = ResultStore.open_existing(folder, read_only=True)
    metrics = _metrics(card)
    for setting in card["biastransfer"]["settings"]:
        values: dict[str, list[float]] = {"equalized_odds_difference": [], "false_positive_rate_difference": [],
                                          "true_positive_rate_difference": [], "fpr0": [], "tpr1": []}
        for run in setting["runs"]:
            arts = store.artifacts(run["run_key"])
            rows, scores = arts["test_rows"], arts["test_scores"].astype(float)
            y, a = data.table.column("t3")[rows], data.table.column("a")[rows]
            pred = (scores >= run["threshold"]).astype(int)
            for name in ("equalized_odds_difference", "false_positive_rate_difference",
                         "true_positive_rate_difference"):
                values[name].append(getattr(fm, name)(y, pred, sensitive_features=a))
            frame = fm.MetricFrame(metrics={"fpr": fm.false_positive_rate, "tpr": fm.true_positive_rate},
                                   y_true=y, y_pred=pred, sensitive_features=a).by_group
            values["fpr0"].append(frame["fpr"][0])
            values["tpr1"].append(frame["tpr"][1])
        where = setting["slice"]
        for name in ("equalized_odds_difference", "false_positive_rate_difference", "true_positive_rate_difference"):
            assert metrics[(name, where)]["value"] == pytest.approx(np.mean(values[name]), abs=1e-12), name
        assert metrics[("fpr", f"{where}, group=a=0 (square)")]["value"] == pytest.approx(np.mean(values["fpr0"]))
        assert metrics[("tpr", f"{where}, group=a=1 (disc)")]["value"] == pytest.approx(np.mean(values["tpr1"]))
    store.close()


def test_signed_gaps_keep_their_names_and_record_the_groups(card: dict, folder: Path) -> None:
    metrics = _metrics(card)
    store = ResultStore.open_existing(folder, read_only=True)
    stored = {r["key"]: r["result"] for r in store.runs()}
    fingerprints, roles = store.get_meta("data_fingerprints"), store.get_meta("roles")
    store.close()
    signs = set()
    for setting in card["biastransfer"]["settings"]:
        where = setting["slice"]
        assert setting["groups"] == {"a=0": "square", "a=1": "disc"} and setting["reference_group"] == "a=0 (square)"
        assert setting["settings"]["threshold_policy"] == "val"
        assert [r["threshold"] for r in setting["runs"]] == [stored[r["run_key"]]["threshold"]
                                                            for r in setting["runs"]]
        gap = metrics[("fpr_diff", where)]["value"]
        by_group = (metrics[("fpr", f"{where}, group=a=1 (disc)")]["value"]
                    - metrics[("fpr", f"{where}, group=a=0 (square)")]["value"])
        assert gap == pytest.approx(by_group, abs=1e-12)
        assert metrics[("false_positive_rate_difference", where)]["value"] >= abs(gap) - 1e-12
        signs.add(np.sign(gap))
    assert signs == {-1.0, 1.0}  # the tiny run has gaps of both signs: the signed and unsigned names differ
    defs = card["biastransfer"]["metric_definitions"]
    assert defs["fpr_diff"]["source"] == "biastransfer" and "a=1" in defs["fpr_diff"]["definition"]
    assert defs["equalized_odds_difference"]["source"] == "fairlearn.metrics.equalized_odds_difference"
    prov = card["biastransfer"]["provenance"]
    assert prov["study"] == "tiny-inheritance" and prov["seeds"] == [0, 1] and prov["runs"] == 12
    assert prov["data_fingerprints"] == fingerprints and prov["base_roles"] == roles
    assert prov["versions"] and all("biastransfer" in v for v in prov["versions"])


def test_nan_is_null_with_a_reason(folder: Path, tmp_path: Path) -> None:
    """A copy of the runs where group a=0 has no FPR in both seeds of one setting, and one seed's AUC of another
    setting is NaN: null values and bounds, each with its reason; never 0."""
    source = ResultStore.open_existing(folder, read_only=True)
    runs = source.runs()
    target = ResultStore(tmp_path / "nan")
    for name in ("study", "roles", "data_fingerprints"):
        target.set_meta(name, source.get_meta(name))
    source.close()
    frame_bases = [(r["spec"]["base_name"], str(r["spec"]["level"]), r["spec"]["seed"]) for r in runs]
    for run, (base, level, seed) in zip(runs, frame_bases, strict=True):
        result = dict(run["result"])
        if (base, level) == ("gendered", "0.8"):
            result["fpr_a0"] = math.nan
        if (base, level, seed) == ("scratch", "natural", 1):
            result["auc"] = math.nan
        target.add_run(run["key"], run["spec"], result, run["provenance"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the seed left out is a note in the card, not a warning
        card = _strict(json.dumps(model_card(target), allow_nan=False))
    target.close()
    metrics = _metrics(card)
    notes = {(n["type"], n["slice"]): n for n in card["biastransfer"]["notes"]}
    undefined = "experiment=inheritance, task=t3, base=gendered, level=0.8"
    for key in [("fpr", f"{undefined}, group=a=0 (square)"), ("false_positive_rate_difference", undefined),
                ("equalized_odds_difference", undefined)]:
        m = metrics[key]
        assert m["value"] is None and m["confidence_interval"] == {"lower_bound": None, "upper_bound": None}, key
        assert notes[key]["null_fields"] == ["value", "lower_bound", "upper_bound"]
        assert "NaN for every seed" in notes[key]["reason"] and "no negatives (FPR" in notes[key]["reason"]
        assert ("fairlearn would substitute 0" in notes[key]["reason"]) == (key[0] != "fpr")
    assert metrics[("tpr", f"{undefined}, group=a=0 (square)")]["value"] is not None
    one = ("auc", "experiment=inheritance, task=t3, base=scratch, level=natural")
    assert metrics[one]["value"] is not None and metrics[one]["confidence_interval"]["lower_bound"] is None
    assert notes[one]["null_fields"] == ["lower_bound", "upper_bound"] and "one seed" in notes[one]["reason"]
    nulls = {k for k, m in metrics.items() if None in (m["value"], *m["confidence_interval"].values())}
    assert nulls == set(notes)  # every null has its reason, and only nulls have one here
    mct = {(m["type"], m["slice"]): m for m in to_mct(card)["quantitative_analysis"]["performance_metrics"]}
    assert "value" not in mct[key] and "confidence_interval" not in mct[key]  # MCT: absent, not null
    assert "value" in mct[one] and "confidence_interval" not in mct[one]


def test_the_mct_form_has_only_schema_fields_as_strings(card: dict) -> None:
    mct = to_mct(card)
    assert set(mct) == {"schema_version", "model_details", "quantitative_analysis"} and mct["schema_version"] == "0.0.2"
    ours = card["quantitative_analysis"]["performance_metrics"]
    for m, o in zip(mct["quantitative_analysis"]["performance_metrics"], ours, strict=True):
        assert set(m) <= MCT_METRIC_FIELDS and float(m["value"]) == o["value"]
        assert isinstance(m["type"], str) and isinstance(m["slice"], str) and isinstance(m["value"], str)
        assert set(m["confidence_interval"]) <= MCT_INTERVAL_FIELDS
        assert all(isinstance(v, str) for v in m["confidence_interval"].values())


def test_cli_default_file_and_store_unchanged(folder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(folder, copy)
    before = (copy / "results.db").read_bytes()
    result = CliRunner().invoke(app, ["export", str(copy), "-f", "model-card"])
    assert result.exit_code == 0, result.output
    card = _strict((copy / "model_card.json").read_text(encoding="utf-8"))
    assert len(card["quantitative_analysis"]["performance_metrics"]) == 78
    assert (copy / "results.db").read_bytes() == before


def test_cli_mct_format_writes_the_mct_form_of_the_same_card(folder: Path, tmp_path: Path) -> None:
    """``--format model-card-mct``: DIR/model_card.mct.json is :func:`to_mct` of the card ``--format model-card``
    writes (MCT's schema v0.0.2: strings, no ``biastransfer`` key), and the terminal says what it leaves out."""
    copy = tmp_path / "out"
    shutil.copytree(folder, copy)
    full = CliRunner().invoke(app, ["export", str(copy), "-f", "model-card"])
    mct = CliRunner().invoke(app, ["export", str(copy), "-f", "model-card-mct"])
    assert full.exit_code == 0 and mct.exit_code == 0, full.output + mct.output
    written = _strict((copy / "model_card.mct.json").read_text(encoding="utf-8"))
    assert written == to_mct(_strict((copy / "model_card.json").read_text(encoding="utf-8")))
    assert "biastransfer" not in written and written["schema_version"] == "0.0.2"
    said = " ".join(mct.output.split())
    assert "in MCT's schema v0.0.2" in said and "thresholds" in said and "--format model-card only" in said


@pytest.mark.parametrize("args, message", [
    (["--format", "model-card"], "results.db is missing"),
    (["--format", "card"], "--format must be 'csv', 'parquet', 'model-card' or 'model-card-mct'"),
])
def test_cli_bad_input_is_a_clear_error(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(tmp_path), *args])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and message in said and "Traceback" not in said, said
    assert not (tmp_path / "model_card.json").exists()


def test_cli_refuses_a_folder_as_output(folder: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(folder), "-f", "model-card", "-o", str(tmp_path)])
    said = " ".join(result.output.split())
    assert result.exit_code != 0 and "is a folder: give a file to write" in said and "Traceback" not in said


@pytest.mark.parametrize("kind", EXPERIMENTS.names())
def test_every_kind_has_a_card(kind: str, kind_report) -> None:
    """The card of each kind's tiny study (the report tests run them all): MCT's fields, one slice per setting,
    each setting's runs the runs of the store, strict JSON."""
    store = ResultStore.open_existing(kind_report(kind).out, read_only=True)
    try:
        card = _strict(json.dumps(model_card(store), allow_nan=False))
        keys = {r["key"] for r in store.runs()}
    finally:
        store.close()
    _check_fields(card)
    settings = card["biastransfer"]["settings"]
    assert settings and len({s["slice"] for s in settings}) == len(settings)
    listed = [r["run_key"] for s in settings for r in s["runs"]]
    assert sorted(listed) == sorted(keys)
    metrics = card["quantitative_analysis"]["performance_metrics"]
    assert len(metrics) >= len(settings) * len(EXPERIMENTS.get(kind).metrics())

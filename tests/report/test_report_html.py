"""Golden test of the HTML report built from a fixed runs fixture, plus checks of the written plots.

Regenerate the golden file after an intended change with

    BIASTRANSFER_UPDATE_GOLDEN=1 pytest tests/report/test_report_html.py

and review the diff of ``tests/report/golden/report.html``. The fixture itself is made by
``tests/report/fixtures/make_runs.py``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from biastransfer.report.html import build_report

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden" / "report.html"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_fixture() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The fixed runs, hyperparameters and provenance."""
    runs = pd.read_csv(FIXTURES / "runs.csv")
    hparams = pd.read_csv(FIXTURES / "hparams.csv")
    provenance = json.loads((FIXTURES / "provenance.json").read_text(encoding="utf-8"))
    return runs, hparams, provenance


def normalise(text: str) -> str:
    """Drop embedded image data and volatile (version, machine, time) lines."""
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,…", text)
    return "\n".join(line for line in text.splitlines() if 'class="volatile"' not in line) + "\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs, hparams, provenance = load_fixture()
    out = tmp_path_factory.mktemp("report")
    return build_report(runs, out, title="Fixture study report", hparams=hparams, provenance=provenance)


def test_report_matches_golden(report: Path) -> None:
    got = normalise(report.read_text(encoding="utf-8"))
    if os.environ.get("BIASTRANSFER_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(got, encoding="utf-8")
    assert GOLDEN.exists(), "no golden file: run with BIASTRANSFER_UPDATE_GOLDEN=1"
    want = GOLDEN.read_text(encoding="utf-8")
    if got != want:
        import difflib

        diff = "\n".join(
            difflib.unified_diff(want.splitlines(), got.splitlines(), "golden", "built", lineterm="")
        )
        pytest.fail(
            f"report differs from the golden file (BIASTRANSFER_UPDATE_GOLDEN=1 to update):\n{diff[:6000]}"
        )


def test_every_plot_written_as_valid_png(report: Path) -> None:
    import matplotlib.image as mpimg

    plots = sorted((report.parent / "plots").glob("*.png"))
    assert [p.stem for p in plots] == ["inheritance", "salience", "tradeoff"]
    html_text = report.read_text(encoding="utf-8")
    assert html_text.count("data:image/png;base64,") == len(plots)
    for p in plots:
        data = p.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), p
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400, (p, img.shape)
        assert float(np.std(img)) > 0.01  # not a blank canvas
        assert f"plots/{p.name}" in html_text


def test_report_is_self_contained_and_escaped(report: Path) -> None:
    text = report.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<style>" in text
    for section in (
        "reading",
        "tradeoff",
        "inheritance",
        "salience",
        "regression",
        "results",
        "hparams",
        "provenance",
    ):
        assert f'<section id="{section}">' in text
    assert "Women − Men" in text
    assert "<pre>name: fixture-study" in text


def test_missing_kinds_omitted_nan_dash_and_escaping(tmp_path: Path) -> None:
    runs, _, _ = load_fixture()
    sweep = runs[runs["experiment_kind"] == "correlation_sweep"].copy()
    sweep = sweep[sweep["seed"] == 0]  # one seed: no intervals → "—"-free means, NaN bounds dropped
    sweep.loc[sweep.index[0], "tpr_diff"] = np.nan
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [0, 1])
    path = build_report(
        sweep,
        tmp_path,
        title="<b>Title & co</b>",
        hparams=None,
        provenance={"note": "<script>alert(1)</script>", "yaml": "a: 1\nb: <x>\n"},
        extra_sections=[("Extra <one>", ["Some text & more.", pd.DataFrame({"x": [1.5, np.nan]}), fig])],
    )
    text = path.read_text(encoding="utf-8")
    assert '<section id="tradeoff">' in text
    for absent in ("inheritance", "salience", "regression", "hparams"):
        assert f'<section id="{absent}">' not in text
    assert "&lt;b&gt;Title &amp; co&lt;/b&gt;" in text and "<b>Title" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text
    assert "<pre>a: 1\nb: &lt;x&gt;</pre>" in text
    assert "<h2>Extra &lt;one&gt;</h2>" in text and "<p>Some text &amp; more.</p>" in text
    assert '<td class="num">—</td>' in text  # NaN in a table
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == [
        "extra_1_Extra_one_2.png",
        "tradeoff.png",
    ]


def test_report_without_runs(tmp_path: Path) -> None:
    runs, _, _ = load_fixture()
    path = build_report(runs.iloc[0:0], tmp_path, title="Empty")
    text = path.read_text(encoding="utf-8")
    assert "No finished runs." in text and "No inheritance or correlation-sweep runs to read." in text
    assert not list((tmp_path / "plots").glob("*.png"))

"""The report page, built from real tiny studies (one per experiment kind, run through the CLI): every kind's
sections are there, golden-tested by the kind's own test module; plots are real PNGs; the page is self-contained
and escaped; kinds without runs contribute nothing."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from biastransfer import plugins  # noqa: F401
from biastransfer.experiments.base import EXPERIMENTS, HyperparameterSearch, Results
from biastransfer.plan import parse_study
from biastransfer.render.markup import Page
from biastransfer.report.page import build_report
from biastransfer.store.export import runs_frame
from biastransfer.store.sqlite import ResultStore
from report_snapshot import page_snapshot
from tiny_study import kind_study_dict

TESTS = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KINDS = EXPERIMENTS.names()


def _frame(out: Path) -> pd.DataFrame:
    store = ResultStore.open_existing(out)
    try:
        return runs_frame(store)
    finally:
        store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_golden_report_test(kind: str) -> None:
    """Each kind's test module compares the numbers and structure of its tiny report with a golden snapshot."""
    module = TESTS / "experiments" / f"test_{kind}.py"
    assert module.exists(), f"experiment kind {kind!r} has no test module {module}"
    text = module.read_text()
    assert f'page_snapshot(kind_report("{kind}").html)' in text and "== snapshot(" in text, (
        f"{module.name} must golden-test the report of its tiny study: "
        f'assert page_snapshot(kind_report("{kind}").html) == snapshot(...)')


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_writes_its_sections_reading_and_results(kind: str, kind_report) -> None:
    report = kind_report(kind)
    snap = page_snapshot(report.html)
    plugin = EXPERIMENTS.get(kind)()
    own = [s.id for s in plugin.sections(Results(_frame(report.out)), Page(report.out / "scratch-plots"))]
    assert own, f"{kind} has no report section"
    block = plugin.Block.model_validate(plugin.example)
    specs = plugin.expand(kind, block, parse_study(kind_study_dict(kind)).defaults)
    searches = isinstance(plugin, HyperparameterSearch) and any(plugin.hparam_payload(s) is not None for s in specs)
    for section in ("reading", *own, "results", *(["hparams"] if searches else [])):
        assert section in snap, f"{kind}: section {section!r} missing"
    ids = re.findall(r'<section id="([^"]+)">', report.html)
    assert ids[0] == "reading" and ids[-1] == "provenance" and len(ids) == len(set(ids))
    assert snap["results"]["tables"] and snap["results"]["tables"][0][0][:2] == ["task", "base"]
    assert "No findings to read." not in report.html or not plugin.reading(Results(_frame(report.out)))


@pytest.mark.parametrize("kind", KINDS)
def test_every_plot_is_a_png_written_and_embedded(kind: str, kind_report) -> None:
    report = kind_report(kind)
    plots = sorted((report.out / "plots").glob("*.png"))
    assert plots
    assert report.html.count("data:image/png;base64,") == len(plots)
    for p in plots:
        data = p.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), p
        img = mpimg.imread(p)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400, (p, img.shape)
        assert float(np.std(img)) > 0.01  # not a blank canvas
        assert f"plots/{p.name}" in report.html


def test_report_is_self_contained_with_provenance(kind_report) -> None:
    text = kind_report("inheritance").html
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<style>" in text and '<section id="provenance">' in text
    assert "disc − square" in text  # the group names of the gaps
    assert re.search(r"<pre>[^<]*name: tiny-inheritance", text)  # the study file
    assert "<th>base_roles.gendered</th><td>biased</td>" in text


def test_kinds_without_runs_are_omitted_and_text_is_escaped(kind_report, tmp_path: Path) -> None:
    runs = _frame(kind_report("correlation_sweep").out)
    runs = runs[runs["seed"] == 0].copy()  # one seed: no intervals
    runs.loc[runs.index[0], "tpr_diff"] = np.nan
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [0, 1])
    path = build_report(runs, tmp_path, title="<b>Title & co</b>", hparams=None,
                        provenance={"note": "<script>alert(1)</script>", "yaml": "a: 1\nb: <x>\n"},
                        extra_sections=[("Extra <one>", ["Some text & more.", pd.DataFrame({"x": [1.5, np.nan]}),
                                                         fig])])
    text = path.read_text(encoding="utf-8")
    assert '<section id="tradeoff">' in text
    for absent in ("inheritance", "salience", "regression", "underrepresentation", "finetune_number", "hparams"):
        assert f'<section id="{absent}">' not in text
    assert "&lt;b&gt;Title &amp; co&lt;/b&gt;" in text and "<b>Title" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>" not in text
    assert "<pre>a: 1\nb: &lt;x&gt;</pre>" in text
    assert "<h2>Extra &lt;one&gt;</h2>" in text and "<p>Some text &amp; more.</p>" in text
    assert '<td class="num">—</td>' in text  # NaN in a table
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == ["extra_1_Extra_one_2.png", "tradeoff.png"]


def test_report_without_runs(kind_report, tmp_path: Path) -> None:
    runs = _frame(kind_report("salience").out)
    text = build_report(runs.iloc[0:0], tmp_path, title="Empty").read_text()
    assert "No finished runs." in text and "No findings to read." in text
    assert '<section id="results">' not in text
    assert not list((tmp_path / "plots").glob("*.png"))

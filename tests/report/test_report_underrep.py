"""The report's underrepresentation section, alone and next to the other kinds."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from biastransfer.experiments.base import Results
from biastransfer.experiments.underrepresentation import Underrepresentation
from biastransfer.experiments.underrepresentation.analysis import t2_gap_table, underrep_table
from biastransfer.experiments.underrepresentation.plot import underrep_plot
from biastransfer.render.markup import Page, Section
from biastransfer.report.page import build_report
from biastransfer.roles import derive_role

FIXTURES = Path(__file__).parent / "fixtures"


def underrep_rows(columns: list[str]) -> pd.DataFrame:
    """Underrepresentation runs (pullover+coat, 2 bases × 3 shares × 2 N × 3 seeds) with the given columns."""
    rng = np.random.default_rng(0)
    rows = []
    for attr in ("pullover", "coat"):
        for share in (0.1, 0.3, 0.5):
            for n in (128, 512):
                for seed in range(3):
                    t2 = 0.80 + 0.1 * share + (0.05 if attr == "coat" else 0.0) + rng.normal(0, 0.005)
                    rows.append({"run_key": f"{attr}-{share}-{n}-{seed}", "study": "fixture",
                                 "experiment": "underrep", "experiment_kind": "underrepresentation",
                                 "dataset": "fashion-mnist", "task": "pullover+coat", "base": f"pretrain-{attr}",
                                 "base_kind": "trained", "base_attribute": attr, "base_role": "control",
                                 "intervention": "subgroup_share",
                                 "level": share, "level_label": f"{share:g}", "test_level": np.nan,
                                 "test_label": "natural", "n_train": n, "seed": seed, "auc": t2 + 0.03,
                                 "auc_t1": 0.9 + rng.normal(0, 0.005), "auc_t2": t2, "share": share,
                                 "threshold": 0.1, "threshold_policy": "val", "gap_label": "a=1 − a=0",
                                 "lr": 0.05, "weight_decay": 5e-4, "epochs": 5, "val_loss": 0.3, "seconds": 1.0,
                                 "inverse": False})
    return pd.DataFrame(rows).reindex(columns=columns)


def _fixture_runs() -> pd.DataFrame:
    """The report fixture, with the base roles a study derives (sensitive attribute ``a``) if it has none."""
    runs = pd.read_csv(FIXTURES / "runs.csv")
    if "base_role" not in runs.columns:
        runs["base_role"] = [derive_role({"kind": k, "attribute": a}, "a")
                             for k, a in zip(runs["base_kind"], runs["base_attribute"], strict=True)]
    return runs.assign(auc_t1=np.nan, auc_t2=np.nan, share=np.nan)


def test_section_alone(tmp_path: Path) -> None:
    runs = underrep_rows(list(_fixture_runs().columns))
    sections = Underrepresentation().sections(Results(runs), Page(tmp_path))
    assert len(sections) == 1 and isinstance(sections[0], Section)
    section = sections[0]
    assert section.id == "underrepresentation" and section.title == Underrepresentation.title
    markup = section.markup()
    assert markup[0] == '<section id="underrepresentation">' and markup[-1] == "</section>"
    text = "\n".join(markup)
    assert "<h3>T2 AUC difference (Pretrain-T2 − Pretrain-T1)</h3>" in text
    assert "<h3>Correction: Pretrain-T1 at share p against Pretrain-T2 at the smallest share</h3>" in text
    assert "<h3>AUC per base and share</h3>" in text
    assert text.count("<table>") == 3 and text.count("<figure>") == 1
    assert [p.name for p in (tmp_path / "plots").glob("*.png")] == ["underrepresentation.png"]
    assert Underrepresentation().sections(Results(runs.iloc[0:0]), Page(tmp_path / "empty")) == []


def test_section_plot_and_tables(tmp_path: Path) -> None:
    fixture = _fixture_runs()
    runs = pd.concat([fixture, underrep_rows(list(fixture.columns))], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning (no NaN dropped from an aggregate …)
        path = build_report(runs, tmp_path, title="mixed")
    text = path.read_text(encoding="utf-8")
    for section in ("reading", "tradeoff", "inheritance", "underrepresentation", "salience", "results"):
        assert f'<section id="{section}">' in text
    assert "Underrepresentation pullover+coat (T1 = pullover, T2 = coat), N=128" in text
    assert "T2 AUC difference (Pretrain-T2 − Pretrain-T1)" in text
    assert "Correction: Pretrain-T1 at share p" in text
    names = sorted(p.stem for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["inheritance", "salience", "tradeoff", "underrepresentation"]


def test_underrep_only_report_has_no_empty_generic_reading(tmp_path: Path) -> None:
    runs = underrep_rows(list(_fixture_runs().columns))
    text = build_report(runs, tmp_path, title="ur").read_text(encoding="utf-8")
    assert "No findings to read." not in text
    assert "significantly worse on coat" in text
    for section in ("reading", "underrepresentation", "results"):
        assert f'<section id="{section}">' in text
    for section in ("tradeoff", "inheritance", "regression", "salience"):
        assert f'<section id="{section}">' not in text
    assert "tradeoff" not in {p.stem for p in (tmp_path / "plots").glob("*.png")}


def test_plot_has_two_rows_per_task_and_one_column_per_n() -> None:
    runs = underrep_rows(list(_fixture_runs().columns))
    fig = underrep_plot(underrep_table(runs), t2_gap_table(runs))
    visible = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
    assert len(visible) == 4
    assert {ax.get_title() for ax in visible if ax.get_title()} == {"pullover+coat · N = 128",
                                                                    "pullover+coat · N = 512"}


def test_plot_draws_auc_intervals_clipped_to_one() -> None:
    """With 3 seeds an AUC interval can pass 1 (a seed that failed to learn); the bars stop at 1, the tables keep
    the numbers."""
    runs = underrep_rows(list(_fixture_runs().columns))
    noisy = runs["base"].eq("pretrain-coat") & runs["seed"].eq(0)
    runs.loc[noisy, "auc_t2"] = 0.5  # the other two seeds stay near 0.9: the interval's upper end passes 1
    table = underrep_table(runs)
    assert (table["auc_t2_high"] > 1).any()
    fig = underrep_plot(table, t2_gap_table(runs))
    tops = [seg[:, 1].max() for ax in fig.axes for coll in ax.collections
            for seg in getattr(coll, "get_segments", list)() if len(seg)]
    assert tops and max(tops) <= 1.0 + 1e-12

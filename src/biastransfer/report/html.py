"""A self-contained HTML report of a study.

``build_report`` writes ``out_dir/report.html`` (inline CSS, plots embedded as base64 PNG data URIs, no
scripts and nothing fetched from the web) and every plot as ``out_dir/plots/<name>.png``. All text is escaped
with :func:`html.escape`; NaN is shown as "—". Sections for experiment kinds without runs are omitted.

The markup puts one element per line, and lines that change from machine to machine (package versions,
machine, time of generation) carry ``class="volatile"`` so that a golden-file test can drop them.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

import biastransfer
from biastransfer.analysis.aggregate import DEFAULT_METRICS, aggregate, kind_rows, salience_table
from biastransfer.analysis.reading import fmt, fmt_ci, generate_reading, level_text
from biastransfer.analysis.regression import inheritance_regression_with_reason
from biastransfer.analysis.underrep import (
    OUTCOME_COLUMNS as UNDERREP_OUTCOMES,
)
from biastransfer.analysis.underrep import (
    correction_table,
    t2_gap_table,
    underrep_reading,
    underrep_table,
)
from biastransfer.report.plots import DPI, inheritance_chart, salience_plot, tradeoff_plot, underrep_plot

__all__ = ["SectionContent", "build_report"]

#: Content of an extra section: text (escaped, blank lines separate paragraphs), a table, a figure, or a list.
SectionContent = str | pd.DataFrame | Figure | Sequence["str | pd.DataFrame | Figure"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
p.summary { font-size: 1.05em; background: #f6f8fa; padding: 0.8em 1em; border-radius: 4px; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.88em; color: #555; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
footer { margin-top: 3em; color: #888; font-size: 0.8em; }
""".strip()

_VOLATILE_KEY = re.compile(
    r"version|machine|host|platform|python|time|date|cpu|gpu|cuda|device|torch|numpy", re.I
)

_METRIC_HEAD = {"auc": "AUC", "fpr_diff": "FPR diff", "tpr_diff": "TPR diff", "eo_diff": "EO diff"}


def _e(x: object) -> str:
    """Escaped text of a cell: NaN / None as "—", floats with 3 decimals."""
    if x is None:
        return "—"
    if isinstance(x, float):
        return "—" if math.isnan(x) else html.escape(f"{x:.4g}" if abs(x) < 1e-3 and x != 0 else f"{x:.3f}")
    if isinstance(x, str) and x in {"", "nan", "NaN", "None"}:
        return "—" if x != "" else ""
    return html.escape(str(x))


def _table(df: pd.DataFrame, numeric: Sequence[str] = ()) -> list[str]:
    """An HTML table of ``df`` (all cells escaped), one row per line."""
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns) + "</tr>"]
    for row in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, row, strict=True):
            cls = (
                ' class="num"'
                if c in numeric or (isinstance(v, float | int) and not isinstance(v, bool))
                else ""
            )
            cells.append(f"<td{cls}>{_e(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return out


def _png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


class _Plots:
    """Saves figures to ``plots/`` and renders them as embedded images."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir / "plots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def embed(self, fig: Figure, name: str, alt: str, caption: str) -> list[str]:
        """Write ``plots/<name>.png`` and return the ``<figure>`` markup."""
        data = _png(fig)
        safe = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "plot"
        path = self.dir / f"{safe}.png"
        i = 2
        while path in self.written:
            path = self.dir / f"{safe}_{i}.png"
            i += 1
        path.write_bytes(data)
        self.written.append(path)
        b64 = base64.b64encode(data).decode("ascii")
        return [
            "<figure>",
            f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">',
            f"<figcaption>{html.escape(caption)} (file: plots/{html.escape(path.name)})</figcaption>",
            "</figure>",
        ]


def _summary(runs: pd.DataFrame) -> str:
    """The one-paragraph summary (plain text)."""
    if runs.empty:
        return "No finished runs."
    parts = []
    studies = sorted({str(s) for s in runs.get("study", pd.Series(dtype=str)).dropna().unique()})
    kinds = runs["experiment_kind"].astype(str).value_counts() if "experiment_kind" in runs.columns else None
    parts.append(
        f"{len(runs)} finished run(s)"
        + (f" of study {', '.join(studies)}" if studies else "")
        + (
            ": " + ", ".join(f"{k} ({v})" for k, v in sorted(kinds.items()))
            if kinds is not None and len(kinds)
            else ""
        )
        + "."
    )
    if "dataset" in runs.columns:
        ds = sorted({str(d) for d in runs["dataset"].dropna().unique() if str(d)})
        if ds:
            parts.append(f"Dataset(s): {', '.join(ds)}.")
    main = (
        runs[runs["experiment_kind"].astype(str) != "salience"] if "experiment_kind" in runs.columns else runs
    )
    if not main.empty:
        if "task" in main.columns:
            tasks = sorted({str(t) for t in main["task"].dropna().unique()})
            parts.append(f"Tasks: {', '.join(tasks)}.")
        if "base" in main.columns:
            bases = sorted({str(b) for b in main["base"].dropna().unique()})
            parts.append(f"Bases: {', '.join(bases)}.")
        agg = aggregate(main)
        if not agg.empty:
            lo, hi = int(agg["n_seeds"].min()), int(agg["n_seeds"].max())
            seeds = f"{lo}" if lo == hi else f"{lo}–{hi}"
            parts.append(f"{len(agg)} setting(s) with {seeds} seed(s) each.")
    gap = (
        sorted({str(g) for g in runs["gap_label"].dropna().unique() if str(g) not in {"", "nan"}})
        if "gap_label" in runs.columns
        else []
    )
    parts.append(
        "Group gaps (FPR, TPR and equalised-odds differences) are signed "
        + (f"{' / '.join(gap)} " if gap else "")
        + "(group a=1 minus group a=0); intervals are Student-t 95% over seeds."
    )
    if "threshold_policy" in runs.columns:
        pol = sorted(
            {str(p) for p in runs["threshold_policy"].dropna().unique() if str(p) not in {"", "nan"}}
        )
        if pol:
            parts.append(f"Decision threshold: {', '.join(pol)}.")
    return " ".join(parts)


def _results_table(agg: pd.DataFrame) -> pd.DataFrame:
    """Readable results: the setting columns that vary, N, seeds, and ``mean [low, high]`` per metric."""
    show = [
        c
        for c in (
            "experiment",
            "dataset",
            "task",
            "base",
            "intervention",
            "level_label",
            "test_label",
            "n_train",
        )
        if c in agg.columns
    ]
    keep = [c for c in show if c in {"task", "base", "level_label"} or agg[c].nunique(dropna=False) > 1]
    sort_cols = [c for c in keep if c != "level_label"]
    if "level" in agg.columns:
        sort_cols.append("level")
    agg = agg.sort_values(sort_cols, kind="mergesort") if sort_cols else agg
    out = pd.DataFrame({c: agg[c].astype(str).to_numpy() for c in keep})
    if "level_label" in out.columns and "level" in agg.columns:
        out["level_label"] = [
            level_text(float(lv), str(lb)) for lv, lb in zip(agg["level"], agg["level_label"], strict=True)
        ]
    out = out.rename(
        columns={
            "level_label": "level",
            "test_label": "test level",
            "n_train": "N",
            "intervention": "intervention",
        }
    )
    out["seeds"] = agg["n_seeds"].astype(int).to_numpy()
    for m in DEFAULT_METRICS:
        if f"{m}_mean" in agg.columns:
            out[_METRIC_HEAD[m]] = [
                fmt_ci(a, b, c)
                for a, b, c in zip(agg[f"{m}_mean"], agg[f"{m}_low"], agg[f"{m}_high"], strict=True)
            ]
    return out


def _provenance(prov: Mapping[str, Any]) -> list[str]:
    """Provenance as a key/value table plus ``<pre>`` blocks for multi-line texts (the study YAML)."""
    rows: list[str] = []
    pres: list[str] = []

    def add(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                add(f"{key}.{k}", v)
            return
        if isinstance(value, str) and "\n" in value:
            pres.extend([f"<h3>{html.escape(key)}</h3>", f"<pre>{html.escape(value.rstrip())}</pre>"])
            return
        if isinstance(value, list | tuple | set):
            value = ", ".join(str(v) for v in value)
        cls = ' class="volatile"' if _VOLATILE_KEY.search(key) else ""
        rows.append(f"<tr{cls}><th>{html.escape(key)}</th><td>{_e(value)}</td></tr>")

    for k, v in prov.items():
        add(str(k), v)
    out = ["<table>", *rows, "</table>"] if rows else []
    return out + pres


def _extra(title: str, content: SectionContent, plots: _Plots, idx: int) -> list[str]:
    """Markup of one extra section."""
    out = [f'<section id="extra-{idx}">', f"<h2>{html.escape(title)}</h2>"]
    items = content if isinstance(content, list | tuple) else [content]
    for j, item in enumerate(items):
        if isinstance(item, pd.DataFrame):
            out += _table(item)
        elif isinstance(item, Figure):
            out += plots.embed(item, f"extra_{idx}_{title}_{j}", title, title)
        else:
            for para in re.split(r"\n\s*\n", str(item).strip()):
                out.append(f"<p>{html.escape(para)}</p>")
    out.append("</section>")
    return out


def _underrep_section(runs: pd.DataFrame, plots: _Plots) -> list[str]:
    """The underrepresentation section (paper §5): AUC on T2 per base vs share, the difference, the correction."""
    table = underrep_table(runs)
    if table.empty:
        return []
    gaps, corr = t2_gap_table(runs), correction_table(runs)
    body = ['<section id="underrepresentation">', "<h2>Underrepresentation: AUC on the subcategory T2</h2>"]
    body.append(
        '<p class="note">Task T1 ∨ T2; a share p of the finetuning positives is T2. AUC on T2 = T2 positives '
        "against all test negatives (T1 positives left out), likewise for T1. Pretrain-T1 / Pretrain-T2: bases "
        "trained by us on T1 / T2. Difference = AUC on T2 of Pretrain-T2 minus Pretrain-T1, paired by seed; "
        "mean [95% CI low, high] (Student-t over seeds).</p>"
    )
    body += plots.embed(
        underrep_plot(table, gaps),
        "underrepresentation",
        "Underrepresentation plot",
        "Top: AUC on T2 (solid) and on T1 (dotted) per base against the share of T2; bottom: the difference "
        "in AUC on T2 between Pretrain-T2 and Pretrain-T1, 95% CI.",
    )
    if not gaps.empty:
        body.append("<h3>T2 AUC difference (Pretrain-T2 − Pretrain-T1)</h3>")
        body += _table(
            pd.DataFrame(
                {
                    "task": gaps["task"].astype(str),
                    "N": gaps["n_train"].astype(str),
                    "share of T2": gaps["level_label"].astype(str),
                    "AUC on T2, Pretrain-T1": [fmt(x) for x in gaps["auc_t2_pretrain_t1"]],
                    "AUC on T2, Pretrain-T2": [fmt(x) for x in gaps["auc_t2_pretrain_t2"]],
                    "difference": [
                        fmt_ci(a, b, c)
                        for a, b, c in zip(gaps["gap_mean"], gaps["gap_low"], gaps["gap_high"], strict=True)
                    ],
                    "seeds": gaps["n_pairs"].astype(int),
                    "CI above 0": ["yes" if v else "no" for v in gaps["significant"]],
                }
            )
        )
    if not corr.empty:
        body.append("<h3>Correction: Pretrain-T1 at share p against Pretrain-T2 at the smallest share</h3>")
        body += _table(
            pd.DataFrame(
                {
                    "task": corr["task"].astype(str),
                    "N": corr["n_train"].astype(str),
                    "reference share": [f"{v:g}" for v in corr["reference_level"]],
                    "share p (Pretrain-T1)": corr["level_label"].astype(str),
                    "AUC on T2, reference": [fmt(x) for x in corr["auc_t2_reference"]],
                    "AUC on T2, Pretrain-T1": [fmt(x) for x in corr["auc_t2_pretrain_t1"]],
                    "remaining gap": [
                        fmt_ci(a, b, c)
                        for a, b, c in zip(
                            corr["remaining_mean"], corr["remaining_low"], corr["remaining_high"], strict=True
                        )
                    ],
                    "reaches": ["yes" if v else "no" for v in corr["reaches"]],
                }
            )
        )
    body.append("<h3>AUC per base and share</h3>")
    body += _table(
        pd.DataFrame(
            {
                "task": table["task"].astype(str),
                "N": table["n_train"].astype(str),
                "base": table["base"].astype(str),
                "role": table["role"].astype(str),
                "share of T2": table["level_label"].astype(str),
                "seeds": table["n_seeds"].astype(int),
                **{
                    head: [
                        fmt_ci(a, b, c)
                        for a, b, c in zip(table[f"{m}_mean"], table[f"{m}_low"], table[f"{m}_high"], strict=True)
                    ]
                    for m, head in (("auc", "AUC"), ("auc_t1", "AUC on T1"), ("auc_t2", "AUC on T2"))
                },
            }
        )
    )
    body.append("</section>")
    return body


def build_report(
    runs: pd.DataFrame,
    out_dir: str | Path,
    *,
    title: str,
    hparams: pd.DataFrame | None = None,
    provenance: Mapping[str, Any] | None = None,
    extra_sections: Sequence[tuple[str, SectionContent]] | None = None,
) -> Path:
    """Write a self-contained HTML report and its plots; return the path of ``report.html``.

    Args:
        runs: the tidy runs frame (one row per finished run).
        out_dir: output folder (created); receives ``report.html`` and ``plots/*.png``.
        title: report title.
        hparams: chosen hyperparameters (``base, task, n_train, lr, weight_decay, val_loss, trials``).
        provenance: package versions, seeds, data hash, study YAML text, machine … Nested mappings are
            flattened as ``key.sub``; multi-line strings are shown in ``<pre>`` blocks.
        extra_sections: ``(heading, content)`` pairs appended after the standard sections; content is text
            (escaped), a DataFrame (table), a Figure (embedded and saved) or a list of those.

    Sections: summary, reading, tradeoff plot(s) (correlation sweeps), inheritance chart, underrepresentation
    (AUC on T2 per base and share, the Pretrain-T2 − Pretrain-T1 difference, the correction), salience table and
    plot, regression, results table, hyperparameters, provenance. Sections whose runs are missing are omitted.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _Plots(out)
    all_runs = runs
    # The underrepresentation outcomes are not setting columns of the generic aggregation.
    runs = runs.drop(columns=[c for c in UNDERREP_OUTCOMES if c in runs.columns])
    body: list[str] = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="summary">{html.escape(_summary(runs))}</p>',
    ]

    reading = underrep_reading(all_runs)
    if not reading or not (kind_rows(runs, "inheritance").empty and kind_rows(runs, "correlation_sweep").empty):
        reading = generate_reading(runs) + reading
    body += ['<section id="reading">', "<h2>Reading</h2>", "<ul>"]
    body += [f"<li>{html.escape(s)}</li>" for s in reading]
    body += ["</ul>", "</section>"]

    sweep = kind_rows(runs, "correlation_sweep")
    if not sweep.empty:
        body += ['<section id="tradeoff">', "<h2>Performance–bias tradeoff across finetuning levels</h2>"]
        agg_sweep = aggregate(sweep)
        groups = (
            list(agg_sweep.groupby("experiment", sort=True))
            if "experiment" in agg_sweep
            else [("", agg_sweep)]
        )
        for name, agg_exp in groups:
            fig = tradeoff_plot(agg_exp, title=f"AUC vs FPR difference across finetuning levels — {name}")
            body += plots.embed(
                fig,
                f"tradeoff_{name}" if len(groups) > 1 else "tradeoff",
                f"Tradeoff plot for {name}",
                f"Experiment {name}: x = test AUC, y = FPR difference; the outlined point is the level "
                "equal to the test level.",
            )
        body.append("</section>")

    inh = kind_rows(runs, "inheritance")
    if not inh.empty:
        body += ['<section id="inheritance">', "<h2>Inherited bias: Gendered vs Control bases</h2>"]
        fig = inheritance_chart(aggregate(inh))
        body += plots.embed(
            fig,
            "inheritance",
            "Inheritance chart",
            "|FPR difference| per task and base at each finetuning level; * the Gendered interval lies above "
            "every Control interval.",
        )
        body.append("</section>")

    body += _underrep_section(all_runs, plots)

    sal = salience_table(runs)
    if not sal.empty:
        body += ['<section id="salience">', "<h2>Salience relative to the sensitive attribute</h2>"]
        body.append(
            '<p class="note">Salience = AUC(a) − AUC(X) + 0.5 per trained model (each AUC in its better '
            "orientation), averaged over the set X = a and its inverse X = not a, then over seeds. "
            "Above 0.5: a is easier to learn than X.</p>"
        )
        tab = pd.DataFrame(
            {
                "attribute": sal["task"].astype(str),
                "salience": [
                    fmt_ci(a, b, c)
                    for a, b, c in zip(
                        sal["salience_mean"], sal["salience_low"], sal["salience_high"], strict=True
                    )
                ],
                "set X = a": [fmt(x) for x in sal["salience_set"]],
                "inverse X = not a": [fmt(x) for x in sal["salience_inverse"]],
                "AUC(a)": [fmt(x) for x in sal["auc_a_mean"]],
                "AUC(X)": [fmt(x) for x in sal["auc_x_mean"]],
                "seeds": sal["n_seeds"].astype(int),
            }
        )
        body += _table(tab)
        body += plots.embed(
            salience_plot(sal), "salience", "Salience plot", "Salience per attribute, 95% CI."
        )
        body.append("</section>")

    if not inh.empty:
        res, reason = inheritance_regression_with_reason(runs)
        body += ['<section id="regression">', "<h2>Mixed-effects regression of inherited bias</h2>"]
        body.append(
            '<p class="note">inherited bias = |FPR diff(Gendered)| − max over Controls |FPR diff(Control)| '
            "per (attribute, finetuning level); correlation = |2c − 1|; random intercept per attribute "
            "(statsmodels mixedlm, REML); Wald 95% intervals.</p>"
        )
        if res is None:
            body.append(f"<p>Not fitted: {html.escape(str(reason))}.</p>")
        else:
            body.append(
                f"<p>{html.escape(res['formula'])}: {res['n_obs']} observations, "
                f"{res['n_groups']} attributes; attribute variance {res['group_var']:.3g}, "
                f"residual variance {res['residual_var']:.3g}.</p>"
            )
            coef = pd.DataFrame(
                [
                    {
                        "term": t,
                        "coefficient": fmt(c["coef"]),
                        "95% CI": f"[{fmt(c['low'])}, {fmt(c['high'])}]",
                        "std. error": fmt(c["se"]),
                        "p": "< 0.001" if c["p"] < 0.001 else fmt(c["p"]),
                    }
                    for t, c in res["coefficients"].items()
                ]
            )
            body += _table(coef)
            for note in ([res["note"]] if res["note"] else []) + list(res["warnings"]):
                body.append(f'<p class="note">{html.escape(note)}</p>')
        body.append("</section>")

    main = runs[runs["experiment_kind"].astype(str) != "salience"] if "experiment_kind" in runs else runs
    if not main.empty:
        body += ['<section id="results">', "<h2>Results per setting</h2>"]
        body.append('<p class="note">mean [95% CI low, high] over seeds; — where not defined.</p>')
        body += _table(_results_table(aggregate(main)))
        body.append("</section>")

    if hparams is not None and not hparams.empty:
        body += ['<section id="hparams">', "<h2>Chosen hyperparameters</h2>"]
        hp = hparams.copy()
        for c in ("lr", "weight_decay"):
            if c in hp.columns:
                hp[c] = [f"{v:g}" if isinstance(v, float) and not math.isnan(v) else v for v in hp[c]]
        body += _table(hp)
        body.append("</section>")

    body += ['<section id="provenance">', "<h2>Provenance</h2>"]
    body += _provenance(provenance or {})
    body.append("</section>")

    for i, (sec_title, content) in enumerate(extra_sections or [], start=1):
        body += _extra(sec_title, content, plots, i)

    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body.append(
        f'<footer class="volatile">Generated by biastransfer {html.escape(biastransfer.__version__)} on '
        f"{stamp}.</footer>"
    )
    doc = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
    ]
    path = out / "report.html"
    path.write_text("\n".join(doc) + "\n", encoding="utf-8")
    return path

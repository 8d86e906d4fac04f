"""A self-contained HTML report of a study: the page skeleton; the sections of each experiment kind come from
its plugin.

``build_report`` writes ``out_dir/report.html`` (inline CSS, plots embedded as base64 PNG data URIs, no scripts
and nothing fetched from the web) and every plot as ``out_dir/plots/<name>.png``. The page is: the summary, the
verdict (every plugin's plain answers, each linked to its evidence), the reading (every plugin's findings), each
plugin's sections (in :attr:`Experiment.report_order`), the results per setting of every kind (derived from its
outcome schema), the chosen hyperparameters, the provenance, and extra sections. Kinds without runs contribute
nothing. Lines that change from machine to machine (package versions, machine, time of generation) carry
``class="volatile"`` so that a golden-file test can drop them.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import biastransfer
from biastransfer import plugins  # noqa: F401  (registers every experiment kind)
from biastransfer.analysis.text import fmt_ci, level_text
from biastransfer.experiments.base import EXPERIMENTS, Experiment, Results, Verdict, Verdicts
from biastransfer.render.markup import Page, Section, cell, escape, table

__all__ = ["SectionContent", "build_report", "kind_results"]

#: Content of an extra section: text (escaped, blank lines separate paragraphs), a table, a figure, or a list.
SectionContent = str | pd.DataFrame | Figure | Sequence["str | pd.DataFrame | Figure"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
p.summary { font-size: 1.05em; background: #f6f8fa; padding: 0.8em 1em; border-radius: 4px; }
section.verdict { background: #fff8e5; border-left: 4px solid #e0a800; padding: 0.2em 1em 0.4em; }
section.verdict h2 { border: none; margin-top: 0.6em; }
section.verdict li { font-size: 1.05em; margin: 0.3em 0; }
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

_VOLATILE_KEY = re.compile(r"version|machine|host|platform|python|time|date|cpu|gpu|cuda|device|torch|numpy", re.I)

#: Settings shown in the results tables only when they vary, and the headers they get.
_HEADERS = {"level_label": "level", "test_label": "test level", "n_train": "N"}
_CONTEXT = {"study", "experiment_kind", "base_kind", "base_attribute", "level", "test_level"}


def kind_results(runs: pd.DataFrame) -> list[tuple[Experiment, Results]]:
    """Each registered kind with runs, in report order, with its rows (its own columns) and the others' rows."""
    if runs.empty or "experiment_kind" not in runs.columns:
        return []
    present = [k for k in EXPERIMENTS.names() if (runs["experiment_kind"].astype(str) == k).any()]
    frames = {}
    for kind in present:
        names = [c.name for c in EXPERIMENTS.get(kind).all_columns() if c.name in runs.columns]
        frames[kind] = runs.loc[runs["experiment_kind"].astype(str) == kind, names].reset_index(drop=True)
    plugins_ = sorted((EXPERIMENTS.get(k)() for k in present), key=lambda p: (p.report_order, p.registry_name))
    return [(p, Results(frames[p.registry_name], {k: f for k, f in frames.items() if k != p.registry_name}))
            for p in plugins_]


def _summary(runs: pd.DataFrame, kinds: list[tuple[Experiment, Results]]) -> str:
    """The one-paragraph summary (plain text)."""
    if runs.empty:
        return "No finished runs."
    counts = runs["experiment_kind"].astype(str).value_counts()
    studies = sorted({str(s) for s in runs["study"].dropna().unique() if str(s)})
    parts = [f"{len(runs)} finished run(s)" + (f" of study {', '.join(studies)}" if studies else "")
             + ": " + ", ".join(f"{k} ({v})" for k, v in sorted(counts.items())) + "."]
    for col, what in (("dataset", "Dataset(s)"), ("task", "Tasks"), ("base", "Bases")):
        values = sorted({str(v) for v in runs[col].dropna().unique() if str(v)})
        if values:
            parts.append(f"{what}: {', '.join(values)}.")
    seeds = [int(n) for plugin, res in kinds for n in plugin.aggregate(res.runs)["n_seeds"]]
    if seeds:
        span = f"{min(seeds)}" if min(seeds) == max(seeds) else f"{min(seeds)}–{max(seeds)}"
        parts.append(f"{len(seeds)} setting(s) with {span} seed(s) each.")
    gap = sorted({str(g) for g in runs.get("gap_label", pd.Series(dtype=str)).dropna().unique()
                  if str(g) not in {"", "nan", "None"}})
    parts.append("Group gaps (FPR, TPR and equalised-odds differences) are signed "
                 + (f"{' / '.join(gap)} " if gap else "")
                 + "(group a=1 minus group a=0); intervals are Student-t 95% over seeds.")
    policies = sorted({str(p) for p in runs.get("threshold_policy", pd.Series(dtype=str)).dropna().unique()
                       if str(p) not in {"", "nan", "None"}})
    if policies:
        parts.append(f"Decision threshold: {', '.join(policies)}.")
    return " ".join(parts)


def _verdict(verdicts: Sequence[Verdict]) -> list[str]:
    """The verdict box: each plugin's plain sentences, each linked to the section that holds its evidence."""
    if not verdicts:
        return []
    items = [f'<li>{escape(v.text)} <a href="#{escape(v.evidence)}">(evidence)</a></li>' for v in verdicts]
    return ['<section id="verdict" class="verdict">', "<h2>Verdict</h2>", "<ul>", *items, "</ul>", "</section>"]


def _setting_text(value: Any) -> str:
    """A setting as a table cell: a whole float as an integer (a size that a mixed table made float), other
    floats to 4 significant digits (a realised share 0.1015625 → 0.1016), the rest as text."""
    if isinstance(value, float | np.floating) and np.isfinite(value):
        return str(int(value)) if float(value).is_integer() else f"{float(value):.4g}"
    return str(value)


def _results_table(plugin: Experiment, agg: pd.DataFrame) -> pd.DataFrame:
    """Readable results of one kind: the settings that vary (task and base always), seeds, ``mean [low, high]``
    per metric."""
    keep = [c for c in plugin.settings() if c in agg.columns and c not in _CONTEXT
            and (c in ("task", "base") or agg[c].astype(str).nunique() > 1)]
    sort_cols = [c for c in keep if c != "level_label"] + (["level"] if "level" in agg.columns else [])
    agg = agg.sort_values(sort_cols, kind="mergesort") if sort_cols else agg
    out = pd.DataFrame({c: [_setting_text(v) for v in agg[c]] for c in keep})
    if "level_label" in out.columns:
        out["level_label"] = [level_text(float(lv), str(lb)) for lv, lb in zip(agg["level"], agg["level_label"],
                                                                                 strict=True)]
    out = out.rename(columns=_HEADERS)
    out["seeds"] = agg["n_seeds"].astype(int).to_numpy()
    for m in plugin.metrics():
        if f"{m}_mean" in agg.columns:
            out[m] = [fmt_ci(a, b, c) for a, b, c in zip(agg[f"{m}_mean"], agg[f"{m}_low"], agg[f"{m}_high"],
                                                         strict=True)]
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
            pres.extend([f"<h3>{escape(key)}</h3>", f"<pre>{escape(value.rstrip())}</pre>"])
            return
        if isinstance(value, list | tuple | set):
            value = ", ".join(str(v) for v in value)
        cls = ' class="volatile"' if _VOLATILE_KEY.search(key) else ""
        rows.append(f"<tr{cls}><th>{escape(key)}</th><td>{cell(value)}</td></tr>")

    for k, v in prov.items():
        add(str(k), v)
    out = ["<table>", *rows, "</table>"] if rows else []
    return out + pres


def _extra(title: str, content: SectionContent, page: Page, idx: int) -> list[str]:
    """Markup of one extra section."""
    body: list[str] = []
    items = content if isinstance(content, list | tuple) else [content]
    for j, item in enumerate(items):
        if isinstance(item, pd.DataFrame):
            body += table(item)
        elif isinstance(item, Figure):
            body += page.figure(item, f"extra_{idx}_{title}_{j}", title, title)
        else:
            body += [f"<p>{escape(para)}</p>" for para in re.split(r"\n\s*\n", str(item).strip())]
    return Section(f"extra-{idx}", title, body).markup()


def build_report(runs: pd.DataFrame, out_dir: str | Path, *, title: str, hparams: pd.DataFrame | None = None,
                 provenance: Mapping[str, Any] | None = None,
                 extra_sections: Sequence[tuple[str, SectionContent]] | None = None) -> Path:
    """Write a self-contained HTML report and its plots; return the path of ``report.html``.

    Args:
        runs: the tidy runs frame (one row per finished run; :func:`biastransfer.store.export.runs_frame`).
        out_dir: output folder (created); receives ``report.html`` and ``plots/*.png``.
        title: report title.
        hparams: chosen hyperparameters (``base, task, n_train, lr, weight_decay, val_loss, trials``).
        provenance: package versions, seeds, data hash, study YAML text, machine … Nested mappings are
            flattened as ``key.sub``; multi-line strings are shown in ``<pre>`` blocks.
        extra_sections: ``(heading, content)`` pairs appended after the standard sections; content is text
            (escaped), a DataFrame (table), a Figure (embedded and saved) or a list of those.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = Page(out)
    kinds = kind_results(runs)
    body: list[str] = [f"<h1>{escape(title)}</h1>", f'<p class="summary">{escape(_summary(runs, kinds))}</p>']
    body += _verdict([v for plugin, res in kinds if isinstance(plugin, Verdicts) for v in plugin.verdict(res)])
    reading = [line for plugin, res in kinds for line in plugin.reading(res)] or ["No findings to read."]
    body += Section("reading", "Reading", ["<ul>", *[f"<li>{escape(s)}</li>" for s in reading], "</ul>"]).markup()
    for plugin, res in kinds:
        for section in plugin.sections(res, page):
            body += section.markup()
    if kinds:
        results = [page.note("mean [95% CI low, high] over seeds; — where not defined.")]
        for plugin, res in kinds:
            results += [page.heading(plugin.registry_name), page.note(plugin.description),
                        *table(_results_table(plugin, plugin.aggregate(res.runs)))]
        body += Section("results", "Results per setting", results).markup()
    if hparams is not None and not hparams.empty:
        hp = hparams.copy()
        for c in ("lr", "weight_decay"):
            if c in hp.columns:
                hp[c] = [f"{v:g}" if isinstance(v, float) and not math.isnan(v) else v for v in hp[c]]
        body += Section("hparams", "Chosen hyperparameters", table(hp)).markup()
    body += Section("provenance", "Provenance", _provenance(provenance or {})).markup()
    for i, (sec_title, content) in enumerate(extra_sections or [], start=1):
        body += _extra(sec_title, content, page, i)
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body.append(f'<footer class="volatile">Generated by biastransfer {html.escape(biastransfer.__version__)} on '
                f"{stamp}.</footer>")
    doc = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{escape(title)}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>", *body, "</body>",
           "</html>"]
    path = out / "report.html"
    path.write_text("\n".join(doc) + "\n", encoding="utf-8")
    return path

"""Markup primitives of the report that sections are written with: escaped cells, tables, embedded figures.

All text is escaped with :func:`html.escape`; NaN is shown as "—". The markup puts one element per line, so a
golden-file test can compare reports line by line. Figures are written to ``plots/<name>.png`` and embedded as
base64 PNG data URIs (the page fetches nothing).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

__all__ = ["DPI", "Page", "Section", "cell", "escape", "table"]

#: Resolution of saved figures.
DPI = 110


def escape(text: object) -> str:
    return html.escape(str(text))


def cell(x: object) -> str:
    """Escaped text of a cell: NaN / None as "—", floats with 3 decimals."""
    if x is None:
        return "—"
    if isinstance(x, float):
        return "—" if math.isnan(x) else html.escape(f"{x:.4g}" if abs(x) < 1e-3 and x != 0 else f"{x:.3f}")
    if isinstance(x, str) and x in {"", "nan", "NaN", "None"}:
        return "—" if x != "" else ""
    return html.escape(str(x))


def table(df: pd.DataFrame, numeric: Sequence[str] = ()) -> list[str]:
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
            cells.append(f"<td{cls}>{cell(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return out


def png(fig: Figure) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


@dataclass
class Section:
    """One ``<section>`` of the report: its id (an anchor; unique in the page), heading and body markup."""

    id: str
    title: str
    body: list[str] = field(default_factory=list)

    def markup(self) -> list[str]:
        return [f'<section id="{escape(self.id)}">', f"<h2>{escape(self.title)}</h2>", *self.body, "</section>"]


class Page:
    """What sections are written with: saves figures to ``plots/`` and renders markup."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = Path(out_dir) / "plots"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def figure(self, fig: Figure, name: str, alt: str, caption: str) -> list[str]:
        """Write ``plots/<name>.png`` and return the ``<figure>`` markup."""
        data = png(fig)
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

    @staticmethod
    def table(df: pd.DataFrame, numeric: Sequence[str] = ()) -> list[str]:
        return table(df, numeric)

    @staticmethod
    def note(text: str) -> str:
        return f'<p class="note">{escape(text)}</p>'

    @staticmethod
    def paragraph(text: str) -> str:
        return f"<p>{escape(text)}</p>"

    @staticmethod
    def heading(text: str) -> str:
        return f"<h3>{escape(text)}</h3>"

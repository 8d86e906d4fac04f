"""The numbers and structure of a report, without its CSS or prose: what golden tests compare.

For every ``<section>`` of the page (the provenance excepted: versions and paths change between machines):
its headings, its tables (header and rows, cells as shown), the files of its figures, and the numbers in its
paragraphs and list items (the reading's numbers, not its wording). The summary paragraph's numbers too.
"""

from __future__ import annotations

import html
import re

_NUMBER = re.compile(r"−?-?\d+(?:\.\d+)?")
_TAG = re.compile(r"<[^>]+>")


def _text(markup: str) -> str:
    return html.unescape(_TAG.sub("", markup)).strip()


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(text)


def page_snapshot(page: str, skip: tuple[str, ...] = ("provenance",)) -> dict[str, dict]:
    """``{section id: {"headings", "tables", "figures", "numbers"}}`` plus ``"summary"`` (its numbers)."""
    out: dict[str, dict] = {}
    summary = re.search(r'<p class="summary">(.*?)</p>', page, re.S)
    out["summary"] = {"numbers": _numbers(_text(summary.group(1))) if summary else []}
    for match in re.finditer(r'<section id="([^"]+)">\n(.*?)\n</section>', page, re.S):
        sid, body = match.group(1), match.group(2)
        if sid in skip:
            continue
        snap: dict[str, list] = {"headings": [], "tables": [], "figures": [], "numbers": []}
        table: list[list[str]] | None = None
        for line in body.splitlines():
            if 'class="volatile"' in line:
                continue
            if line.startswith(("<h2>", "<h3>")):
                snap["headings"].append(_text(line))
            elif line == "<table>":
                table = []
            elif line == "</table>":
                snap["tables"].append(table)
                table = None
            elif line.startswith("<tr>") and table is not None:
                table.append([_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", line)])
            elif line.startswith("<figcaption>"):
                snap["figures"].append(re.search(r"\(file: (plots/[^)]+)\)", line).group(1))
            elif line.startswith(("<p", "<li>")):
                snap["numbers"].append(_numbers(_text(line)))
        out[sid] = snap
    return out

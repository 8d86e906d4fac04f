"""How numbers are written in readings and tables: 3 decimals, intervals in brackets, NaN as an em dash."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["context_labels", "fmt", "fmt_ci", "fmt_signed", "level_text", "names"]


def fmt(x: float | None, digits: int = 3) -> str:
    """A number with ``digits`` decimals; NaN or None as an em dash; a value that rounds to zero has no sign
    (``-0.0004`` is ``0.000``, not ``-0.000``)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    text = f"{x:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def fmt_signed(x: float | None, digits: int = 3) -> str:
    """:func:`fmt` with an explicit ``+`` on positive values (a difference): ``+0.012``, ``-0.004``, ``0.000``."""
    text = fmt(x, digits)
    return "+" + text if text not in ("—",) and float(text) > 0 else text


def fmt_ci(mean: float, low: float, high: float, digits: int = 3) -> str:
    """``mean [low, high]``; just ``mean`` when the bounds are NaN (one seed)."""
    if any(math.isnan(v) for v in (low, high)):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def level_text(level: float, label: str) -> str:
    """How a finetuning level is named in text: ``0.8``, or ``natural (0.78)``."""
    if str(label) == "natural":
        return "natural" if math.isnan(level) else f"natural ({level:.2f})"
    return str(label) if str(label) not in {"", "nan"} else f"{level:g}"


def names(items: Sequence[str]) -> str:
    """``a, b and c``."""
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


CONTEXT_KEYS = ("study", "experiment", "dataset", "test_label", "threshold_policy", "n_train")


def context_labels(records: Sequence[Mapping[str, Any]], ident: tuple[str, ...],
                   keys: tuple[str, ...] = CONTEXT_KEYS) -> list[str]:
    """Per record, ``" (N=128, experiment=x)"`` naming the context columns that take several values among
    the records sharing its ``ident`` columns (empty when the identity alone is unique)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(tuple(str(rec.get(k)) for k in ident), []).append(i)
    parts: list[list[str]] = [[] for _ in records]
    for idxs in groups.values():
        for k in keys:
            if len({str(records[i].get(k)) for i in idxs}) > 1:
                for i in idxs:
                    v = records[i].get(k)
                    if k in ("n_train", "n_requested"):
                        parts[i].append(f"N={int(v) if isinstance(v, float) and v.is_integer() else v}")
                    else:
                        parts[i].append(f"{k}={v}")
    return [f" ({', '.join(p)})" if p else "" for p in parts]

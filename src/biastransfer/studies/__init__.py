"""The bundled study files, found by name: ``biastransfer studies`` lists them and ``biastransfer run NAME``
runs one. A study is named by its file stem (``fashion_spurious``) or by its ``name:`` (``fashion-spurious``)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml


@dataclass(frozen=True)
class BundledStudy:
    """One bundled study file: its stem, its ``name:``, description and estimated minutes on 2 CPU cores."""

    stem: str
    name: str
    description: str
    estimated_minutes: float | None
    text: str

    @property
    def filename(self) -> str:
        return f"{self.stem}.yaml"


def bundled() -> list[BundledStudy]:
    """Every bundled study, sorted by stem."""
    out = []
    for entry in sorted(resources.files(__name__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        text = entry.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
        minutes = data.get("estimated_minutes")
        out.append(BundledStudy(stem=entry.name[: -len(".yaml")], name=str(data.get("name", "")),
                                description=" ".join(str(data.get("description", "")).split()),
                                estimated_minutes=float(minutes) if minutes is not None else None, text=text))
    return out


def find(name: str) -> BundledStudy | None:
    """The bundled study whose stem or ``name:`` is ``name`` (``-`` and ``_`` alike), or None."""
    wanted = name.removesuffix(".yaml").replace("-", "_")
    for study in bundled():
        if wanted in (study.stem.replace("-", "_"), study.name.replace("-", "_")):
            return study
    return None


def resolve(study: str | Path) -> Path | None:
    """A study argument as a file: an existing path as it is, else the bundled study of that name (a path inside
    the installed package), else None."""
    path = Path(study)
    if path.exists():
        return path
    found = find(str(study)) if path.parent == Path(".") else None
    if found is None:
        return None
    with resources.as_file(resources.files(__name__) / found.filename) as bundled_path:
        return Path(bundled_path)

"""Shared fixtures: a tiny synthetic benchmark and a tiny study, cached once per test session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tiny_study import TINY_PARAMS, kind_study_dict


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_synthetic(cache_dir: Path):
    from biastransfer.data.synthetic import SyntheticDataset

    return SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)


@dataclass
class TinyReport:
    """A real tiny study of one experiment kind, run through the CLI, and its report."""

    out: Path
    html: str


@pytest.fixture(scope="session")
def kind_report(tmp_path_factory: pytest.TempPathFactory):
    """``kind_report(kind)``: the tiny study of ``kind``'s example block, run once per session in this process
    with one torch thread and a cache of its own (so its numbers do not depend on which test trained a base
    first), reported by ``biastransfer run``."""
    import torch
    import yaml
    from typer.testing import CliRunner

    from biastransfer.cli import app

    cache = tmp_path_factory.mktemp("golden-cache")
    done: dict[str, TinyReport] = {}

    def get(kind: str) -> TinyReport:
        if kind not in done:
            folder = tmp_path_factory.mktemp(f"report-{kind}")
            study = folder / "study.yaml"
            study.write_text(yaml.safe_dump(kind_study_dict(kind)))
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                result = CliRunner().invoke(app, ["run", str(study), "--out", str(folder / "out"), "--quiet",
                                                  "--workers", "1", "--cache-dir", str(cache)])
            finally:
                torch.set_num_threads(threads)
            assert result.exit_code == 0, result.output
            done[kind] = TinyReport(folder / "out", (folder / "out" / "report.html").read_text(encoding="utf-8"))
        return done[kind]

    return get

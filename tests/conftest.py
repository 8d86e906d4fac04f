"""Shared fixtures: a tiny synthetic benchmark and a tiny study, cached once per test session."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


_DATA_CONFTEST = Path(__file__).resolve().parent / "data" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_fmnist_idx_helpers", _DATA_CONFTEST)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
write_idx = _helpers.write_idx  # the idx writer of tests/data (reused, not copied)

N_TRAIN_ITEMS, N_TEST_ITEMS = 1000, 200


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST idx files: 1000 train and 200 test items, labels i % 10 (100 / 20 per class).

    The class shifts the mean intensity a little, so that finetuned models learn something.
    """
    root = tmp_path_factory.mktemp("fake-fmnist")
    rng = np.random.default_rng(0)
    for part, n in (("train", N_TRAIN_ITEMS), ("t10k", N_TEST_ITEMS)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        base = rng.integers(0, 120, size=(n, 28, 28))
        images = np.clip(base + 12 * labels[:, None, None], 0, 255).astype(np.uint8)
        write_idx(root / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{part}-labels-idx1-ubyte.gz", labels)
    return root

"""Shared fixtures: a tiny synthetic benchmark and a tiny study, cached once per test session."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tiny_study import TINY_PARAMS


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


#: The committed stores the goldens are rendered from: one per experiment kind, the runs of its tiny study
#: (``tests/fixtures/stores/make_stores.py`` regenerates them).
STORES = Path(__file__).resolve().parent / "fixtures" / "stores"


@pytest.fixture(scope="session")
def kind_report(tmp_path_factory: pytest.TempPathFactory):
    """``kind_report(kind)``: the report of ``kind``'s tiny study, rendered by ``biastransfer report`` from the
    committed store of its runs (a copy, once per session). No training is involved, so the page and its numbers
    are the same on every CPU and thread count; the training path has its own tests (tests/e2e)."""
    import shutil

    from typer.testing import CliRunner

    from biastransfer.cli import app

    done: dict[str, TinyReport] = {}

    def get(kind: str) -> TinyReport:
        if kind not in done:
            out = tmp_path_factory.mktemp(f"report-{kind}") / "out"
            out.mkdir()
            shutil.copyfile(STORES / f"{kind}.db", out / "results.db")
            result = CliRunner().invoke(app, ["report", str(out), "--quiet"])
            assert result.exit_code == 0, result.output
            done[kind] = TinyReport(out, (out / "report.html").read_text(encoding="utf-8"))
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

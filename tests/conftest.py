"""Shared fixtures: a tiny synthetic benchmark and a tiny study, cached once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiny_study import TINY_PARAMS


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_synthetic(cache_dir: Path):
    from biastransfer.data.synthetic import SyntheticDataset

    return SyntheticDataset().load(root=None, cache_dir=cache_dir / "data", resolution=16, **TINY_PARAMS)

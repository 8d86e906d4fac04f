"""Concurrent first-time generation of the same built-in dataset: every writer uses its own temporary names and
renames atomically, so all succeed, read the same data, and leave no partial file (issue: 1 of 12 concurrent
generations used to fail on a shared temporary name)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from biastransfer import plugins  # noqa: F401
from biastransfer.data.registry import load_dataset


def test_concurrent_generations_all_succeed_and_agree(tmp_path: Path) -> None:
    results: list = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def generate() -> None:
        try:
            start.wait()
            results.append(load_dataset("synthetic", cache_dir=tmp_path, resolution=16,
                                        params={"pretrain": 200, "train": 200, "val": 100, "test": 100}))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=generate) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(results) == 8
    assert len({r.fingerprint for r in results}) == 1
    assert all(np.array_equal(r.images.array, results[0].images.array) for r in results)
    leftovers = [p.name for p in tmp_path.rglob("*") if "partial" in p.name or p.suffix == ".tmp"]
    assert leftovers == []

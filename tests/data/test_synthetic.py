"""The built-in benchmark: deterministic, cached, labelled as documented, and strict about its parameters."""

from __future__ import annotations

import numpy as np
import pytest

from biastransfer.data.synthetic import CUES, SyntheticDataset, SyntheticParams, generate
from biastransfer.data.table import DataError
from biastransfer.interventions import natural_level


def test_tables_and_images_align(tiny_synthetic):
    table, images = tiny_synthetic.table, tiny_synthetic.images
    assert len(table) == len(images) == 600 + 1200 + 600 + 800
    assert images.array.shape[1:] == (16, 16, 3) and images.array.dtype == np.uint8
    assert set(table.frame["split"]) == {"pretrain", "train", "val", "test"}
    assert table.sensitive == "a" and table.tasks == tuple(c.name for c in CUES)
    assert len(table.tasks) >= 6


def test_natural_levels_follow_the_cues(tiny_synthetic):
    table = tiny_synthetic.table
    rows = table.split_indices("train")
    for cue in CUES:
        level = natural_level(table.column(cue.name)[rows], table.column("a")[rows])
        assert abs(level - cue.natural_level) < 0.06, cue.name
    pre = table.split_indices("pretrain")
    for cue in CUES:  # pretraining pool: targets independent of a
        assert abs(natural_level(table.column(cue.name)[pre], table.column("a")[pre]) - 0.5) < 0.08


def test_generation_is_deterministic_and_seed_dependent():
    p = SyntheticParams(resolution=16, pretrain=20, train=20, val=20, test=20)
    t1, x1 = generate(p)
    t2, x2 = generate(p)
    assert t1.equals(t2) and np.array_equal(x1, x2)
    _, x3 = generate(SyntheticParams(seed=1, resolution=16, pretrain=20, train=20, val=20, test=20))
    assert not np.array_equal(x1, x3)


def test_cache_is_reused(tmp_path, monkeypatch):
    src = SyntheticDataset()
    first = src.load(root=None, cache_dir=tmp_path, resolution=16, pretrain=20, train=20, val=20, test=20)

    def boom(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr("biastransfer.data.synthetic.generate", boom)
    second = src.load(root=None, cache_dir=tmp_path, resolution=16, pretrain=20, train=20, val=20, test=20)
    assert first.fingerprint == second.fingerprint
    assert np.array_equal(first.images.array, second.images.array)


def test_unknown_parameter_names_the_allowed_ones(tmp_path):
    with pytest.raises(DataError, match=r"unknown parameter\(s\) colour.*allowed: seed"):
        SyntheticDataset().load(root=None, cache_dir=tmp_path, resolution=16, colour=3)


def test_level_outside_unit_interval_is_rejected(tmp_path):
    with pytest.raises(DataError, match=r"natural level of t0 must be in \[0, 1\], got 1.5"):
        SyntheticDataset().load(root=None, cache_dir=tmp_path, resolution=16,
                                levels=[1.5, 0.2, 0.8, 0.8, 0.2, 0.8])


def test_unknown_attribute_lists_the_attributes(tiny_synthetic):
    with pytest.raises(DataError, match=r"unknown attribute 't9'; allowed: a, t0"):
        tiny_synthetic.table.column("t9")

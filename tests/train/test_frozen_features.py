"""The frozen-feature fast path (train/features.py): a head trained on cached features gives the slow path's numbers
within float rounding (flips off and on, fixed-feature and the probe phase of LP-FT), and the cache is reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from biastransfer.models.architectures import Classifier, build_model
from biastransfer.models.transfer import get_transfer_mode
from biastransfer.train import features as feat
from biastransfer.train.engine import FitConfig, FitResult, Split, fit, make_split, predict_logits

CPU = torch.device("cpu")


def store(n: int = 96, size: int = 12, seed: int = 0) -> torch.Tensor:
    """Images whose left and right halves differ, so that a flip changes the features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g)
    x[:, :, : size // 2] //= 3
    return x.permute(0, 3, 1, 2)


def base(seed: int = 0, num_outputs: int = 1) -> Classifier:
    torch.manual_seed(seed)
    model = build_model("small_resnet", num_outputs=num_outputs)
    for m in model.modules():  # BatchNorm statistics other than the defaults
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def sets(images: torch.Tensor, classes: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.random.default_rng(1)
    labels = g.integers(0, 3, len(images)) if classes else g.integers(0, 2, len(images)).astype(np.float32)
    rows = g.permutation(len(images))
    return rows[:44], rows[44:72], labels


def train_both(mode: str, flip: bool, *, weights: bool = False, classes: bool = False, seed: int = 3,
               cached: bool = False, **options) -> tuple[tuple[Classifier, FitResult], tuple[Classifier, FitResult]]:
    images = store()
    tr, va, labels = sets(images, classes)
    w = np.linspace(0.5, 1.5, len(tr)).astype(np.float32) if weights else None
    train = make_split(images, tr, labels[tr], w, classes=classes)
    val = make_split(images, va, labels[va], classes=classes)
    config = FitConfig(lr=0.05, batch_size=8, max_epochs=6, patience=2, flip=flip)
    out = []
    for fast in (False, True):
        model = base(num_outputs=3 if classes else 1)
        phases = get_transfer_mode(mode, **options).phases()
        source = feat.RowFeatures(model, images, "store", tr, va, device=CPU, cache=feat.FeatureCache()) \
            if cached else None
        out.append((model, fit(model, train, val, config, seed=seed, device=CPU, phases=phases, fast=fast,
                               features=source)))
    return out[0], out[1]


def assert_same(slow: tuple[Classifier, FitResult], fast: tuple[Classifier, FitResult]) -> None:
    (m_slow, r_slow), (m_fast, r_fast) = slow, fast
    assert r_fast.epochs == r_slow.epochs and r_fast.best_epoch == r_slow.best_epoch
    for a, b in zip(r_slow.history, r_fast.history, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
    s_slow, s_fast = m_slow.state_dict(), m_fast.state_dict()
    assert s_slow.keys() == s_fast.keys()
    for k in s_slow:
        torch.testing.assert_close(s_fast[k], s_slow[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize(("flip", "cached"), [(False, False), (True, False), (True, True)])
def test_fixed_feature_fast_path_equals_slow_path(flip: bool, cached: bool) -> None:
    slow, fast = train_both("fixed_feature", flip, cached=cached)
    assert slow[1].history[0]["train_loss"] != slow[1].history[1]["train_loss"]  # it trains
    assert_same(slow, fast)


def test_flips_matter_here() -> None:
    """The check above would not notice broken flip handling if flips changed nothing."""
    (_, off), _ = train_both("fixed_feature", False)
    (_, on), _ = train_both("fixed_feature", True)
    assert off.history[0]["train_loss"] != pytest.approx(on.history[0]["train_loss"], rel=1e-4)


def test_fast_path_with_weights_and_classes() -> None:
    assert_same(*train_both("fixed_feature", True, weights=True, classes=True))


def test_linear_probe_phase_then_finetune_equals_slow_path() -> None:
    """The probe phase takes the fast path; the finetuning phase continues from the same generators."""
    slow, fast = train_both("linear_probe_then_finetune", True, probe_share=0.5)
    assert slow[1].epochs > 3  # both phases ran
    assert_same(slow, fast)


def test_modes_that_move_the_backbone_take_the_slow_path() -> None:
    model = base()
    assert feat.head_only(get_transfer_mode("fixed_feature").phases()[0], model)
    assert not feat.head_only(get_transfer_mode("fixed_feature", update_bn=True).phases()[0], model)
    assert not feat.head_only(get_transfer_mode("freeze_stages", k=3).phases()[0], model)
    assert not feat.head_only(get_transfer_mode("full").phases()[0], model)
    assert not feat.head_only(None, model)
    model.backbone.layer3.add_module("drop", nn.Dropout(0.1))  # dropout trains in train mode: features vary
    assert not feat.head_only(get_transfer_mode("fixed_feature").phases()[0], model)


def test_cache_is_reused_across_runs_and_seeds() -> None:
    images = store()
    tr, va, labels = sets(images)
    cache = feat.FeatureCache()
    config = FitConfig(lr=0.05, batch_size=8, max_epochs=3, patience=5, flip=True)
    phases = get_transfer_mode("fixed_feature").phases()
    for seed in (0, 1, 2):
        model = base()  # the same base, a new copy per run
        source = feat.RowFeatures(model, images, "store", tr, va, device=CPU, cache=cache)
        fit(model, make_split(images, tr, labels[tr]), make_split(images, va, labels[va]), config, seed=seed,
            device=CPU, phases=phases, features=source)
        assert source.used
        if seed == 0:
            first = cache.computed
            assert first == 2 * len(tr) + len(va) and cache.hits == 0  # rows and their mirror images
    assert cache.computed == first and cache.hits == 2 * (2 * len(tr) + len(va))
    assert len(cache) == 2  # one entry per flip
    # scoring other rows adds only those rows; a different base is another entry
    test_rows = np.arange(len(images))
    logits = feat.head_logits(model, source.features(test_rows, False), device=CPU)
    torch.testing.assert_close(logits, predict_logits(model, images[torch.as_tensor(test_rows)], device=CPU),
                               rtol=1e-4, atol=1e-5)
    assert cache.computed == first + len(test_rows) - len(set(tr) | set(va))
    other = feat.RowFeatures(base(seed=5), images, "store", tr, va, device=CPU, cache=cache)
    other.val()
    assert len(cache) == 3 and cache.computed == first + len(test_rows) - len(set(tr) | set(va)) + len(va)


def test_cached_features_equal_computed_ones_and_lru_bound() -> None:
    images = store()
    model = base()
    cache = feat.FeatureCache(max_bytes=1)
    rows = np.array([5, 3, 5, 90])
    got = feat.RowFeatures(model, images, "s", rows, None, device=CPU, cache=cache).train(True)
    want = feat.compute_features(model, images[torch.as_tensor(rows)], flip=True, device=CPU)
    torch.testing.assert_close(got, want)
    feat.RowFeatures(model, images, "s", rows, None, device=CPU, cache=cache).train(False)
    assert len(cache) == 1  # over the bound: the least recently used entry went, the one in use stays


def test_split_training_without_cache_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit`` picks the fast path by itself (features from the splits) and never runs the backbone per batch."""
    images = store()
    tr, _, labels = sets(images)
    model = base()
    calls = []
    monkeypatch.setattr(feat, "compute_features", lambda *a, **k: calls.append(k["flip"]) or torch.zeros(
        len(a[1]), model.feature_dim))
    model.backbone.forward = lambda x: (_ for _ in ()).throw(AssertionError("backbone ran"))
    fit(model, make_split(images, tr, labels[tr]), Split(images[:8], torch.zeros(8)),
        FitConfig(max_epochs=2, batch_size=8), seed=0, device=CPU, phases=get_transfer_mode("fixed_feature").phases())
    assert sorted(calls) == [False, False, True]

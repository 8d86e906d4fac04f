"""The training engine: deterministic, weighted, early-stopping, with tensor-level flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biastransfer.models.architectures import build_model
from biastransfer.train.engine import (
    FitConfig,
    Split,
    evaluate_loss,
    fit,
    make_split,
    predict_logits,
    random_flip,
    weighted_bce,
)


def _data(tiny_synthetic, n=64):
    images = tiny_synthetic.images.tensor()
    rows = tiny_synthetic.table.split_indices("train")[:n]
    y = tiny_synthetic.table.column("t0")[rows]
    return images, rows, y


def _train(tiny_synthetic, seed, weights=None):
    images, rows, y = _data(tiny_synthetic)
    torch.manual_seed(seed)
    model = build_model("small_resnet")
    train = make_split(images, rows[:48], y[:48], weights)
    val = make_split(images, rows[48:], y[48:])
    res = fit(model, train, val, FitConfig(lr=0.05, max_epochs=3, patience=5), seed=seed,
              device=torch.device("cpu"))
    return model, res, predict_logits(model, images[torch.as_tensor(rows)], device=torch.device("cpu"))


def test_same_seed_same_numbers(tiny_synthetic):
    _, r1, s1 = _train(tiny_synthetic, 0)
    _, r2, s2 = _train(tiny_synthetic, 0)
    assert torch.equal(s1, s2)
    assert r1.best_val_loss == r2.best_val_loss
    _, _, s3 = _train(tiny_synthetic, 1)
    assert not torch.equal(s1, s3)


def test_weights_change_training(tiny_synthetic):
    _, _, plain = _train(tiny_synthetic, 0)
    w = np.ones(48)
    w[:24] = 0.1
    _, _, weighted = _train(tiny_synthetic, 0, w / w.mean())
    assert not torch.equal(plain, weighted)


def test_weighted_bce_formula():
    logits = torch.tensor([[0.0], [2.0]])
    targets = torch.tensor([[1.0], [0.0]])
    w = torch.tensor([[2.0], [0.0]])
    expected = (2.0 * np.log(2.0) + 0.0) / 2
    assert np.isclose(float(weighted_bce(logits, targets, w)), expected)
    assert np.isclose(float(weighted_bce(logits, targets, None)),
                      (np.log(2.0) + np.log(1 + np.exp(2.0))) / 2)


def test_flip_flips_about_half_and_only_horizontally():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4).repeat(50, 1, 1, 1)
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = (out != x).flatten(1).any(1)
    assert 30 < int(flipped.sum()) < 70
    assert torch.equal(out[flipped], x[flipped].flip(3))


def test_early_stopping_restores_the_best_epoch(tiny_synthetic):
    images, rows, y = _data(tiny_synthetic)
    torch.manual_seed(0)
    model = build_model("small_resnet")
    res = fit(model, make_split(images, rows[:48], y[:48]), make_split(images, rows[48:], y[48:]),
              FitConfig(lr=2.0, max_epochs=8, patience=2), seed=0, device=torch.device("cpu"))
    assert res.epochs <= 8
    assert res.best_epoch <= res.epochs
    losses = [h["val_loss"] for h in res.history if np.isfinite(h.get("val_loss", np.nan))]
    assert np.isclose(res.best_val_loss, min(losses))


def test_the_returned_model_is_the_best_epochs_not_the_last(tiny_synthetic):
    """After early stopping the model holds the weights of its best validation epoch: scoring the validation
    set again gives the best loss, not the last epoch's."""
    images, rows, y = _data(tiny_synthetic)
    torch.manual_seed(0)
    model = build_model("small_resnet")
    val = make_split(images, rows[48:], y[48:])
    res = fit(model, make_split(images, rows[:48], y[:48]), val, FitConfig(lr=0.5, max_epochs=10, patience=3),
              seed=0, device=torch.device("cpu"))
    last = res.history[-1]["val_loss"]
    assert res.best_epoch < res.epochs and last > res.best_val_loss + 1e-3  # the scenario: it got worse
    again = evaluate_loss(model, val, device=torch.device("cpu"))
    assert again == pytest.approx(res.best_val_loss, rel=1e-6)


def test_split_validates_inputs():
    with pytest.raises(TypeError, match="uint8"):
        Split(torch.zeros(2, 3, 4, 4), torch.zeros(2))
    with pytest.raises(ValueError, match="2 images but 3 targets"):
        Split(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_learning_rate_schedule_per_step(tiny_synthetic, monkeypatch, schedule):
    """constant keeps lr; cosine gives lr_t = lr·(1 + cos(π·t/T))/2 at step t of T = epochs × steps per epoch."""
    import math

    seen: list[float] = []
    step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    images, rows, y = _data(tiny_synthetic)
    torch.manual_seed(0)
    train, val = make_split(images, rows[:48], y[:48]), make_split(images, rows[48:], y[48:])
    fit(build_model("small_resnet"), train, val,
        FitConfig(lr=0.05, batch_size=16, max_epochs=2, patience=5, schedule=schedule), seed=0,
        device=torch.device("cpu"))
    total = 2 * 3
    expected = [0.05 * (1 + math.cos(math.pi * t / total)) / 2 if schedule == "cosine" else 0.05
                for t in range(total)]
    assert seen == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="schedule must be one of constant, cosine"):
        FitConfig(schedule="linear")

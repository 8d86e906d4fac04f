"""The memory layout per host: a fixed rule from the CPU capability, an environment override, and the layout the
engine trains in (recorded for each run's provenance)."""

from __future__ import annotations

import pytest
import torch

from biastransfer.models.architectures import build_model
from biastransfer.train import layout
from biastransfer.train.engine import FitConfig, fit, make_split, predict_logits
from biastransfer.train.ops import to_float

CPU = torch.device("cpu")


@pytest.mark.parametrize(("device", "capability", "onednn", "expected"), [
    ("cpu", "AVX512", True, "channels_last"),
    ("cpu", "AVX2", True, "channels_last"),
    ("cpu", "DEFAULT", True, "contiguous"),
    ("cpu", "AVX512", False, "contiguous"),
    ("cpu", "SVE256", True, "contiguous"),
    ("cuda", "AVX512", True, "channels_last"),
    ("cuda", "DEFAULT", False, "channels_last"),
])
def test_rule_depends_on_the_host_only(device, capability, onednn, expected):
    name, why = layout.layout_rule(device, capability, onednn)
    assert name == expected and why.startswith("rule: ")
    assert layout.layout_rule(device, capability, onednn) == (name, why)  # deterministic: no timing involved


def test_this_host_follows_the_rule(monkeypatch):
    monkeypatch.delenv(layout.ENV, raising=False)
    expected = layout.layout_rule("cpu", torch.backends.cpu.get_cpu_capability(), torch.backends.mkldnn.is_available())
    assert layout.choose(CPU) == expected
    assert layout.memory_format_provenance(CPU) == {"memory_format": expected[0], "memory_format_by": expected[1]}


@pytest.mark.parametrize("name", ["contiguous", "channels_last", "Channels_Last"])
def test_environment_overrides_the_rule(monkeypatch, name):
    monkeypatch.setenv(layout.ENV, name)
    assert layout.memory_format_name(CPU) == name.lower()
    assert layout.memory_format_name("cuda") == name.lower()
    assert layout.memory_format_provenance() == {"memory_format": name.lower(), "memory_format_by": layout.ENV}


def test_a_wrong_override_is_named(monkeypatch):
    monkeypatch.setenv(layout.ENV, "nhwc")
    with pytest.raises(ValueError, match="BIASTRANSFER_MEMORY_FORMAT='nhwc': must be one of contiguous, channels_last"):
        layout.memory_format(CPU)


def _train(tiny_synthetic):
    images = tiny_synthetic.images.tensor()
    rows = tiny_synthetic.table.split_indices("train")[:64]
    y = tiny_synthetic.table.column("t0")[rows]
    torch.manual_seed(0)
    model = build_model("small_resnet")
    res = fit(model, make_split(images, rows[:48], y[:48]), make_split(images, rows[48:], y[48:]),
              FitConfig(lr=0.05, max_epochs=2, patience=5), seed=0, device=CPU)
    return model, res, predict_logits(model, images[torch.as_tensor(rows)], device=CPU)


def test_the_engine_trains_in_the_chosen_layout(monkeypatch, tiny_synthetic):
    runs = {}
    for name in ("channels_last", "contiguous"):
        monkeypatch.setenv(layout.ENV, name)
        fmt = layout.MEMORY_FORMATS[name]
        assert to_float(torch.zeros(4, 3, 8, 8, dtype=torch.uint8)).is_contiguous(memory_format=fmt)
        model, res, logits = _train(tiny_synthetic)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=fmt)
        again = _train(tiny_synthetic)
        assert again[1].history == res.history and torch.equal(again[2], logits)  # same layout: same numbers
        runs[name] = (res, logits)
    # another layout sums in another order: the same training within float rounding
    (a, la), (b, lb) = runs["channels_last"], runs["contiguous"]
    assert a.best_epoch == b.best_epoch
    assert a.best_val_loss == pytest.approx(b.best_val_loss, rel=1e-3)
    assert torch.allclose(la, lb, atol=1e-3)

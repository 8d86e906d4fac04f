"""Engine options: ``FitConfig.compile`` (compiled training and evaluation match eager within float rounding,
reuse compiled code across runs, stay deterministic) and ``FitConfig.precision="bf16"``.

Tolerances: compiled kernels fuse and reorder fp32 arithmetic, so single results differ from eager by a few
ulps (~1e-7 relative). Inference logits are compared at 1e-5; after a few SGD steps the differences grow by the
number of steps times the local sensitivity, so training losses and final logits are compared at 1e-4
(observed differences are below 1e-6). Real errors are orders of magnitude larger: a missed BatchNorm
running-statistics update or a wrong gradient moves logits and losses by 1e-2 or more.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from biastransfer.models.architectures import Classifier
from biastransfer.train import compile as bt_compile
from biastransfer.train.engine import FitConfig, Split, fit, predict_logits

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def needs_compile():
    if not bt_compile.compile_available():
        pytest.skip(f"torch.compile is unavailable here: {bt_compile._STATE.reason}")


def _tiny_model(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Classifier(backbone, 8, arch="tiny-test")


def _data(n: int = 56, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g)
    # a learnable target: is the red channel brighter than the blue one?
    y = (images[:, 0].float().mean((1, 2)) > images[:, 2].float().mean((1, 2))).float()
    return images, y


def _fit(compile: bool, seed: int = 0):
    images, y = _data()
    model = _tiny_model()
    # 40 training images in batches of 16: two compiled steps and one eager remainder step per epoch
    config = FitConfig(lr=0.05, batch_size=16, max_epochs=3, patience=5, compile=compile, eval_batch_size=16)
    res = fit(model, Split(images[:40], y[:40]), Split(images[40:], y[40:]), config, seed=seed,
              device=torch.device("cpu"))
    logits = predict_logits(model, images, device=torch.device("cpu"), batch_size=16, compile=compile)
    return res, logits


def test_compiled_inference_matches_eager(needs_compile):
    images, _ = _data(37)  # not a multiple of the batch: the compiled path pads the last batch
    model = _tiny_model()
    eager = predict_logits(model, images, device=torch.device("cpu"), batch_size=16)
    compiled = predict_logits(model, images, device=torch.device("cpu"), batch_size=16, compile=True)
    assert compiled.shape == eager.shape == (37, 1)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


def test_compiled_training_matches_eager_and_is_deterministic(needs_compile):
    eager_res, eager_logits = _fit(compile=False)
    comp_res, comp_logits = _fit(compile=True)
    for e, c in zip(eager_res.history, comp_res.history, strict=True):
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-4, abs=1e-4)
        assert c["val_loss"] == pytest.approx(e["val_loss"], rel=1e-4, abs=1e-4)
    assert comp_res.best_epoch == eager_res.best_epoch
    torch.testing.assert_close(comp_logits, eager_logits, rtol=1e-4, atol=1e-4)
    # same seed, same numbers with compilation too
    again_res, again_logits = _fit(compile=True)
    assert torch.equal(again_logits, comp_logits)
    assert again_res.best_val_loss == comp_res.best_val_loss


def test_compiled_code_is_reused_across_runs(needs_compile):
    from torch._dynamo.utils import counters

    _fit(compile=True)
    graphs = counters["stats"]["unique_graphs"]
    _fit(compile=True, seed=3)  # a new model of the same architecture and shape: no new graph
    assert counters["stats"]["unique_graphs"] == graphs


def _fit_precision(precision: str):
    images, y = _data()
    model = _tiny_model()
    config = FitConfig(lr=0.05, batch_size=16, max_epochs=2, patience=5, precision=precision, eval_batch_size=16)
    res = fit(model, Split(images[:40], y[:40]), Split(images[40:], y[40:]), config, seed=0,
              device=torch.device("cpu"))
    return res, predict_logits(model, images, device=torch.device("cpu"), precision=precision)


def test_bf16_autocast_is_deterministic_and_close_to_fp32():
    """bf16 keeps 8 mantissa bits (relative rounding ~4e-3), so after a few steps losses agree with fp32 to a
    few hundredths, not to rounding; the option is opt-in for that reason. Logits come back in fp32."""
    fp32_res, _ = _fit_precision("fp32")
    bf16_res, bf16_logits = _fit_precision("bf16")
    again_res, again_logits = _fit_precision("bf16")
    assert bf16_logits.dtype == torch.float32
    assert torch.equal(bf16_logits, again_logits)
    assert again_res.best_val_loss == bf16_res.best_val_loss
    for f, b in zip(fp32_res.history, bf16_res.history, strict=True):
        assert b["train_loss"] == pytest.approx(f["train_loss"], abs=0.05)


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision"):
        FitConfig(precision="fp16")

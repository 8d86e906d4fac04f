"""Transfer modes: which parameters train in each phase, and whether frozen BatchNorm statistics move."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from biastransfer.models.architectures import Classifier, build_model
from biastransfer.models.transfer import (
    TRANSFER_MODES,
    Phase,
    frozen_backbone_children,
    get_transfer_mode,
    stage_names,
)
from biastransfer.registry import UnknownNameError


def small() -> Classifier:
    torch.manual_seed(0)
    return build_model("small_resnet", num_outputs=2)


def trainable_names(model: Classifier, phase: Phase) -> set[str]:
    params = phase.trainable_parameters(model)
    ids = {id(p) for p in params}
    names = {n for n, p in model.named_parameters() if id(p) in ids}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    return names


def bn_stats(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in module.named_buffers() if "running" in n or "num_batches" in n}


def forward_in_train_mode(model: Classifier, phase: Phase) -> None:
    phase.set_train_mode(model)
    with torch.no_grad():
        model(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)))


ALL = {"conv1", "bn1", "layer1", "layer2", "layer3"}


def names_under(model: Classifier, children: set[str], head: bool) -> set[str]:
    names = [n for n, _ in model.named_parameters()]
    out = {n for n in names if n.startswith("backbone.") and n.split(".")[1] in children}
    if head:
        out |= {n for n in names if n.startswith("head.")}
    return out


def test_every_mode_has_phases_summing_to_one() -> None:
    options = {"freeze_stages": {"k": 1}}
    for name in TRANSFER_MODES.names():
        phases = get_transfer_mode(name, **options.get(name, {})).phases()
        assert phases and abs(sum(p.epoch_share for p in phases) - 1.0) < 1e-12
        assert TRANSFER_MODES.get(name).description


def test_full_trains_everything_and_bn_updates() -> None:
    model = small()
    (phase,) = get_transfer_mode("full").phases()
    assert trainable_names(model, phase) == {n for n, _ in model.named_parameters()}
    before = bn_stats(model.backbone)
    forward_in_train_mode(model, phase)
    after = bn_stats(model.backbone)
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_default_mode_is_full() -> None:
    assert get_transfer_mode().registry_name == "full"


def test_fixed_feature_trains_only_head_and_freezes_bn() -> None:
    model = small()
    (phase,) = get_transfer_mode("fixed_feature").phases()
    assert trainable_names(model, phase) == {"head.weight", "head.bias"}
    before = bn_stats(model.backbone)
    forward_in_train_mode(model, phase)
    assert model.training and model.head.training
    for key, value in bn_stats(model.backbone).items():
        assert torch.equal(before[key], value), key
    assert all(not m.training for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d))


def test_fixed_feature_update_bn_option() -> None:
    model = small()
    (phase,) = get_transfer_mode("fixed_feature", update_bn=True).phases()
    assert trainable_names(model, phase) == {"head.weight", "head.bias"}  # BN affine stays frozen
    before = bn_stats(model.backbone)
    forward_in_train_mode(model, phase)
    after = bn_stats(model.backbone)
    assert all(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_freeze_stages_small_resnet(k: int) -> None:
    model = small()
    (phase,) = get_transfer_mode("freeze_stages", k=k).phases()
    frozen = {"conv1", "bn1", *[f"layer{i}" for i in range(1, k + 1)]}
    assert set(phase.frozen_children(model)) == frozen | {"relu", "pool"}
    assert trainable_names(model, phase) == names_under(model, ALL - frozen, head=True)

    before = bn_stats(model.backbone)
    forward_in_train_mode(model, phase)
    after = bn_stats(model.backbone)
    for key in before:
        changed = not torch.equal(before[key], after[key])
        assert changed == (key.split(".")[0] not in frozen), key


def test_freeze_stages_resnet18_stage_names_and_range() -> None:
    model = build_model("resnet18")
    assert stage_names(model) == ["layer1", "layer2", "layer3", "layer4"]
    assert set(frozen_backbone_children(model, "stages", 4)) >= {"conv1", "bn1", "layer4"}
    mode = get_transfer_mode("freeze_stages", k=5)
    with pytest.raises(ValueError, match=r"resnet18.*0 … 4"):
        mode.validate(model)


def test_freeze_stages_range_names_the_arch() -> None:
    model = small()
    mode = get_transfer_mode("freeze_stages", k=4)
    with pytest.raises(ValueError, match=r"small_resnet.*layer1, layer2, layer3.*0 … 3"):
        mode.phases()[0].trainable_parameters(model)
    with pytest.raises(ValueError, match="k must be an integer"):
        get_transfer_mode("freeze_stages", k=-1)
    with pytest.raises(ValueError, match="needs option k"):
        get_transfer_mode("freeze_stages")


def test_freeze_stages_update_bn_option() -> None:
    model = small()
    (phase,) = get_transfer_mode("freeze_stages", k=1, update_bn=True).phases()
    assert "backbone.layer1.bn1.weight" not in trainable_names(model, phase)
    before = bn_stats(model.backbone.layer1)
    forward_in_train_mode(model, phase)
    after = bn_stats(model.backbone.layer1)
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_linear_probe_then_finetune_phases() -> None:
    model = small()
    probe, finetune = get_transfer_mode("linear_probe_then_finetune", probe_share=0.25).phases()
    assert (probe.epoch_share, finetune.epoch_share) == (0.25, 0.75)

    assert trainable_names(model, probe) == {"head.weight", "head.bias"}
    before = bn_stats(model.backbone)
    forward_in_train_mode(model, probe)
    assert all(torch.equal(before[k], v) for k, v in bn_stats(model.backbone).items())

    assert trainable_names(model, finetune) == {n for n, _ in model.named_parameters()}
    forward_in_train_mode(model, finetune)
    assert all(m.training for m in model.modules())
    assert all(not torch.equal(before[k], v) for k, v in bn_stats(model.backbone).items())


def test_linear_probe_default_share_and_validation() -> None:
    probe, finetune = get_transfer_mode("linear_probe_then_finetune").phases()
    assert probe.epoch_share == finetune.epoch_share == 0.5
    for bad in (0, 1, 1.5, "half", True):
        with pytest.raises(ValueError, match="probe_share"):
            get_transfer_mode("linear_probe_then_finetune", probe_share=bad)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="update_bn"):
        get_transfer_mode("fixed_feature", update_bn="yes")
    with pytest.raises(ValueError, match="unknown option"):
        get_transfer_mode("fixed_feature", k=2)
    with pytest.raises(ValueError, match="takes no options"):
        get_transfer_mode("full", k=1)
    with pytest.raises(UnknownNameError, match="linear_probe_then_finetune"):
        get_transfer_mode("frozen")


def test_keys_identify_modes() -> None:
    assert get_transfer_mode("full").key() == {"mode": "full"}
    assert get_transfer_mode("fixed_feature").key() == {"mode": "fixed_feature", "update_bn": False}
    key = get_transfer_mode("freeze_stages", k=2).key()
    assert key == {"mode": "freeze_stages", "k": 2, "update_bn": False}


def test_switching_phases_restores_requires_grad() -> None:
    model = small()
    fixed = get_transfer_mode("fixed_feature").phases()[0]
    full = get_transfer_mode("full").phases()[0]
    fixed.trainable_parameters(model)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    full.trainable_parameters(model)
    assert all(p.requires_grad for p in model.parameters())

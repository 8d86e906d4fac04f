"""Registry-wide: every architecture, base kind and transfer mode is constructed, validated and run at a tiny size,
and ``biastransfer list`` shows every entry of every registry.

A new architecture needs no test code unless its checkpoint format is new: then :data:`NATIVE_LAYOUTS` (the
format's file layout) and :data:`TRANSFER_ARCHS` (the family the transfer modes run on) need an entry; without one
the test fails saying what to add. A new base kind needs an entry in :data:`BASE_CASES` (its options and
context) and a new transfer mode one in :data:`MODE_OPTIONS`; a registered one without fails saying what to add.
Datasets: ``tests/data/test_registry_datasets.py``; interventions: ``tests/interventions/
test_intervention_registry.py``; training objectives: here (each trains, with and without weights, and
checks its options) and ``tests/train/test_objectives.py``; experiments: ``tests/report`` and
``tests/experiments``; backends: ``tests/backends/test_backends.py``; checkpoint formats:
``tests/models/test_checkpoints.py``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from rich.console import Console
from torch import Tensor
from typer.testing import CliRunner

from biastransfer import cli, plugins  # noqa: F401  (plugins: imports every module that registers something)
from biastransfer.backends import BACKENDS
from biastransfer.data.registry import DATASETS
from biastransfer.experiments.base import EXPERIMENTS
from biastransfer.interventions import INTERVENTIONS
from biastransfer.models.architectures import ARCHITECTURES, Classifier, build_model, checkpoint_format_of
from biastransfer.models.bases import BASES, BaseContext
from biastransfer.models.checkpoints import CHECKPOINT_FORMATS, load_backbone
from biastransfer.models.transfer import TRANSFER_MODES, get_transfer_mode
from biastransfer.train.engine import FitConfig, Split, fit
from biastransfer.train.objectives import OBJECTIVES, cell_groups, get_objective
from biastransfer.triggers import TRIGGERS
from checkpoint_layouts import OPENCLIP_BLOCK, openclip_name  # noqa: F401

HERE = "tests/test_registries.py"
CPU = torch.device("cpu")
IMAGE_SIZE = 32  # the torchvision ResNets reach 1×1 in layer4 at 32 px, enough for BatchNorm on 2+ images
TORCHVISION_KEY = re.compile(r"(conv1|bn1|layer\d+)\.")




def openclip_layout(bb: dict[str, Tensor], dim: int) -> dict[str, Tensor]:
    """An OpenCLIP CLIP state dict whose image tower holds ``bb``'s values, plus a (tiny) text tower."""
    shaped = {"cls_token": lambda v: v.reshape(-1), "pos_embed": lambda v: v[0], "head.weight": lambda v: v.t()}
    tower = {f"visual.{openclip_name(k)}": shaped.get(k, lambda v: v)(v) for k, v in bb.items()}
    text = {"token_embedding.weight": torch.randn(10, 8), "positional_embedding": torch.randn(5, 8),
            "transformer.resblocks.0.attn.in_proj_weight": torch.randn(24, 8), "ln_final.weight": torch.randn(8),
            "text_projection": torch.randn(8, dim), "logit_scale": torch.tensor(4.6)}
    return {**tower, **text}


NATIVE_LAYOUTS: dict[str, Callable[[dict[str, Tensor], int], dict[str, Tensor]]] = {
    "torchvision": lambda bb, dim: {**bb, "fc.weight": torch.randn(1000, dim), "fc.bias": torch.randn(1000)},
    "timm_vit": lambda bb, dim: {**bb, "head.weight": torch.randn(1000, dim), "head.bias": torch.randn(1000)},
    "timm_convnext": lambda bb, dim: {**bb, "head.fc.weight": torch.randn(1000, dim),
                                      "head.fc.bias": torch.randn(1000)},
    "open_clip": openclip_layout,
}
"""An architecture's checkpoint format → its published files' layout of a backbone (heads, text towers included,
which the format drops)."""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models train fastest on one thread (several threads on a busy machine are many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def images(n: int, channels: int = 3, size: int = IMAGE_SIZE, seed: int = 0) -> Tensor:
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def tiny_split(n: int, channels: int = 3, size: int = IMAGE_SIZE) -> Split:
    return Split(images(n, channels, size), torch.tensor([0.0, 1.0] * (n // 2)))


def snapshot(model: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def random_backbone(arch: str, in_channels: int = 3, seed: int = 1) -> dict[str, Tensor]:
    """A backbone state dict of ``arch`` with every float tensor random (running variances positive)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, ref in build_model(arch, in_channels=in_channels).backbone.state_dict().items():
        value = torch.randn(ref.shape, generator=gen) if ref.is_floating_point() else ref.clone()
        out[key] = value.abs() + 0.1 if key.endswith("running_var") else value
    return out


def torchvision_layout(backbone: dict[str, Tensor], feature_dim: int) -> dict[str, Tensor]:
    """What torchvision saves: the backbone plus a 1000-way ``fc`` (which the formats drop)."""
    return {**backbone, "fc.weight": torch.randn(1000, feature_dim), "fc.bias": torch.randn(1000)}


def assert_backbone(model: Classifier, expected: dict[str, Tensor]) -> None:
    got = model.backbone.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], v) for k, v in expected.items()), "the backbone is not the expected weights"


def run_forward(model: Classifier, channels: int, n: int = 2) -> Tensor:
    model.eval()
    with torch.no_grad():
        return model(images(n, channels).float() / 255)


# ------------------------------------------------------------------------------------------------ architectures


GREY_ELSEWHERE = {"vit_base_patch16_224": "vit_small_patch16_224",
                  "openclip_vit_b16_quickgelu": "openclip_vit_b16", "openclip_vit_b32": "openclip_vit_b16",
                  "openclip_vit_b32_quickgelu": "openclip_vit_b16", "convnext_small": "convnext_tiny",
                  "convnext_base": "convnext_tiny"}
"""Large architectures whose one-channel build is the same factory code as a cheaper one's (which runs it)."""
ARCH_CASES = [(arch, channels) for arch in ARCHITECTURES.names() for channels in (3, 1)
              if channels == 3 or arch not in GREY_ELSEWHERE]


@pytest.mark.parametrize(("arch", "channels"), ARCH_CASES)
def test_architecture_builds_forwards_loads_and_trains(arch: str, channels: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_outputs=1, in_channels=channels)
    assert isinstance(model, Classifier) and model.arch == arch
    x = images(2, channels).float() / 255
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 1)
        assert model.features(x).shape == (2, model.feature_dim)

    fmt = checkpoint_format_of(arch)
    assert fmt in CHECKPOINT_FORMATS, f"architecture {arch!r}: its checkpoint_format {fmt!r} is not registered"
    assert fmt in NATIVE_LAYOUTS, f"architecture {arch!r}: add NATIVE_LAYOUTS[{fmt!r}] in {HERE} (its files' layout)"
    keys = list(model.backbone.state_dict())
    odd = [k for k in keys if not TORCHVISION_KEY.match(k)]
    assert keys and (fmt != "torchvision" or not odd), (
        f"architecture {arch!r}: backbone keys {odd[:5]} do not follow torchvision's ResNet naming (conv1, bn1, "
        "layerN), so the torchvision format cannot cover them")
    # ... so a checkpoint in its format's layout (head included) loads strictly, bit for bit, into a fresh model
    backbone = random_backbone(arch, channels)
    torch.save(NATIVE_LAYOUTS[fmt](backbone, model.feature_dim), tmp_path / "native.pth")
    fresh = build_model(arch, in_channels=channels)
    load_backbone(fresh, fmt, tmp_path / "native.pth")
    assert_backbone(fresh, backbone)

    # one SGD step moves every parameter
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    fit(model, tiny_split(4, channels), None, FitConfig(max_epochs=1, batch_size=4, flip=False), seed=0, device=CPU)
    still = [k for k, v in model.named_parameters() if torch.equal(v.detach(), before[k])]
    assert not still, f"architecture {arch!r}: one SGD step left {still[:5]} unchanged"

    model.replace_head(3)
    assert run_forward(model, channels).shape == (2, 3)
    assert model.features(x).shape == (2, model.feature_dim)


# ------------------------------------------------------------------------------------------------ base kinds

BaseCase = tuple[dict[str, Any], BaseContext, Callable[[Classifier], None]]
"""A base kind's valid options, the context to build it in, and the checks of the built model."""


def scratch_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BaseCase:
    def after(model: Classifier) -> None:
        assert model.backbone.conv1.in_channels == 1

    return {}, BaseContext(arch="small_resnet", in_channels=1), after


def trained_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BaseCase:
    trained = build_model("small_resnet")
    calls: list[Any] = []

    def train_base(attribute: Any, pool: Any) -> Classifier:
        calls.append((attribute, pool))
        return trained

    def after(model: Classifier) -> None:
        assert model is trained and calls == [("a", "pretrain")], \
            f"train_base was called with {calls}, not the attribute 'a' on the pool 'pretrain'"
        kind = BASES.get("trained")
        with pytest.raises(ValueError, match="unknown option"):
            kind(attribute="a", epochs=3).check()
        with pytest.raises(ValueError, match="needs 'attribute'"):
            kind().check()

    return {"attribute": "a"}, BaseContext(arch="small_resnet", train_base=train_base), after


def planted_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BaseCase:
    planted = build_model("small_resnet")
    calls: list[Any] = []
    trigger = {"kind": "patch", "size": 4, "colour": "yellow"}

    def train_base(attribute: Any, pool: Any, plant: Any = None) -> Classifier:
        calls.append((attribute, pool, plant))
        return planted

    def after(model: Classifier) -> None:
        plant = {"trigger": trigger, "trigger_classes": [1], "rate": 0.5}
        assert model is planted and calls == [("a", "pretrain", plant)], \
            f"train_base was called with {calls}, not the attribute 'a' on 'pretrain' with the plant {plant}"
        with pytest.raises(ValueError, match="needs 'trigger'"):
            BASES.get("planted")(trigger_classes=[1]).check()

    options = {"attribute": "a", "trigger": trigger, "trigger_classes": [1], "rate": 0.5}
    return options, BaseContext(arch="small_resnet", train_base=train_base), after


def checkpoint_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BaseCase:
    backbone = random_backbone("small_resnet")
    path = tmp_path / "backbone.pth"
    torch.save(torchvision_layout(backbone, build_model("small_resnet").feature_dim), path)

    def after(model: Classifier) -> None:
        assert_backbone(model, backbone)
        with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
            BASES.get("checkpoint")(format="torchvision", path=str(tmp_path / "absent.pth")).check()

    options = {"format": "torchvision", "path": str(path), "arch": "small_resnet"}
    return options, BaseContext(arch="small_resnet"), after


def torchvision_weights_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BaseCase:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # a fake local torch hub cache
    weights = torchvision.models.get_model_weights("resnet18").IMAGENET1K_V1
    path = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True)
    backbone = random_backbone("resnet18")
    torch.save(torchvision_layout(backbone, 512), path)
    return ({"weights": "IMAGENET1K_V1", "verify_hash": False}, BaseContext(arch="resnet18"),
            lambda model: assert_backbone(model, backbone))


BASE_CASES: dict[str, Callable[[Path, pytest.MonkeyPatch], BaseCase]] = {
    "scratch": scratch_case,
    "trained": trained_case,
    "planted": planted_case,
    "checkpoint": checkpoint_case,
    "torchvision_weights": torchvision_weights_case,
}


def missing_base_message(kind: str) -> str:
    return (f"base kind {kind!r} has no case in {HERE}: add BASE_CASES[{kind!r}], a function (tmp_path, "
            "monkeypatch) -> (valid options, BaseContext, checks of the built model)")


def test_every_base_kind_has_a_case() -> None:
    missing = [kind for kind in BASES.names() if kind not in BASE_CASES]
    assert not missing, "\n".join(missing_base_message(kind) for kind in missing)
    assert set(BASE_CASES) <= set(BASES.names()), f"BASE_CASES names unregistered kinds: {set(BASE_CASES) - set(BASES)}"


@pytest.mark.parametrize("kind", BASES.names())
def test_base_kind_checks_builds_and_runs(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if kind not in BASE_CASES:
        pytest.fail(missing_base_message(kind))
    cls = BASES.get(kind)
    assert isinstance(cls.per_run, bool) and isinstance(cls.trains, bool), f"{kind}: per_run/trains not booleans"
    assert isinstance(cls.description, str) and cls.description.strip(), f"base kind {kind!r} has no description"
    options, ctx, after = BASE_CASES[kind](tmp_path, monkeypatch)
    base = cls(**options)
    base.check()
    key = base.key()
    assert key["kind"] == kind and json.loads(json.dumps(key)) == key  # goes into run keys
    torch.manual_seed(0)
    model = base.build(ctx)
    assert isinstance(model, Classifier) and model.arch == ctx.arch
    assert model.head.out_features == 1
    assert run_forward(model, ctx.in_channels).shape == (2, 1)
    after(model)


# ------------------------------------------------------------------------------------------------ transfer modes

MODE_OPTIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "fixed_feature": {},
    "freeze_stages": {"k": 1},
    "linear_probe_then_finetune": {},
}
"""Valid options of every transfer mode (its defaults where it has them)."""
EPOCHS = 2


def missing_mode_message(name: str) -> str:
    return f"transfer mode {name!r} has no options in {HERE}: add MODE_OPTIONS[{name!r}] = {{<valid options>}}"


def test_every_transfer_mode_has_options() -> None:
    missing = [name for name in TRANSFER_MODES.names() if name not in MODE_OPTIONS]
    assert not missing, "\n".join(missing_mode_message(name) for name in missing)
    stale = set(MODE_OPTIONS) - set(TRANSFER_MODES.names())
    assert not stale, f"MODE_OPTIONS names unregistered modes: {stale}"


TRANSFER_ARCHS = {"torchvision": ("small_resnet", 16), "timm_vit": ("vit_small_patch16_224", 32),
                  "timm_convnext": ("convnext_tiny", 32), "open_clip": ("openclip_vit_b16", 32)}
"""One architecture (and image size) per backbone family (checkpoint format) that the transfer modes run on."""


def test_every_architecture_family_runs_the_transfer_modes() -> None:
    families = {checkpoint_format_of(arch) for arch in ARCHITECTURES.names()}
    missing = families - set(TRANSFER_ARCHS)
    assert not missing, f"add TRANSFER_ARCHS entries in {HERE} for the backbone families {sorted(missing)}"


@pytest.mark.parametrize("family", sorted(TRANSFER_ARCHS))
@pytest.mark.parametrize("name", TRANSFER_MODES.names())
def test_transfer_mode_freezes_what_its_phases_say(name: str, family: str) -> None:
    if name not in MODE_OPTIONS:
        pytest.fail(missing_mode_message(name))
    assert TRANSFER_MODES.get(name).description, f"transfer mode {name!r} has no description"
    mode = get_transfer_mode(name, **MODE_OPTIONS[name])
    key = mode.key()
    assert key["mode"] == name and json.loads(json.dumps(key)) == key
    phases = mode.phases()
    assert phases and math.isclose(sum(p.epoch_share for p in phases), 1.0, abs_tol=1e-12)
    torch.manual_seed(0)
    arch, size = TRANSFER_ARCHS[family]
    model = build_model(arch)
    mode.validate(model)

    # the engine gives phase i max(1, round(epoch_share * max_epochs)) epochs, in order
    schedule = [p for p in phases for _ in range(max(1, round(p.epoch_share * EPOCHS)))]
    states = [snapshot(model)]
    fit(model, tiny_split(8, size=size), None, FitConfig(max_epochs=EPOCHS, batch_size=8), seed=0, device=CPU,
        phases=phases, on_epoch=lambda epoch, record: states.append(snapshot(model)))
    assert len(states) == len(schedule) + 1, f"{len(states) - 1} epochs ran; the phases plan {len(schedule)}"
    params = {n for n, _ in model.named_parameters()}
    for epoch, (phase, (before, after)) in enumerate(zip(schedule, pairwise(states), strict=True), start=1):
        frozen = set(phase.frozen_children(model))
        for key, value in before.items():
            moved = not torch.equal(value, after[key])
            where = f"{name}, epoch {epoch} (phase {phase.name!r}): {key}"
            inner = key.removeprefix("backbone.")
            in_frozen = key.startswith("backbone.") and (
                phase.freeze == "backbone"  # then all of it, whatever the phase names (a ViT's cls_token too)
                or any(inner == f or inner.startswith(f + ".") for f in frozen))
            if key in params:
                assert moved != in_frozen, where + (" moved though frozen" if moved else " did not train")
            elif in_frozen and not phase.update_bn:
                assert not moved, where + " (BatchNorm statistics of a frozen part) moved"
        assert not torch.equal(before["head.weight"], after["head.weight"]), f"{name}: the head did not train"


# ------------------------------------------------------------------------------------------------ objectives

def grouped_split(n: int, seed: int, weighted: bool) -> Split:
    gen = torch.Generator().manual_seed(seed)
    y, a = torch.randint(0, 2, (n,), generator=gen), torch.randint(0, 2, (n,), generator=gen)
    w = torch.rand(n, generator=gen) + 0.5 if weighted else None
    return Split(images(n, size=16, seed=seed), y.float(), None if w is None else w / w.mean(),
                 torch.as_tensor(cell_groups(a.numpy(), y.numpy())))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_objective_documents_validates_and_trains(name: str, weighted: bool) -> None:
    """Every objective: a description and a docstring with its formula; typed options whose errors name the
    option and the allowed ones; it trains a tiny model (intervention weights or not) to finite losses, leaves the
    model in eval mode and reports a JSON-able dict."""
    cls = OBJECTIVES.get(name)
    assert cls.description and "=" in (cls.__doc__ or ""), f"objective {name!r} needs a description and a formula"
    with pytest.raises(ValueError, match=rf"objective '{name}' has no option 'nonsense'; allowed: "):
        get_objective(name, nonsense=1)
    objective = get_objective(name)
    assert objective.label() == name and json.loads(json.dumps(objective.model_dump())) == objective.model_dump()
    torch.manual_seed(0)
    model = build_model("small_resnet")
    res = fit(model, grouped_split(16, 0, weighted), grouped_split(16, 1, weighted),
              FitConfig(max_epochs=2, batch_size=8), seed=0, device=CPU, objective=objective)
    assert math.isfinite(res.best_val_loss) and all(math.isfinite(r["train_loss"]) for r in res.history)
    assert not model.training and json.loads(json.dumps(res.objective)) == res.objective


# ------------------------------------------------------------------------------------------------ biastransfer list

REGISTRIES = {"experiment": EXPERIMENTS, "dataset": DATASETS, "intervention": INTERVENTIONS, "objective": OBJECTIVES,
              "trigger": TRIGGERS,
              "base kind": BASES,
              "architecture": ARCHITECTURES, "transfer mode": TRANSFER_MODES,
              "checkpoint format": CHECKPOINT_FORMATS, "backend": BACKENDS}


def listed(output: str) -> dict[str, set[str]]:
    """(registry, name) of each row of the ``list`` table (names wrapped over lines are joined)."""
    rows: list[list[str]] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[0]:
            rows.append(cells[:2])
        elif rows:
            rows[-1][1] += cells[1]
    out: dict[str, set[str]] = {}
    for registry, name in rows:
        out.setdefault(registry, set()).add(name)
    return out


def test_list_shows_every_entry_of_every_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "out", Console(width=300))  # wide enough that no name or title wraps (COLUMNS aside)
    result = CliRunner().invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    shown = listed(result.output)
    assert set(shown) == set(REGISTRIES), f"registries listed: {sorted(shown)}"
    for title, registry in REGISTRIES.items():
        assert registry.names(), f"the {title} registry is empty"
        assert shown[title] == set(registry.names()), (
            f"{title}: missing {sorted(set(registry.names()) - shown[title])}, "
            f"extra {sorted(shown[title] - set(registry.names()))}")

"""Training objectives (train/objectives.py, docs/objectives.md): GroupDRO's group weights by hand, DFR's balanced
held-out set and untouched backbone, Kamiran–Calders weights against the closed form and the ``reweight``
intervention, ERM's numbers and run keys unchanged, and errors that name the field and the allowed values."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from biastransfer.config import ConfigError
from biastransfer.interventions import Pool, get_intervention
from biastransfer.models.architectures import build_model
from biastransfer.plan import parse_study
from biastransfer.seeding import rng
from biastransfer.spec import RunSpec
from biastransfer.train import engine
from biastransfer.train.dfr import logistic_head
from biastransfer.train.engine import FitConfig, Split, fit, predict_logits, weighted_loss
from biastransfer.train.features import compute_features
from biastransfer.train.objectives import (
    OBJECTIVES,
    GroupDROHook,
    balanced_subsample,
    cell_groups,
    get_objective,
    kamiran_calders_factors,
    kamiran_calders_weights,
)
from tiny_study import tiny_study_dict

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def split(n: int, seed: int, size: int = 16) -> Split:
    """Random images, labels and attributes; groups are the (a, y) cells."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 2, (n,), generator=gen)
    a = torch.randint(0, 2, (n,), generator=gen)
    return Split(images, y.float(), None, torch.as_tensor(cell_groups(a.numpy(), y.numpy())))


def logits_with_losses(losses: list[float]) -> torch.Tensor:
    """Logits whose BCE against target 1 is exactly ``losses``: softplus(−z) = L ⇔ z = −log(e^L − 1)."""
    return torch.tensor([[-math.log(math.expm1(v))] for v in losses], dtype=torch.float64)


def train(objective: str | None, seed: int = 0, **options: Any) -> tuple[torch.nn.Module, engine.FitResult]:
    torch.manual_seed(0)
    model = build_model("small_resnet")
    obj = None if objective is None else get_objective(objective, **options)
    res = fit(model, split(32, 0), split(24, 1), FitConfig(max_epochs=2, batch_size=8, lr=0.05), seed=seed,
              device=CPU, objective=obj)
    return model, res


# ------------------------------------------------------------------------------------------------------ GroupDRO
def test_group_dro_weights_follow_the_exponentiated_losses_by_hand() -> None:
    """η = 1, groups {0, 1, 2}, q₀ = (1/3, 1/3, 1/3).
    Batch 1: L = (2, (1·0.5 + 3·0.5)/4 = 0.5, absent) → q ∝ (e², e^0.5, 1)/3 = (0.736125, 0.164252, 0.099624),
    loss = 2·0.736125 + 0.5·0.164252 = 1.554375.
    Batch 2: L = (absent, 1, 3) → q ∝ (0.736125, 0.164252·e, 0.099624·e³) = (0.231224, 0.140244, 0.628532),
    loss = 1·0.140244 + 3·0.628532 = 2.025840. The absent group's unnormalised weight is kept (factor 1)."""
    train_split = Split(torch.zeros(3, 1, 2, 2, dtype=torch.uint8), torch.ones(3), None, torch.tensor([0, 1, 2]))
    hook = get_objective("group_dro", eta=1.0).start(train_split, None)
    assert isinstance(hook, GroupDROHook) and torch.allclose(hook.q, torch.full((3,), 1 / 3, dtype=torch.float64))
    targets = torch.ones(3, 1, dtype=torch.float64)
    # batch 1: group 0 one example of loss 2; group 1 two of loss 0.5 weighted 1 : 3; group 2 absent
    loss = hook.loss(logits_with_losses([2.0, 0.5, 0.5]), targets, torch.tensor([[1.0], [1.0], [3.0]]),
                     torch.tensor([0, 1, 1]))
    assert hook.q.tolist() == pytest.approx([0.736124724, 0.164251628, 0.099623648], abs=1e-8)
    assert float(loss) == pytest.approx(1.554375262, abs=1e-8)
    # batch 2: group 0 absent; group 1 one example of loss 1; group 2 two of losses 4 and 2 (mean 3)
    loss = hook.loss(logits_with_losses([1.0, 4.0, 2.0]), targets, None, torch.tensor([1, 2, 2]))
    assert hook.q.tolist() == pytest.approx([0.231223898, 0.140244383, 0.628531719], abs=1e-8)
    assert float(loss) == pytest.approx(2.025839541, abs=1e-8)
    assert hook.after_fit(torch.nn.Linear(1, 1))["group_weights"]["2"] == pytest.approx(0.628531719)


def test_group_dro_generalisation_adjustment_adds_c_over_root_count_to_every_group() -> None:
    """η = 1, C = 0.6, training counts n = (1, 4, 9) → C/√n = (0.6, 0.3, 0.2), added to every group's loss in the
    update, absent groups included (Sagawa et al.'s code).
    Batch 1: L = (2, 0.5, absent) → q ∝ (e^2.6, e^0.8, e^0.2) = (0.796168, 0.131606, 0.072227), loss 1.658138.
    Batch 2: L = (absent, 1, 3) → q ∝ q·(e^0.6, e^1.3, e^3.2) = (0.391501, 0.130319, 0.478180), loss 1.564859.
    The loss itself is Σ_g q_g·L_g, without the adjustment."""
    groups = torch.tensor([0] + [1] * 4 + [2] * 9)
    train_split = Split(torch.zeros(14, 1, 2, 2, dtype=torch.uint8), torch.ones(14), None, groups)
    hook = get_objective("group_dro", eta=1.0, adjustment=0.6).start(train_split, None)
    targets = torch.ones(3, 1, dtype=torch.float64)
    loss = hook.loss(logits_with_losses([2.0, 0.5, 0.5]), targets, None, torch.tensor([0, 1, 1]))
    assert hook.q.tolist() == pytest.approx([0.796167668, 0.131605630, 0.072226701], abs=1e-8)
    assert float(loss) == pytest.approx(1.658138152, abs=1e-8)
    loss = hook.loss(logits_with_losses([1.0, 4.0, 2.0]), targets, None, torch.tensor([1, 2, 2]))
    assert hook.q.tolist() == pytest.approx([0.391500701, 0.130319263, 0.478180036], abs=1e-8)
    assert float(loss) == pytest.approx(1.564859371, abs=1e-8)
    assert get_objective("group_dro", adjustment=0.0).start(train_split, None).adjustment.tolist() == [0.0] * 3
    with pytest.raises(ValueError, match=r"adjustment: Input should be greater than or equal to 0"):
        get_objective("group_dro", adjustment=-1.0)


def test_group_dro_weighs_groups_by_weighted_means_and_validates_on_the_worst_group() -> None:
    hook = get_objective("group_dro").start(Split(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.ones(2), None,
                                                  torch.tensor([0, 3])), None)
    targets = torch.ones(4, 1, dtype=torch.float64)
    logits, groups = logits_with_losses([1.0, 3.0, 0.5, 0.7]), torch.tensor([0, 0, 3, 3])
    # weights 3 : 1 within group 0 → L_0 = (3·1 + 1·3)/4 = 1.5; group 3 unweighted → 0.6
    assert float(hook.val_loss(logits, targets, torch.tensor([[3.0], [1.0], [1.0], [1.0]]), groups)) == \
        pytest.approx(1.5)
    assert float(hook.val_loss(logits, targets, None, groups)) == pytest.approx(2.0)


def test_group_dro_trains_otherwise_than_erm_and_needs_groups() -> None:
    erm_model, _ = train("erm")
    dro_model, res = train("group_dro", eta=1.0)
    images = split(8, 5).images
    assert not torch.equal(predict_logits(erm_model, images, device=CPU), predict_logits(dro_model, images, device=CPU))
    assert set(res.objective["group_weights"]) == {"0", "1", "2", "3"}
    with pytest.raises(ValueError, match=r"objective 'group_dro' needs group ids on the training split"):
        fit(build_model("small_resnet"), Split(split(8, 0).images, torch.ones(8)), None, FitConfig(max_epochs=1),
            seed=0, device=CPU, objective=get_objective("group_dro"))


# ----------------------------------------------------------------------------------------------------------- DFR
def test_balanced_subsample_keeps_the_smallest_groups_count_of_every_group() -> None:
    groups = np.repeat([0, 1, 2, 3], [5, 9, 3, 7])
    keep = balanced_subsample(groups, np.random.default_rng(0))
    assert np.bincount(groups[keep]).tolist() == [3, 3, 3, 3]
    assert keep.tolist() == sorted(set(keep.tolist()))  # ascending, no repeats
    assert np.array_equal(keep, balanced_subsample(groups, np.random.default_rng(0)))  # seeded
    assert not np.array_equal(keep, balanced_subsample(groups, np.random.default_rng(1)))
    assert np.bincount(np.array([2, 2, 0, 2])[balanced_subsample(np.array([2, 2, 0, 2]), np.random.default_rng(0))],
                       minlength=3).tolist() == [1, 0, 1]  # an absent group stays absent


def test_dfr_retrains_only_the_last_layer_on_the_balanced_held_out_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ERM stage of dfr is ERM's training (same seed, same numbers); then the head alone is retrained on the
    held-out set balanced to its smallest cell, through the frozen-feature fast path; every backbone tensor
    (parameters and BatchNorm statistics) is bit for bit what ERM left."""
    featured: list[int] = []
    real = engine.SplitFeatures

    def recording(model, train_images, val_images, **kw):
        featured.append(len(train_images))
        return real(model, train_images, val_images, **kw)

    monkeypatch.setattr(engine, "SplitFeatures", recording)
    erm_model, erm_res = train("erm")
    assert featured == []
    dfr_model, dfr_res = train("dfr", epochs=3)
    held_out = split(24, 1).groups.numpy()
    smallest = int(np.bincount(held_out, minlength=4).min())
    assert dfr_res.objective["dfr_groups"] == {str(g): smallest for g in range(4)}
    assert dfr_res.objective["dfr_heldout"] == 4 * smallest and dfr_res.objective["dfr_epochs"] == 3
    assert featured == [4 * smallest]  # the retraining ran on the frozen features of the balanced set
    assert dfr_res.best_val_loss == erm_res.best_val_loss and dfr_res.epochs == erm_res.epochs
    erm_bb, dfr_bb = erm_model.backbone.state_dict(), dfr_model.backbone.state_dict()
    assert set(erm_bb) == set(dfr_bb)
    for key, value in erm_bb.items():
        assert torch.equal(value, dfr_bb[key]), f"DFR moved backbone tensor {key}"
    assert not torch.equal(erm_model.head.weight, dfr_model.head.weight)


def test_dfr_reinitialises_the_head_from_the_run_seed_alone() -> None:
    """The fresh last layer depends on the seed, not on the global random state (nor on the ERM head)."""
    model, _ = train("erm")
    val = split(24, 1)
    hook = get_objective("dfr", epochs=1).start(split(32, 0), val)
    heads = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        copy = build_model("small_resnet")
        copy.load_state_dict(model.state_dict())
        hook.after_fit(copy, train=split(32, 0), val=val, config=FitConfig(max_epochs=1, batch_size=8), seed=7,
                       device=CPU)
        heads.append(copy.head.state_dict())
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    kept = build_model("small_resnet")
    kept.load_state_dict(model.state_dict())
    get_objective("dfr", epochs=1, reinit=False).start(split(32, 0), val).after_fit(
        kept, train=split(32, 0), val=val, config=FitConfig(max_epochs=1, batch_size=8), seed=7, device=CPU)
    assert not torch.equal(kept.head.weight, heads[0]["weight"])  # reinit: false retrains from the ERM head


def test_dfr_l1_logistic_sets_the_head_to_the_papers_regression_on_frozen_features() -> None:
    """``solver: l1_logistic``: the head is :func:`logistic_head` of the ERM model's features of the whole held-out
    split (same seed stream), the backbone bit for bit ERM's, and the run records C, the fits and the exact
    balanced counts. Options of the other solver, and a K-way target, are refused with what to do."""
    val = split(40, 1)
    erm_model, _ = train("erm")
    torch.manual_seed(0)
    model = build_model("small_resnet")
    obj = get_objective("dfr", solver="l1_logistic", C=0.5, fits=2)
    res = fit(model, split(32, 0), val, FitConfig(max_epochs=2, batch_size=8, lr=0.05), seed=0, device=CPU,
              objective=obj)
    for key, value in erm_model.backbone.state_dict().items():
        assert torch.equal(value, model.backbone.state_dict()[key]), f"DFR moved backbone tensor {key}"
    feats = compute_features(erm_model, val.images, flip=False, device=CPU).numpy()
    groups = val.groups.numpy()
    expected = logistic_head(feats, val.targets.numpy(), groups, C=0.5, fits=2, generator=rng(0, "dfr-heldout"))
    assert np.allclose(model.head.weight.detach().numpy(), expected.weight, atol=1e-6)
    assert np.allclose(model.head.bias.detach().numpy(), expected.bias, atol=1e-6)
    smallest = int(np.bincount(groups, minlength=4).min())
    assert res.objective["dfr_groups"] == {str(g): smallest for g in range(4)}
    assert res.objective["dfr_heldout"] == 4 * smallest
    assert res.objective["dfr_C"] == 0.5 and res.objective["dfr_fits"] == 2 and res.objective["dfr_C_scores"] == {}
    assert obj.label() == "dfr(solver=l1_logistic, C=0.5, fits=2)"
    with pytest.raises(ValueError, match=r"^objective 'dfr': option epochs belongs to solver 'sgd'"):
        get_objective("dfr", solver="l1_logistic", epochs=3)
    with pytest.raises(ValueError, match=r"option C belongs to solver 'l1_logistic'"):
        get_objective("dfr", C=0.1)
    train_split = split(32, 0)
    kway_train = Split(train_split.images, torch.randint(0, 3, (32,)), None, train_split.groups)
    kway_val = Split(val.images, torch.randint(0, 3, (40,)), None, val.groups)
    with pytest.raises(ValueError, match=r"fits binary targets; this task has 3 classes: use solver 'sgd'"):
        fit(build_model("small_resnet", num_outputs=3), kway_train, kway_val, FitConfig(max_epochs=1, batch_size=8),
            seed=0, device=CPU, objective=get_objective("dfr", solver="l1_logistic"))


def test_dfr_needs_a_held_out_split_with_groups() -> None:
    with pytest.raises(ValueError, match="retrains the last layer on the held-out"):
        fit(build_model("small_resnet"), split(8, 0), None, FitConfig(max_epochs=1, batch_size=8), seed=0,
            device=CPU, objective=get_objective("dfr"))


# ------------------------------------------------------------------------------------------------ Kamiran–Calders
def test_kamiran_calders_weights_are_the_closed_form() -> None:
    """n = 8, P(a=1) = 3/8, P(y=1) = 3/8; cells (a, y): (1,1) 2, (1,0) 1, (0,1) 1, (0,0) 4.
    w(1,1) = (3/8·3/8)/(2/8) = 9/16; w(1,0) = (3/8·5/8)/(1/8) = 15/8; w(0,1) = (5/8·3/8)/(1/8) = 15/8;
    w(0,0) = (5/8·5/8)/(4/8) = 25/32; they sum to n = 8."""
    a = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    expected = [9 / 16, 9 / 16, 15 / 8, 15 / 8, 25 / 32, 25 / 32, 25 / 32, 25 / 32]
    assert kamiran_calders_weights(a, y).tolist() == pytest.approx(expected, rel=1e-15)
    assert kamiran_calders_factors(a, y).tolist() == pytest.approx([25 / 32, 15 / 8, 15 / 8, 9 / 16])
    assert sum(expected) == 8


def test_kamiran_calders_matches_an_independent_computation_and_makes_a_and_y_independent() -> None:
    gen = np.random.default_rng(3)
    a = gen.integers(0, 2, 500)
    y = (gen.random(500) < np.where(a == 1, 0.8, 0.3)).astype(int)
    frame = pd.DataFrame({"a": a, "y": y})
    joint = pd.crosstab(frame.a, frame.y, normalize=True)
    reference = [joint.sum(axis=1)[ai] * joint.sum(axis=0)[yi] / joint.loc[ai, yi] for ai, yi in zip(a, y, strict=True)]
    w = kamiran_calders_weights(a, y)
    assert w == pytest.approx(reference, rel=1e-12)
    mass = {(ai, yi): w[(a == ai) & (y == yi)].sum() / w.sum() for ai in (0, 1) for yi in (0, 1)}
    for ai in (0, 1):
        for yi in (0, 1):  # independence under w', marginals as in the data
            assert mass[ai, yi] == pytest.approx((a == ai).mean() * (y == yi).mean(), abs=1e-12)
    base = gen.random(500) + 0.5  # with intervention weights: the w-weighted distribution made independent
    wb = kamiran_calders_weights(a, y, base)
    pa, py = base[a == 1].sum() / base.sum(), base[y == 1].sum() / base.sum()
    assert wb[(a == 1) & (y == 1)].sum() / wb.sum() == pytest.approx(pa * py, abs=1e-12)


def _balanced_pool(seed: int = 0, n: int = 4000) -> Pool:
    gen = np.random.default_rng(seed)
    a = gen.integers(0, 2, n)
    y = (gen.random(n) < np.where(a == 1, 0.75, 0.25)).astype(np.int64)
    return Pool.of(y=y, a=a)


@pytest.mark.parametrize("start_level", [0.8, 0.3])
def test_kamiran_calders_is_reweight_at_level_p_a1_on_a_balanced_set(start_level: float) -> None:
    """reweight's natural set (collect at the start level, n even) has P(a=1) = P(y=1) = 1/2 exactly; there the
    Kamiran–Calders weights are reweight's weights at level 0.5 = P(a=1), to rounding, and so is the loss."""
    pool = _balanced_pool()
    y, a = pool.binary("y", "a")
    sel = get_intervention("reweight", start_level=start_level).select(pool, level=0.5, n=256,
                                                                        rng=np.random.default_rng(1))
    ys, as_ = y[sel.indices], a[sel.indices]
    assert as_.mean() == 0.5 and ys.mean() == 0.5
    kc = kamiran_calders_weights(as_, ys)
    assert kc == pytest.approx(sel.weights, rel=1e-12)
    collected = get_intervention("collect").select(pool, level=start_level, n=256, rng=np.random.default_rng(1))
    assert np.array_equal(collected.indices, sel.indices)  # so: collect at c0 + kamiran_calders = reweight at 0.5
    other = get_intervention("reweight", start_level=start_level).select(pool, level=0.7, n=256,
                                                                          rng=np.random.default_rng(1))
    assert not np.allclose(kc, other.weights)  # any other level is another weighting
    hook = get_objective("kamiran_calders").start(
        Split(torch.zeros(len(sel), 1, 2, 2, dtype=torch.uint8), torch.as_tensor(ys).float(), None,
              torch.as_tensor(cell_groups(as_, ys))), None)
    logits = torch.randn(len(sel), 1, generator=torch.Generator().manual_seed(0))
    targets = torch.as_tensor(ys, dtype=torch.float32).reshape(-1, 1)
    ours = hook.loss(logits, targets, None, torch.as_tensor(cell_groups(as_, ys)))
    theirs = weighted_loss(logits, targets, torch.tensor(sel.weights, dtype=torch.float32).reshape(-1, 1))
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


def test_kamiran_calders_differs_from_reweight_when_the_set_is_not_balanced() -> None:
    """reweight always makes the weighted P(a=1) and P(y=1) one half; Kamiran–Calders keeps the set's marginals.
    So on a set with P(y=1) ≠ 1/2 (an odd n; a natural draw) no level of reweight gives its weights, P(a=1)
    included (reweight's cell masses at level c are c·n/2, (1−c)·n/2, (1−c)·n/2, c·n/2)."""
    pool = _balanced_pool()
    y, a = pool.binary("y", "a")
    sel = get_intervention("collect").select(pool, level=0.8, n=255, rng=np.random.default_rng(1))
    ys, as_ = y[sel.indices], a[sel.indices]
    assert ys.mean() != 0.5
    kc = kamiran_calders_weights(as_, ys)
    assert kc[ys == 1].sum() / kc.sum() == pytest.approx(ys.mean())  # P(y=1) kept
    level = float(as_.mean())
    rw = get_intervention("reweight", start_level=0.8).select(pool, level=level, n=255, rng=np.random.default_rng(1))
    assert np.array_equal(rw.indices, sel.indices)
    assert rw.weights[ys == 1].sum() / rw.weights.sum() == pytest.approx(0.5)
    assert not np.allclose(kc, rw.weights, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------- ERM
def test_erm_is_the_engines_default_loss_bit_for_bit() -> None:
    plain, plain_res = train(None)
    erm, erm_res = train("erm")
    images = split(8, 5).images
    assert torch.equal(predict_logits(plain, images, device=CPU), predict_logits(erm, images, device=CPU))
    assert plain_res.best_val_loss == erm_res.best_val_loss and plain_res.history == erm_res.history
    assert erm_res.objective == {}


#: The first run of the tiny study as release 0.2 stored it before objectives existed, and its key then.
LEGACY_SPEC: dict[str, Any] = {
    "experiment": "inheritance", "kind": "inheritance",
    "dataset": {"name": "synthetic", "root": None, "resolution": 16,
                "params": {"pretrain": 600, "train": 1200, "val": 600, "test": 800}},
    "arch": "small_resnet", "base_name": "gendered", "base": {"kind": "trained", "attribute": "a"}, "task": "t3",
    "seed": 0, "intervention": "collect", "level": "natural", "n_train": 32, "n_val": None, "test": "natural",
    "test_size": 200, "threshold": "val",
    "train": {"lr": [0.05], "weight_decay": [0.0005], "momentum": 0.9, "batch_size": 64, "max_epochs": 2,
              "patience": 1, "hp_seeds": 1, "flip": True},
    "base_training": {"lr": 0.05, "weight_decay": 0.0005, "epochs": 1, "batch_size": 128, "max_examples": None,
                      "seed": 0},
    "transfer": "full", "transfer_options": {}, "options": {}, "intervention_options": {},
    "calibration": "reweighted", "data_fingerprint": None,
}
LEGACY_KEY = "fa0c3c3e10f371ace639"


def test_erm_keeps_the_keys_of_specs_written_before_objectives() -> None:
    legacy = RunSpec.from_dict(LEGACY_SPEC)
    assert legacy.objective == "erm" and legacy.key == LEGACY_KEY
    assert RunSpec.from_dict({**LEGACY_SPEC, "objective": "erm", "objective_options": {}}).key == LEGACY_KEY
    assert "objective" not in legacy.key_payload() and "objective" not in legacy.hparam_key()
    dro = legacy.replace(objective="group_dro")
    assert dro.key != LEGACY_KEY and dro.replace(objective_options={"eta": 0.1}).key != dro.key
    assert dro.hparam_key()["objective"] == {"name": "group_dro"}  # each objective searches its own
    assert parse_study(tiny_study_dict()).expand()[0].key == LEGACY_KEY


def _sweep_study(objectives: list[Any] | None) -> dict[str, Any]:
    study = tiny_study_dict()
    sweep = next(b for b in study["experiments"] if b["kind"] == "correlation_sweep")
    if objectives is not None:
        sweep["objectives"] = objectives
    return study


def test_a_block_crosses_its_objectives_with_its_interventions_and_erm_keeps_its_keys() -> None:
    plain = parse_study(_sweep_study(None)).expand()
    assert [s.key for s in parse_study(_sweep_study(["erm"])).expand()] == [s.key for s in plain]
    both = parse_study(_sweep_study(["erm", {"name": "group_dro", "eta": 0.1}, "dfr", "kamiran_calders"])).expand()
    sweep = [s for s in both if s.kind == "correlation_sweep"]
    assert len(sweep) == 4 * sum(s.kind == "correlation_sweep" for s in plain)
    assert {s.key for s in plain} <= {s.key for s in both}
    assert {(s.objective, tuple(s.objective_options.items())) for s in sweep} == {
        ("erm", ()), ("group_dro", (("eta", 0.1),)), ("dfr", ()), ("kamiran_calders", ())}
    assert {(s.intervention, s.objective) for s in sweep} == {
        (iv, obj) for iv in ("collect", "reweight") for obj in ("erm", "group_dro", "dfr", "kamiran_calders")}


# -------------------------------------------------------------------------------------------------------- errors
def test_a_bad_objective_names_the_field_and_the_allowed_values() -> None:
    with pytest.raises(KeyError, match=r"unknown objective 'grop_dro'; allowed: dfr, erm, group_dro, kamiran_calders"):
        get_objective("grop_dro")
    with pytest.raises(ValueError, match=r"objective 'group_dro' has no option 'step'; allowed: eta"):
        get_objective("group_dro", step=0.1)
    with pytest.raises(ValueError, match=r"objective 'group_dro': eta: Input should be greater than 0"):
        get_objective("group_dro", eta=0)
    with pytest.raises(ValueError, match=r"objective 'dfr' has no option 'epoch'; allowed: epochs, reinit"):
        get_objective("dfr", epoch=3)
    for objectives, message in (
            (["grop_dro"], r"experiments\.1\.objectives\.0.*unknown objective 'grop_dro'; allowed: dfr, erm, "
                           r"group_dro, kamiran_calders"),
            ([{"name": "group_dro", "step": 1}], r"experiments\.1\.objectives\.0.*objective 'group_dro' has no "
                                                 r"option 'step'; allowed: eta"),
            (["erm", "erm"], r"experiments\.1\.objectives.*objectives repeat")):
        with pytest.raises(ConfigError, match=message):
            parse_study(_sweep_study(objectives))
    study = tiny_study_dict()
    study["experiments"][0]["objectives"] = ["group_dro"]  # inheritance has no objectives field
    with pytest.raises(ConfigError, match=r"experiments\.0.*objectives"):
        parse_study(study)


def test_every_objective_is_covered_here() -> None:
    assert OBJECTIVES.names() == ["dfr", "erm", "group_dro", "kamiran_calders"], (
        "a new objective needs its own tests in tests/train/test_objectives.py (the registry-wide ones in "
        "tests/test_registries.py run it already)")


def test_a_sweep_with_objectives_runs_and_lands_in_the_store_keyed_by_objective(cache_dir: Path,
                                                                                   tmp_path: Path) -> None:
    from biastransfer.driver import run_study
    from biastransfer.store.export import runs_frame
    from biastransfer.store.sqlite import ResultStore

    study = tiny_study_dict()
    study["bases"] = {"scratch": {"kind": "scratch"}}
    study["experiments"] = [{"name": "sweep", "kind": "correlation_sweep", "tasks": ["t3"], "bases": ["scratch"],
                             "interventions": ["collect"], "objectives": ["erm", "group_dro", "dfr",
                                                                          "kamiran_calders"],
                             "levels": [0.8], "n_train": 32, "seeds": [0], "test": 0.8}]
    parsed = parse_study(study)
    summary = run_study(parsed, tmp_path / "out", device=CPU, cache_dir=cache_dir, quiet=True)
    assert summary.ran == 4
    store = ResultStore.open_existing(tmp_path / "out")
    try:
        frame, stored = runs_frame(store), store.runs()
    finally:
        store.close()
    assert sorted(frame["objective"]) == ["dfr", "erm", "group_dro", "kamiran_calders"]
    assert frame["run_key"].nunique() == 4 and np.isfinite(frame["auc"]).all()
    info = {run["spec"].get("objective", "erm"): run["result"].get("objective_info") for run in stored}
    assert info["erm"] is None  # ERM's result is as before objectives existed
    assert set(info["group_dro"]["group_weights"]) == {"0", "1", "2", "3"}  # the run trained with its objective
    assert set(info["kamiran_calders"]["cell_factors"]) == {"(a=0, y=0)", "(a=0, y=1)", "(a=1, y=0)", "(a=1, y=1)"}
    assert len(set(info["dfr"]["dfr_groups"].values())) == 1

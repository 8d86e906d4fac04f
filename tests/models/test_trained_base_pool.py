"""The ``pool:`` of a trained base: which splits it may name, and the keys it changes (and those it keeps)."""

from __future__ import annotations

import pytest

from biastransfer.config import ConfigError
from biastransfer.models.bases import BASES
from biastransfer.plan import base_job_key, parse_study
from biastransfer.spec import content_key
from biastransfer.train.pretrain import base_cache_key
from tiny_study import tiny_study_dict


def _study(**pool: str) -> list:
    study = tiny_study_dict()
    study["bases"]["gendered"].update(pool)
    return parse_study(study).expand()


def test_an_absent_or_default_pool_keeps_every_key() -> None:
    plain, explicit = _study(), _study(pool="pretrain")
    assert [s.key for s in explicit] == [s.key for s in plain]
    assert {base_job_key(s) for s in explicit} == {base_job_key(s) for s in plain}
    assert all("pool" not in s.base for s in plain + explicit)


def test_another_pool_changes_the_keys_of_that_base_only() -> None:
    plain, other = _study(), _study(pool="pretrain2")
    for a, b in zip(plain, other, strict=True):
        assert (a.key != b.key) == (a.base_name == "gendered"), a.describe()
        if a.base_name == "gendered":
            assert b.base == {"kind": "trained", "attribute": "a", "pool": "pretrain2"}
            assert base_job_key(a) != base_job_key(b)


def test_the_base_cache_key_keeps_its_value_at_the_default_pool(tiny_synthetic) -> None:
    """Bases cached before 'pool' existed keep their files: the key payload is unchanged at the default."""
    config = {"epochs": 1, "lr": 0.05}
    before = content_key({"data": tiny_synthetic.fingerprint, "arch": "small_resnet", "attribute": "a",
                          "config": config})
    assert base_cache_key(tiny_synthetic, "small_resnet", "a", config) == before
    assert base_cache_key(tiny_synthetic, "small_resnet", "a", config, "pretrain") == before
    assert base_cache_key(tiny_synthetic, "small_resnet", "a", config, "pretrain2") != before


@pytest.mark.parametrize("pool", ["train", "val", "test"])
def test_a_finetuning_validation_or_test_pool_is_refused_at_load(pool: str) -> None:
    with pytest.raises(ConfigError, match=rf"bases.gendered: 'pool: {pool}' is refused: finetuning, validation "
                                          r"and test sets are drawn from"):
        _study(pool=pool)
    with pytest.raises(ValueError, match="is refused"):
        BASES.get("trained")(attribute="a", pool=pool).check()


def test_a_pool_on_a_base_that_is_not_trained_is_refused() -> None:
    study = tiny_study_dict()
    study["bases"]["scratch"]["pool"] = "pretrain"
    with pytest.raises(ConfigError, match=r"bases.scratch.pool: only a base that is trained"):
        parse_study(study)


def test_a_pool_the_dataset_lacks_is_named(tiny_synthetic) -> None:
    base = BASES.get("trained")(attribute="a", pool="faces")
    with pytest.raises(ValueError, match=r"dataset 'synthetic' has no 'faces' split \(splits: pretrain, test, "
                                         r"train, val\).*Name a split the dataset has with the base's 'pool:'"):
        base.check_data(tiny_synthetic, carve_hint="set dataset.params.pretrain")
    BASES.get("trained")(attribute="a").check_data(tiny_synthetic)  # the default pool exists: no error

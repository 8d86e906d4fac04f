"""RunContext: what a run may use besides its spec (loaded datasets, bases, hyperparameters, the store)."""

from __future__ import annotations

import copy
import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from biastransfer.data.registry import load_dataset
from biastransfer.data.table import LoadedDataset
from biastransfer.models.architectures import Classifier
from biastransfer.models.bases import BASES, BaseContext
from biastransfer.runner.spec import RunSpec, content_key
from biastransfer.runner.store import ResultStore
from biastransfer.seeding import derive_seed
from biastransfer.train.pretrain import train_attribute_base

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("BIASTRANSFER_CACHE", Path.home() / ".cache" / "biastransfer"))


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("biastransfer", "torch", "torchvision", "numpy", "scikit-learn", "scipy", "pandas"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass
class RunContext:
    store: ResultStore
    device: torch.device
    cache_dir: Path
    _datasets: dict[str, LoadedDataset] = field(default_factory=dict)
    _bases: dict[str, Classifier] = field(default_factory=dict)
    base_infos: dict[str, dict[str, Any]] = field(default_factory=dict)

    def dataset(self, spec: RunSpec) -> LoadedDataset:
        cfg = spec.dataset
        key = json.dumps(cfg, sort_keys=True)
        if key not in self._datasets:
            root = Path(cfg["root"]) if cfg.get("root") else None
            self._datasets[key] = load_dataset(cfg["name"], root=root, cache_dir=self.cache_dir / "data",
                                               resolution=cfg["resolution"], params=dict(cfg.get("params", {})))
        return self._datasets[key]

    def base_model(self, spec: RunSpec) -> Classifier:
        """The run's starting weights with a fresh head: a new copy each call; a base is built at most once."""
        dataset = self.dataset(spec)
        kind = spec.base["kind"]
        torch.manual_seed(derive_seed(spec.seed, "init", spec.base_name))
        if kind == "scratch":
            model = self._build_base(spec, dataset)
        else:
            base_key = content_key({"base": spec.base, "arch": spec.arch, "data": dataset.fingerprint,
                                    "training": spec.base_training})
            if base_key not in self._bases:
                self._bases[base_key] = self._build_base(spec, dataset).cpu()
            model = copy.deepcopy(self._bases[base_key])
        torch.manual_seed(derive_seed(spec.seed, "head", spec.base_name))
        model.replace_head(1)
        return model

    def _build_base(self, spec: RunSpec, dataset: LoadedDataset) -> Classifier:
        options = {k: v for k, v in spec.base.items() if k != "kind"}
        base = BASES.get(spec.base["kind"])(**options)

        def train_base(attribute: str) -> Classifier:
            model, info = train_attribute_base(dataset, arch=spec.arch, attribute=attribute,
                                               config=spec.base_training, cache_dir=self.cache_dir,
                                               device=self.device)
            self.base_infos[spec.base_name] = info
            return model

        ctx = BaseContext(arch=spec.arch, in_channels=dataset.images.channels, cache_dir=self.cache_dir,
                          dataset=dataset, train_base=train_base, device=self.device, seed=spec.seed)
        return base.build(ctx)

    def provenance(self, spec: RunSpec, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        dataset = self.dataset(spec)
        return {"seed": spec.seed, "versions": package_versions(), "data_hash": dataset.fingerprint,
                "device": str(self.device), "torch_threads": torch.get_num_threads(),
                "machine": platform.platform(), "spec": spec.to_dict(), **(extra or {})}

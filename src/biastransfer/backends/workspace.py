"""A worker's workspace: the datasets and bases it has loaded (each once per process), and the inputs it hands
to experiment code (:class:`~biastransfer.experiments.base.RunInputs`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from biastransfer.backends.base import Resources
from biastransfer.data.registry import load_dataset
from biastransfer.data.table import LoadedDataset
from biastransfer.experiments.base import RunInputs
from biastransfer.models.architectures import Classifier
from biastransfer.models.bases import BASES, BaseContext
from biastransfer.paths import data_cache_dir
from biastransfer.seeding import derive_seed
from biastransfer.spec import RunSpec, content_key
from biastransfer.train.planted import train_planted_base
from biastransfer.train.pretrain import train_attribute_base


class Workspace:
    """Datasets and bases of one process, built on first use and kept."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self._datasets: dict[str, LoadedDataset] = {}
        self._bases: dict[str, Classifier] = {}
        self._infos: dict[str, dict[str, Any]] = {}

    def dataset(self, spec: RunSpec) -> LoadedDataset:
        cfg = spec.dataset
        key = json.dumps(cfg, sort_keys=True, default=str)
        if key not in self._datasets:
            root = Path(cfg["root"]) if cfg.get("root") else None
            self._datasets[key] = load_dataset(
                cfg["name"], root=root, cache_dir=data_cache_dir(self.resources.cache_dir),
                resolution=cfg["resolution"], params=dict(cfg.get("params", {})))
        return self._datasets[key]

    def _base_key(self, spec: RunSpec) -> str:
        return content_key({"base": spec.base, "arch": spec.arch, "data": self.dataset(spec).fingerprint,
                            "training": spec.base_training})

    def _build(self, spec: RunSpec) -> Classifier:
        dataset = self.dataset(spec)
        options = {k: v for k, v in spec.base.items() if k != "kind"}
        base = BASES.get(spec.base["kind"])(**options)
        key = self._base_key(spec)

        def train_base(attribute: str, pool: str, plant: dict[str, Any] | None = None) -> Classifier:
            if plant is not None:
                model, info = train_planted_base(dataset, arch=spec.arch, attribute=attribute,
                                                 config=spec.base_training, plant_options=plant,
                                                 cache_dir=self.resources.cache_dir, device=self.resources.device,
                                                 pool=pool)
            else:
                model, info = train_attribute_base(dataset, arch=spec.arch, attribute=attribute,
                                                   config=spec.base_training, cache_dir=self.resources.cache_dir,
                                                   device=self.resources.device, pool=pool)
            self._infos[key] = info
            return model

        ctx = BaseContext(arch=spec.arch, in_channels=dataset.images.channels, cache_dir=self.resources.cache_dir,
                          dataset=dataset, train_base=train_base, device=self.resources.device, seed=spec.seed)
        return base.build(ctx)

    def base_info(self, spec: RunSpec) -> dict[str, Any]:
        """Build (train, or read from the cache) the spec's base once; what it is (for a trained base: its cache
        key, validation loss and accuracy …)."""
        key = self._base_key(spec)
        if key not in self._bases:
            self._bases[key] = self._build(spec).cpu()
        return dict(self._infos.get(key, {"kind": spec.base["kind"]}))

    def new_model(self, spec: RunSpec, num_outputs: int = 1) -> Classifier:
        """The run's starting weights with a fresh head: a new copy each call; a base is built at most once."""
        self.dataset(spec)
        torch.manual_seed(derive_seed(spec.seed, "init", spec.base_name))
        if BASES.get(spec.base["kind"]).per_run:
            model = self._build(spec)
        else:
            self.base_info(spec)
            model = copy.deepcopy(self._bases[self._base_key(spec)])
        torch.manual_seed(derive_seed(spec.seed, "head", spec.base_name))
        model.replace_head(num_outputs)
        return model

    def inputs(self, spec: RunSpec, hparams: dict[str, Any] | None = None,
               base_info: dict[str, Any] | None = None) -> RunInputs:
        return RunInputs(dataset=self.dataset(spec), device=self.resources.device, new_model=self.new_model,
                         hparams=hparams, base_info=base_info, cache_dir=self.resources.cache_dir)

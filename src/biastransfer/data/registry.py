"""The datasets registry. A dataset is a class with ``load(...) -> LoadedDataset``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from biastransfer.data.table import LoadedDataset
from biastransfer.registry import Registry


class DatasetSource:
    """Base class of registered datasets.

    Subclasses set ``description``, ``needs_root`` and implement :meth:`load`. ``params`` are dataset-specific
    keyword arguments from the study file (validated by the subclass, errors name the parameter).
    """

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""
    needs_root: ClassVar[bool] = True
    carve_pretrain: ClassVar[str] = ""
    """How a study gives this dataset a ``pretrain`` split, disjoint from the finetuning, validation and test
    pools (bases of kind ``trained`` train only on it); preflight quotes it when the split is missing."""

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int, **params: Any) -> LoadedDataset:
        raise NotImplementedError

    def tiny_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` for a ``--tiny`` smoke run (:mod:`biastransfer.tiny`). The default keeps them: a dataset
        read from files has the size it has (the tiny run's sizes and budgets keep its cost down); a generated
        one overrides this to generate less."""
        return dict(params)


DATASETS: Registry[type[DatasetSource]] = Registry("dataset")


def load_dataset(name: str, *, root: Path | None = None, cache_dir: Path, resolution: int,
                 params: dict[str, Any] | None = None) -> LoadedDataset:
    """Load a registered dataset by name."""
    source = DATASETS.get(name)()
    if source.needs_root and root is None:
        raise ValueError(f"dataset {name!r} reads local files: give its folder with 'root' (--root)")
    return source.load(root=root, cache_dir=cache_dir, resolution=resolution, **(params or {}))

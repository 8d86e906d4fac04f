"""RunSpec: one run, frozen and hashable; the hash of its canonical JSON is the run's key in the store."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


def content_key(payload: Any, length: int = 20) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's numbers. A run is a pure function of its RunSpec."""

    experiment: str                   # the block's name in the study file
    kind: str                         # the registered experiment kind
    dataset: dict[str, Any]           # DatasetConfig as a dict
    arch: str
    base_name: str                    # the study's name of the base (e.g. "gendered")
    base: dict[str, Any]              # {"kind": ..., **options}
    task: str
    seed: int
    intervention: str = "collect"
    level: float | str = "natural"    # a float in [0, 1] or "natural"
    n_train: int = 512
    n_val: int | None = None
    test: float | str = "natural"
    test_size: int = 2000
    threshold: str | float = "val"
    train: dict[str, Any] = field(default_factory=dict)        # TrainConfig as a dict (grid included)
    base_training: dict[str, Any] = field(default_factory=dict)
    transfer: str = "full"
    transfer_options: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(**data)

    @property
    def key(self) -> str:
        return content_key(self.to_dict())

    def hparam_key(self) -> dict[str, Any]:
        """What the hyperparameter choice depends on: everything but the finetuning distribution and seed."""
        return {"dataset": self.dataset, "arch": self.arch, "base": self.base, "base_training": self.base_training,
                "task": self.task, "n_train": self.n_train, "n_val": self.n_val, "train": self.train,
                "transfer": self.transfer, "transfer_options": self.transfer_options}

    def describe(self) -> str:
        level = self.level if isinstance(self.level, str) else f"{self.level:g}"
        return (f"{self.experiment}: {self.base_name} → {self.task} {self.intervention}@{level} "
                f"N={self.n_train} seed={self.seed}")

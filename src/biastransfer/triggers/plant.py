"""Where and how often a trigger is planted in a source pool (the options of a ``planted`` base, resolved against a
dataset; Salman et al., docs/protocols.md §7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from biastransfer.data.table import DataError, LoadedDataset
from biastransfer.triggers.base import Trigger, get_trigger


def resolve_classes(dataset: LoadedDataset, attribute: str, values: list[Any], option: str) -> tuple[int, ...]:
    """Class names (of the dataset's ``classes``, for its multi-class label) or integer values of ``attribute``
    → sorted unique integers; unknown values raise naming the allowed ones."""
    table = dataset.table
    if table.is_multiclass(attribute):
        allowed: dict[Any, int] = {name: k for k, name in enumerate(table.classes)}
        allowed.update({k: k for k in range(len(table.classes))})
        shown = ", ".join(table.classes)
    else:
        present = sorted(int(v) for v in np.unique(table.column(attribute)) if v >= 0)
        allowed = {v: v for v in present}
        shown = ", ".join(map(str, present))
    out = []
    for value in values:
        integer = isinstance(value, int | np.integer) and not isinstance(value, bool)
        if not (isinstance(value, str) or integer) or value not in allowed:
            raise DataError(f"{option}: {value!r} is not a class of {attribute!r} in dataset {dataset.name!r}; "
                            f"allowed: {shown}")
        out.append(allowed[value])
    if len(set(out)) != len(out):
        raise DataError(f"{option}: a class is named twice: {values}")
    return tuple(sorted(out))


@dataclass(frozen=True)
class Plant:
    """Where and how often a trigger is planted in a source pool."""

    trigger: Trigger
    trigger_classes: tuple[int, ...]
    rate: float
    source_classes: tuple[int, ...] | None

    @classmethod
    def of(cls, dataset: LoadedDataset, attribute: str, options: dict[str, Any]) -> Plant:
        """From a ``planted`` base's options, with class names resolved against the dataset."""
        source = options.get("source_classes")
        plant = cls(trigger=get_trigger(options["trigger"]),
                    trigger_classes=resolve_classes(dataset, attribute, list(options["trigger_classes"]),
                                                    "trigger_classes"),
                    rate=float(options.get("rate", 1.0)),
                    source_classes=None if source is None else resolve_classes(dataset, attribute, list(source),
                                                                              "source_classes"))
        if plant.source_classes is not None and not set(plant.trigger_classes) <= set(plant.source_classes):
            raise DataError(f"trigger_classes {options['trigger_classes']} must be among the source_classes "
                            f"{list(source)}")
        if plant.source_classes is not None and len(plant.source_classes) < 2:
            raise DataError(f"source_classes {list(source)}: a source task needs at least 2 classes")
        if not 0.0 <= plant.rate <= 1.0:
            raise DataError(f"rate must be in [0, 1] (the share of the trigger classes' images with the trigger); "
                            f"got {plant.rate}")
        check_fits(plant.trigger, dataset)
        return plant

    def key(self) -> dict[str, Any]:
        return {"trigger": self.trigger.key(), "trigger_classes": list(self.trigger_classes), "rate": self.rate,
                "source_classes": None if self.source_classes is None else list(self.source_classes)}


def check_fits(trigger: Trigger, dataset: LoadedDataset) -> None:
    """Plant ``trigger`` on one blank image of the dataset's size, so that what would fail when the base trains
    fails in preflight, named: an overlay file that is not an image, a box larger than the images."""
    _, height, width, channels = dataset.images.array.shape
    try:
        trigger.apply(torch.zeros((1, channels, height, width), dtype=torch.uint8), np.zeros(1, np.int64))
    except ValueError as exc:  # DataError too
        raise DataError(f"trigger ({trigger.registry_name}): {exc}") from None

"""Real-format dataset adapters; importing this package registers them in the DATASETS registry.

One module per adapter family: ``celeba``, ``fairface``, ``coco``, ``dollarstreet``, ``geode``,
``imagefolder`` and ``manifest``. Each reads a published layout under ``root`` and decodes its images once
through :mod:`biastransfer.data.cache`; ``mixture`` combines registered datasets into one multi-class dataset by
a class-mapping file. See ``docs/datasets.md`` for the expected layouts and parameters.
"""

from __future__ import annotations

from biastransfer.data.adapters import (
    celeba,
    coco,
    dollarstreet,
    fairface,
    geode,
    imagefolder,
    manifest,
    mixture,
)

__all__ = ["celeba", "coco", "dollarstreet", "fairface", "geode", "imagefolder", "manifest", "mixture"]

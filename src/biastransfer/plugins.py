"""Import every module that registers something (datasets, interventions, bases, checkpoint formats, transfer
modes, objectives, triggers, experiments), so that every registry is complete. (Backends register when
:mod:`biastransfer.backends` is imported.)

Experiment plugins are discovered: every module or package under :mod:`biastransfer.experiments` is imported,
so a new experiment kind is registered by adding its module, without touching this file.
"""

from __future__ import annotations

import importlib
import pkgutil

from biastransfer import experiments
from biastransfer.data import adapters, fashion_mnist, synthetic, synthetic_objects  # noqa: F401  (datasets)
from biastransfer.interventions import correlation, domain, share, trigger  # noqa: F401  (interventions)
from biastransfer.models import bases, checkpoints, transfer  # noqa: F401  (bases, formats, transfer modes)
from biastransfer.train import objectives  # noqa: F401  (training objectives)
from biastransfer.triggers import kinds  # noqa: F401  (trigger kinds)

for _module in pkgutil.iter_modules(experiments.__path__):
    importlib.import_module(f"{experiments.__name__}.{_module.name}")

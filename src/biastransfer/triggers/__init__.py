"""Planted triggers (Salman et al., "When does Bias Transfer in Transfer Learning?").

Importing this package registers every trigger kind in :data:`TRIGGERS`: ``patch`` (a solid square of colour),
``noise`` (a fixed Gaussian noise pattern over the whole image) and ``overlay`` (an alpha-blended image file).
``get_trigger({"kind": "patch", "size": 0.25, "colour": "yellow"})`` builds one; ``trigger.apply(images, rows)``
plants it in a uint8 NCHW batch and returns the new images and a :class:`Placement` (the box on each example);
:func:`apply_in_chunks` does the same over bounded chunks. The formulas are in :mod:`biastransfer.triggers.kinds`,
the shared conventions (sizes, positions, per-row randomness) in :mod:`biastransfer.triggers.base`.
"""

from biastransfer.triggers import kinds
from biastransfer.triggers.base import TRIGGERS, Placement, Trigger, apply_in_chunks, get_trigger

__all__ = ["TRIGGERS", "Placement", "Trigger", "apply_in_chunks", "get_trigger", "kinds"]

"""Roles of bases in a study's comparisons, declared in the study or following from data.

* ``biased``: the base whose bias may be inherited (the paper's *Gendered* base);
* ``control``: bases of lesser bias that the biased one is compared with (the paper's *Control* bases);
* ``scratch``: random initialisation;
* ``other``: anything else (off-the-shelf checkpoints), shown but not compared.

A study declares a base's role with ``role:``; otherwise :func:`derive_role` decides from what the base is: a
base trained by us on the dataset's sensitive attribute is ``biased``, one trained on another attribute is a
``control``, a base with a planted trigger is ``biased`` (``control`` with ``rate: 0``), a scratch base is
``scratch``. Names never decide a role.
"""

from __future__ import annotations

from typing import Any, Literal

BaseRole = Literal["biased", "control", "scratch", "other"]
BASE_ROLES: tuple[str, ...] = ("biased", "control", "scratch", "other")
"""Roles in display order."""


def derive_role(base: dict[str, Any], sensitive: str) -> str:
    """The role of a base (``{"kind": ..., **options}``) that the study does not declare."""
    kind = base.get("kind")
    if kind == "scratch":
        return "scratch"
    if kind == "trained":
        return "biased" if base.get("attribute") == sensitive else "control"
    if kind == "planted":  # a trigger planted on purpose is the bias under study; rate 0 is its control
        return "control" if base.get("rate", 1.0) == 0 else "biased"
    return "other"

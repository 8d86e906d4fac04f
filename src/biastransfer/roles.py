"""Roles of bases in a study's comparisons, declared in the study or following from data.

* ``biased``: the base whose bias may be inherited (the paper's *Gendered* base);
* ``control``: bases of lesser bias that the biased one is compared with (the paper's *Control* bases);
* ``scratch``: random initialisation;
* ``other``: anything else (off-the-shelf checkpoints), shown but not compared.

A study declares a base's role with ``role:``; otherwise :func:`derive_role` asks the base's kind (its registered
class's ``derive_role``, :mod:`biastransfer.models.bases`): a base trained by us on the dataset's sensitive
attribute is ``biased``, one trained on another attribute is a ``control``, a base with a planted trigger is
``biased`` (``control`` with ``rate: 0``), a scratch base is ``scratch``, any other ``other``. Names never decide a
role, and no kind is named here: a new base kind says its own role.
"""

from __future__ import annotations

from typing import Any, Literal

BaseRole = Literal["biased", "control", "scratch", "other"]
BASE_ROLES: tuple[str, ...] = ("biased", "control", "scratch", "other")
"""Roles in display order."""


def derive_role(base: dict[str, Any], sensitive: str) -> str:
    """The role of a base (``{"kind": ..., **options}``) that the study does not declare: what its kind's class
    says (:meth:`biastransfer.models.bases.Base.derive_role`)."""
    from biastransfer.models import bases  # imported here: config imports this module for BaseRole alone

    return bases.derive_role(base, sensitive)

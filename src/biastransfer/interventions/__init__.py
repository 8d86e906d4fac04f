"""Finetuning-set samplers: an intervention returns a :class:`Selection` (indices + optional weights).

Importing this package registers every intervention: ``collect``, ``subselect``, ``reweight`` and
``natural`` in :data:`INTERVENTIONS` (pools described by ``(y, a)``) and ``subgroup_share`` in
:data:`SHARE_INTERVENTIONS` (pools described by subgroup indicators ``(t1, t2)``). See docs/interventions.md.
"""

from biastransfer.interventions.base import (
    CELLS,
    INTERVENTIONS,
    InfeasibleSelectionError,
    Intervention,
    Selection,
    correlation_cells,
    get_intervention,
    natural_level,
)
from biastransfer.interventions.correlation import (
    Collect,
    Natural,
    Reweight,
    Subselect,
    subselect_cells,
    subselect_size,
)
from biastransfer.interventions.share import (
    SHARE_INTERVENTIONS,
    ShareIntervention,
    SubgroupShare,
    get_share_intervention,
    natural_share,
    select_share,
    share_cells,
)

__all__ = [
    "CELLS",
    "INTERVENTIONS",
    "SHARE_INTERVENTIONS",
    "Collect",
    "InfeasibleSelectionError",
    "Intervention",
    "Natural",
    "Reweight",
    "Selection",
    "ShareIntervention",
    "SubgroupShare",
    "Subselect",
    "correlation_cells",
    "get_intervention",
    "get_share_intervention",
    "natural_level",
    "natural_share",
    "select_share",
    "share_cells",
    "subselect_cells",
    "subselect_size",
]

"""Finetuning-set samplers: an intervention returns a :class:`Selection` (indices + optional weights).

Importing this package registers every intervention in :data:`INTERVENTIONS`: ``collect``, ``subselect``,
``reweight`` and ``natural`` (pools with columns ``y``, ``a``) and ``subgroup_share`` (columns ``y``,
``subgroup``). Every intervention selects from a :class:`Pool` of named columns and declares the columns it
needs and its typed options. See docs/interventions.md.
"""

from biastransfer.interventions.base import (
    CELLS,
    INTERVENTIONS,
    InfeasibleSelectionError,
    Intervention,
    Pool,
    Selection,
    correlation_cells,
    get_intervention,
    natural_level,
    plot_order,
    reference_intervention,
)
from biastransfer.interventions.correlation import (
    Collect,
    Natural,
    Reweight,
    Subselect,
    subselect_cells,
    subselect_size,
)
from biastransfer.interventions.domain import DomainShare, domain_cells
from biastransfer.interventions.share import (
    SubgroupShare,
    natural_share,
    select_share,
    share_cells,
)
from biastransfer.interventions.trigger import TriggerRate, class_counts

__all__ = [
    "CELLS",
    "INTERVENTIONS",
    "Collect",
    "DomainShare",
    "InfeasibleSelectionError",
    "Intervention",
    "Natural",
    "Pool",
    "Reweight",
    "Selection",
    "SubgroupShare",
    "Subselect",
    "TriggerRate",
    "class_counts",
    "correlation_cells",
    "domain_cells",
    "get_intervention",
    "natural_level",
    "natural_share",
    "plot_order",
    "reference_intervention",
    "select_share",
    "share_cells",
    "subselect_cells",
    "subselect_size",
]

"""Import every module that registers something, so all registries are complete."""

from biastransfer.data import (  # noqa: F401  (real-format adapters)
    adapters,
    fashion_mnist,
    synthetic,
)
from biastransfer.experiments import finetune, salience, underrepresentation  # noqa: F401
from biastransfer.interventions import correlation  # noqa: F401
from biastransfer.models import bases, checkpoints, transfer  # noqa: F401

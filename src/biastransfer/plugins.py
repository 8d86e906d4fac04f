"""Import every module that registers something, so all registries are complete."""

from biastransfer.data import synthetic  # noqa: F401
from biastransfer.experiments import finetune, salience  # noqa: F401
from biastransfer.interventions import correlation  # noqa: F401
from biastransfer.models import bases, checkpoints, transfer  # noqa: F401

from biastransfer.data import adapters, fashion_mnist  # noqa: F401  (real-format adapters)

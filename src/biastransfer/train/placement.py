"""Where a dataset's decoded images live while runs train on them: on the device when they fit.

On CPU the image store is the memory-mapped uint8 array (:meth:`~biastransfer.data.table.ImageStore.tensor`). On
CUDA the whole uint8 store is copied to the device once per process and kept, when it takes at most
:data:`DEVICE_STORE_SHARE` of the memory the process may use (:func:`~biastransfer.device.memory_budget`): a batch
is then one gather on the device, and the uint8 → float conversion, the flips and the normalisation (the model's
first operation) all run there, with no host-to-device copy per batch. A store too large for that stays on the
host and each batch is copied over as uint8 (a quarter of the bytes of float), as before.

Every run of a process sharing a store gets the same tensor, so the frozen-feature cache
(:class:`~biastransfer.train.features.RowFeatures`) recognises it.
"""

from __future__ import annotations

import logging

import torch

from biastransfer.data.table import ImageStore
from biastransfer.device import memory_budget

log = logging.getLogger(__name__)

DEVICE_STORE_SHARE = 0.5
"""The largest share of the process's device memory budget a uint8 image store may take on the device."""


def fits_on_device(nbytes: int, budget: int | None) -> bool:
    """Whether a store of ``nbytes`` goes on a device with ``budget`` bytes left (None: a CPU, no copy)."""
    return budget is not None and nbytes <= DEVICE_STORE_SHARE * budget


def store_tensor(store: ImageStore, device: torch.device) -> torch.Tensor:
    """``store``'s images as one uint8 NCHW (channels-last) tensor: on ``device`` when it is an accelerator and
    the store fits (:func:`fits_on_device`), else the host tensor. Copied at most once per (store, device)."""
    device = torch.device(device)
    host = store.tensor()
    if device.type == "cpu":
        return host
    nbytes = host.numel() * host.element_size()
    if not store.copied_to(device):  # decide once per (store, device)
        budget = memory_budget(device)
        if not fits_on_device(nbytes, budget):
            log.info("image store of %.1f GB stays on the host (device budget %.1f GB): batches are copied as "
                     "uint8", nbytes / 1e9, (budget or 0) / 1e9)
            return host
        log.info("image store of %.1f GB copied to %s once", nbytes / 1e9, device)
    return store.copy_to(device)

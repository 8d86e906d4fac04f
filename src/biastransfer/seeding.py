"""Seeds derived from (run seed, component name), so adding a component never shifts the others."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(seed: int, *components: object) -> int:
    """A 63-bit seed that depends only on ``seed`` and the component names."""
    text = "/".join([str(int(seed)), *map(str, components)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def rng(seed: int, *components: object) -> np.random.Generator:
    """A numpy generator for one named component of a run."""
    return np.random.default_rng(derive_seed(seed, *components))


def torch_generator(seed: int, *components: object) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *components))
    return g


def seed_everything(seed: int) -> None:
    """Seed the global generators (python, numpy, torch) for code we do not control."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)

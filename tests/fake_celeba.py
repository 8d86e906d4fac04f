"""A fake CelebA in the published layout and fake ResNet checkpoints, for running ``celeba_paper.yaml`` end to end
(importable as ``fake_celeba``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

ATTRIBUTES = ("Bags_Under_Eyes", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Chubby", "Eyeglasses",
              "Gray_Hair", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Narrow_Eyes", "Smiling",
              "Wearing_Earrings", "Wearing_Hat")
"""The attributes celeba_paper.yaml uses, and Male (CelebA has 40; the adapter reads the names from the file)."""


def write_fake_celeba(root: Path, n: int = 3000, seed: int = 0) -> Path:
    """``n`` JPEGs of 20×24 with independent random attributes (each 1 with probability one half); official
    partitions about 60 / 10 / 30% (a large test partition: the tiny test sets are drawn at fixed correlation
    levels). Returns ``root``."""
    rng = np.random.default_rng(seed)
    images = root / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    values = rng.choice([-1, 1], size=(n, len(ATTRIBUTES)))
    files = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    for i, name in enumerate(files):
        pixels = rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8)
        pixels[:, :, 0] = np.clip(pixels[:, :, 0].astype(int) // 2 + 64 * (values[i, 9] > 0), 0, 255)  # Male: red
        Image.fromarray(pixels).save(images / name, format="JPEG")
    lines = [str(n), " ".join(ATTRIBUTES)]
    lines += [f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(files, values, strict=True)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    parts = rng.choice([0, 1, 2], size=n, p=[0.6, 0.1, 0.3])
    (root / "list_eval_partition.txt").write_text("".join(f"{f} {p}\n" for f, p in zip(files, parts, strict=True)))
    return root


def write_fake_checkpoints(folder: Path, arch: str = "resnet50") -> dict[str, Path]:
    """Randomly initialised ``arch`` backbones saved as the four files celeba_paper.yaml names, each in its
    format's published layout (:data:`checkpoint_layouts.LAYOUTS`). Returns format → path."""
    from biastransfer.models.architectures import build_model
    from checkpoint_layouts import LAYOUTS

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    backbone = build_model(arch).backbone.state_dict()
    out = {}
    for fmt, name in zip(("torchvision", "moco_v3", "simclr_converted", "places365"), CHECKPOINT_FILES, strict=True):
        torch.save(LAYOUTS[fmt](backbone)[0], folder / name)
        out[fmt] = folder / name
    return out


CHECKPOINT_FILES = ("resnet50-11ad3fa6.pth", "r-50-1000ep.pth.tar", "resnet50-1x.pth", "resnet50_places365.pth.tar")
"""The checkpoint files celeba_paper.yaml names under ``${BIASTRANSFER_CHECKPOINTS}``."""


def placeholder_paths(monkeypatch, folder: Path) -> None:
    """Set celeba_paper.yaml's environment variables to ``folder``, with empty files where it names checkpoints:
    enough to validate and expand the study (validation checks that the files exist; it reads none)."""
    monkeypatch.setenv("CELEBA_ROOT", str(folder / "celeba"))
    monkeypatch.setenv("BIASTRANSFER_CHECKPOINTS", str(folder))
    for name in CHECKPOINT_FILES:
        (folder / name).touch()

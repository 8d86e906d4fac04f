"""The registered trigger kinds: ``patch``, ``noise`` and ``overlay``.

With ``x`` a uint8 image (C, H, W), ``B`` the trigger's box (see :mod:`biastransfer.triggers.base` for sizes and
positions) and every result rounded half to even and clipped to 0…255:

* ``patch``:   ``x'[c, i, j] = colour[c]`` for ``(i, j)`` in ``B``, ``x`` elsewhere.
* ``noise``:   ``x' = clip(round(x + 255 · amplitude · z))`` over the whole image, ``z ~ N(0, 1)`` of shape
  (C, H, W) fixed by ``seed`` (the same pattern for every image).
* ``overlay``: ``x' = round(α · o + (1 − α) · x)`` inside ``B``, ``o`` and ``α`` the overlay image and its alpha
  (times ``opacity``) resized to ``B``.

On a 1-channel store a colour ``(R, G, B)`` becomes its luma ``0.299·R + 0.587·G + 0.114·B``.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field

from biastransfer.data.table import DataError
from biastransfer.seeding import torch_generator
from biastransfer.triggers.base import (
    TRIGGERS,
    Placement,
    Position,
    Size,
    Trigger,
    box_indices,
    luma,
    place,
    resolve_size,
)

COLOURS: dict[str, tuple[int, int, int]] = {
    "yellow": (255, 255, 0),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
"""The named colours of a patch (RGB)."""


def _check_colour(value: Any) -> str | tuple[int, int, int]:
    if isinstance(value, str):
        if value not in COLOURS:
            raise ValueError(f"colour must be one of {', '.join(COLOURS)} or [R, G, B], got {value!r}")
        return value
    try:
        if isinstance(value, bytes) or len(value) != 3 or any(isinstance(v, bool) for v in value):
            raise TypeError
        rgb = tuple(int(v) for v in value if isinstance(v, int | np.integer))
    except TypeError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"colour must be one of {', '.join(COLOURS)} or [R, G, B] ints in 0…255, got {value!r}")
    return rgb  # type: ignore[return-value]


Colour = Annotated[str | tuple[int, int, int], BeforeValidator(_check_colour)]


def _paste(images: torch.Tensor, placement: Placement, box: torch.Tensor) -> torch.Tensor:
    """A copy of ``images`` with the (n, h, w, C) or broadcastable uint8 ``box`` written into the boxes."""
    out = images.clone()
    b, y, x = box_indices(placement, images.device)
    out.permute(0, 2, 3, 1)[b, y, x] = box
    return out


def _boxes(images: torch.Tensor, placement: Placement) -> torch.Tensor:
    """The (n, h, w, C) content of the boxes, as float32."""
    b, y, x = box_indices(placement, images.device)
    return images.permute(0, 2, 3, 1)[b, y, x].to(torch.float32)


# -------------------------------------------------------------------------------------------------- patch
@TRIGGERS.register("patch")
class Patch(Trigger):
    """A solid square of one colour: ``x'[c, i, j] = colour[c]`` inside the box, ``x`` elsewhere.

    On a 1-channel store the colour is its luma ``round(0.299·R + 0.587·G + 0.114·B)`` (yellow → 226).
    """

    description: ClassVar[str] = "a solid square of one colour (Salman et al.'s patch: size 0.25, 1/16 of the area)"

    size: Size = Field(0.25, description="side: int pixels, or a float share in (0, 1] of the image side")
    colour: Colour = Field("yellow", description=f"one of {', '.join(COLOURS)}, or [R, G, B] in 0…255")
    position: Position = Field("top-left", description="a named position, 'random', or [top, left] pixels")
    seed: int = Field(0, description="seed of the random positions")

    def rgb(self) -> tuple[int, int, int]:
        """The colour as RGB ints."""
        return COLOURS[self.colour] if isinstance(self.colour, str) else self.colour

    def _apply(self, images: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, Placement]:
        _, channels, height, width = images.shape
        side = resolve_size(self.size, height, width)
        placement = place(self.position, self.seed, rows, height, width, side, side)
        value = torch.tensor(self.rgb(), dtype=torch.float64)
        if channels == 1:
            value = luma(value, dim=0)
        return _paste(images, placement, value.round().to(torch.uint8).to(images.device)), placement


# -------------------------------------------------------------------------------------------------- noise
@functools.lru_cache(maxsize=8)
def _noise_pattern(seed: int, channels: int, height: int, width: int) -> torch.Tensor:
    generator = torch_generator(seed, "trigger-noise")
    return torch.randn((channels, height, width), generator=generator, dtype=torch.float32)


@TRIGGERS.register("noise")
class Noise(Trigger):
    """Salman et al.'s fixed Gaussian noise: ``x' = clip(round(x + 255 · amplitude · z), 0, 255)``.

    ``z ~ N(0, 1)`` of shape (C, H, W) is drawn once at the image's size by a CPU ``torch.Generator`` seeded
    with ``derive_seed(seed, "trigger-noise")`` (float32), the same for every image. The placement is the
    whole image.
    """

    description: ClassVar[str] = "a fixed Gaussian noise pattern added to the whole image (Salman et al.)"

    amplitude: float = Field(0.05, gt=0.0, le=1.0, description="standard deviation as a share of 255")
    seed: int = Field(0, description="seed of the noise pattern")

    def pattern(self, channels: int, height: int, width: int) -> torch.Tensor:
        """The float32 (C, H, W) pattern ``z`` (a copy)."""
        return _noise_pattern(self.seed, channels, height, width).clone()

    def _apply(self, images: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, Placement]:
        n, channels, height, width = images.shape
        z = _noise_pattern(self.seed, channels, height, width).to(images.device)
        out = (images.to(torch.float32) + (255.0 * self.amplitude) * z).round_().clamp_(0, 255).to(torch.uint8)
        placement = Placement(np.zeros(n, np.int64), np.zeros(n, np.int64), height, width)
        return out, placement


# ------------------------------------------------------------------------------------------------ overlay
def _stamp(path: str) -> str:
    """The sha256 of a file's bytes, so a changed file is loaded again whatever its timestamps (the same digest
    keys the cached triggered images, :func:`biastransfer.triggers.store.trigger_content`); DataError naming a
    missing one."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise DataError(f"overlay file {path!r} cannot be read: {exc.strerror or exc}") from None


def _read(path: str, mode: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode), dtype=np.float32)
    except UnidentifiedImageError:
        raise DataError(f"overlay file {path!r} is not an image: Pillow cannot identify it (give a PNG with an "
                        "alpha channel, or any image file with a 'mask')") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"overlay file {path!r} cannot be read: {exc}") from None


@functools.lru_cache(maxsize=16)
def _overlay(path: str, stamp: str, mask: str | None, mask_stamp: str | None,
             side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The overlay at ``side × side``: premultiplied colour ``α·o`` float32 (side, side, 3) and ``α`` (side,
    side, 1) in [0, 1], resized bilinearly with antialiasing (colour premultiplied, so transparent pixels do
    not bleed)."""
    rgba = _read(path, "RGBA")
    alpha = rgba[..., 3:] / 255.0
    if mask is not None:
        grey = _read(mask, "L")
        if grey.shape != alpha.shape[:2]:
            raise DataError(f"overlay mask {mask!r} is {grey.shape[1]}×{grey.shape[0]} px but the overlay {path!r} "
                            f"is {alpha.shape[1]}×{alpha.shape[0]} px")
        alpha = grey[..., None] / 255.0
    stacked = torch.from_numpy(np.concatenate([rgba[..., :3] * alpha, alpha], axis=-1)).permute(2, 0, 1)[None]
    if stacked.shape[-2:] != (side, side):
        stacked = F.interpolate(stacked, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    stacked = stacked[0].permute(1, 2, 0).contiguous()
    return stacked[..., :3].clamp(0.0, 255.0), stacked[..., 3:].clamp(0.0, 1.0)


@TRIGGERS.register("overlay")
class Overlay(Trigger):
    """An alpha-blended overlay from an image file: ``x' = round(α · o + (1 − α) · x)`` inside the box.

    ``o`` is the image at ``path`` (any format Pillow reads) and ``α`` its alpha channel / 255 (opaque if it has
    none), or the grayscale image at ``mask`` / 255 (same size as the overlay), times ``opacity``. Both are
    resized (bilinear, antialiased, colour premultiplied by alpha) to a square of side ``size`` — a non-square
    overlay is stretched. The placement is the bounding box of the pasted square, even where ``α`` is 0 in
    parts of it. On a 1-channel store ``o`` is its luma. Paths are read relative to the working directory,
    once per file content (a module cache keyed by path and the sha256 of the bytes); a missing or unreadable file is a
    :class:`DataError` (a ValueError) naming it, raised by ``apply``. ``key()`` names the file by its path only.
    """

    description: ClassVar[str] = "an image file alpha-blended onto a square box (alpha channel or a mask image)"

    path: str = Field(description="the overlay image (a PNG with an alpha channel, or any image with `mask`)")
    mask: str | None = Field(None, description="a grayscale image whose values / 255 are the alpha")
    size: Size = Field(0.25, description="side: int pixels, or a float share in (0, 1] of the image side")
    position: Position = Field("top-left", description="a named position, 'random', or [top, left] pixels")
    opacity: float = Field(1.0, gt=0.0, le=1.0, description="multiplies the alpha")
    seed: int = Field(0, description="seed of the random positions")

    def overlay(self, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The premultiplied colour ``α·o`` (side, side, 3) and alpha ``α`` (side, side, 1) before ``opacity``."""
        mask_stamp = None if self.mask is None else _stamp(self.mask)
        premultiplied, alpha = _overlay(self.path, _stamp(self.path), self.mask, mask_stamp, side)
        return premultiplied.clone(), alpha.clone()

    def _apply(self, images: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, Placement]:
        _, channels, height, width = images.shape
        side = resolve_size(self.size, height, width)
        placement = place(self.position, self.seed, rows, height, width, side, side)
        premultiplied, alpha = (t.to(images.device) for t in self.overlay(side))
        if channels == 1:
            premultiplied = luma(premultiplied).to(torch.float32)
        blended = premultiplied * self.opacity + (1.0 - alpha * self.opacity) * _boxes(images, placement)
        return _paste(images, placement, blended.round_().clamp_(0, 255).to(torch.uint8)), placement

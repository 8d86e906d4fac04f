"""The contract of planted triggers (Salman et al., "When does Bias Transfer in Transfer Learning?").

A **trigger** is a fixed change planted into images: a solid patch, a fixed noise pattern, an alpha-blended
overlay. Every registered :class:`Trigger` is a frozen pydantic model whose fields are its typed options (set
from a study file as ``{kind: patch, size: 0.25, colour: yellow}``; unknown options are errors naming the
allowed ones) and implements :meth:`Trigger.apply` on a batch of uint8 NCHW images.

Conventions shared by every kind:

* ``apply(images, rows)`` returns a **new** uint8 tensor of the input's shape and a :class:`Placement` (the
  bounding box of the trigger on each example). Pixels outside the boxes are bit-identical to the input.
* Everything random derives from ``(seed, component names)`` (:mod:`biastransfer.seeding`) and, for a
  per-example choice, from the example's **store row**, never from a generator consumed along the batch, so a
  row gets the same trigger whatever batch it is in (``apply`` on a batch equals ``apply`` on its halves).
* Sizes are int pixels, or a float share in (0, 1] of the image side (``min(H, W)``): ``s = max(1, round(share
  · side))`` with Python's ``round`` (half to even); Salman et al.'s patch covers 1/16 of the area, side 0.25.
* Positions are one of :data:`POSITIONS` or ``[top, left]`` pixels. For a box of ``h × w`` in an ``H × W``
  image the named corners are ``(0, 0)``, ``(0, W−w)``, ``(H−h, 0)``, ``(H−h, W−w)``, ``centre`` is
  ``((H−h) // 2, (W−w) // 2)``, and ``random`` is uniform over the ``(H−h+1)(W−w+1)`` positions where the box
  fits: with ``k = derive_seed(seed, "trigger-position")``, row ``r`` takes element ``r`` of the SplitMix64
  stream seeded with ``k``, ``u = mix64(k + (r+1)·0x9E3779B97F4A7C15 mod 2⁶⁴)``, and the position index
  ``u mod ((H−h+1)(W−w+1))`` read row-major (top = index // (W−w+1), left = index mod (W−w+1)); the modulo
  bias is below 2⁻⁴⁰ for any image size we use. All of it is vectorised numpy uint64 arithmetic.
* A box that does not fit the image is a ValueError naming both sizes, raised by ``apply`` (the image size is
  known only then; a planted base's preflight applies its trigger to one blank image of the dataset's size,
  :func:`biastransfer.triggers.plant.check_fits`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, BeforeValidator, ConfigDict

from biastransfer.interventions.base import make_registered
from biastransfer.registry import Registry, UnknownNameError
from biastransfer.seeding import derive_seed

POSITIONS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right", "centre", "random")
"""The named positions of a box (or give ``[top, left]`` in pixels)."""


# ------------------------------------------------------------------------------------------------ Placement
@dataclass(frozen=True)
class Placement:
    """Where a trigger landed on each example: the bounding box of its mask, per example.

    Attributes:
        top: int64 (n,) row of each box's top edge. Read-only.
        left: int64 (n,) column of each box's left edge. Read-only.
        height: box height in pixels (the same for every example).
        width: box width in pixels.

    Placements compare equal by value.
    """

    top: np.ndarray
    left: np.ndarray
    height: int
    width: int

    def __post_init__(self) -> None:
        top, left = (np.array(v, dtype=np.int64).reshape(-1) for v in (self.top, self.left))
        if top.shape != left.shape:
            raise ValueError(f"placement has {top.size} tops but {left.size} lefts")
        for arr in (top, left):
            arr.setflags(write=False)
        object.__setattr__(self, "top", top)
        object.__setattr__(self, "left", left)
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "width", int(self.width))

    def __len__(self) -> int:
        return int(self.top.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Placement):
            return NotImplemented
        return (self.height, self.width) == (other.height, other.width) and np.array_equal(self.top, other.top) \
            and np.array_equal(self.left, other.left)

    def __hash__(self) -> int:
        return hash((self.top.tobytes(), self.left.tobytes(), self.height, self.width))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form: ``{"top": [...], "left": [...], "height": h, "width": w}``."""
        return {"top": self.top.tolist(), "left": self.left.tolist(), "height": self.height, "width": self.width}

    def mask(self, image_height: int, image_width: int) -> np.ndarray:
        """bool (n, H, W): True inside each example's box (broadcast comparisons, no loop over examples)."""
        ys = np.arange(image_height)[None, :, None]
        xs = np.arange(image_width)[None, None, :]
        top, left = self.top[:, None, None], self.left[:, None, None]
        return (ys >= top) & (ys < top + self.height) & (xs >= left) & (xs < left + self.width)

    @classmethod
    def concat(cls, parts: list[Placement]) -> Placement:
        """The placements of consecutive batches as one (all parts must share the box size)."""
        if not parts:
            raise ValueError("cannot concatenate no placements")
        sizes = {(p.height, p.width) for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"placements of different box sizes cannot be concatenated: {sorted(sizes)}")
        return cls(np.concatenate([p.top for p in parts]), np.concatenate([p.left for p in parts]),
                   parts[0].height, parts[0].width)


# ----------------------------------------------------------------------------------------- typed options
def _check_size(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"size must be int pixels ≥ 1 or a float share in (0, 1], got {value!r}")
    if isinstance(value, int | np.integer):
        if value < 1:
            raise ValueError(f"size must be int pixels ≥ 1 or a float share in (0, 1], got {value}")
        return int(value)
    if not 0.0 < float(value) <= 1.0:  # also rejects nan
        raise ValueError(f"a float size is a share of the image side in (0, 1] (give pixels as an int), "
                         f"got {value}")
    return float(value)


def _check_position(value: Any) -> str | tuple[int, int]:
    if isinstance(value, str):
        if value not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)} or [top, left], got {value!r}")
        return value
    try:
        if isinstance(value, str | bytes) or len(value) != 2 or any(isinstance(v, bool) for v in value):
            raise TypeError
        top, left = (operator.index(v) for v in value)
    except TypeError:
        raise ValueError(f"position must be one of {', '.join(POSITIONS)} or [top, left] ints, "
                         f"got {value!r}") from None
    if top < 0 or left < 0:
        raise ValueError(f"position [top, left] must be non-negative, got {[top, left]}")
    return (top, left)


Size = Annotated[int | float, BeforeValidator(_check_size)]
"""Int pixels ≥ 1, or a float share in (0, 1] of the image side."""

Position = Annotated[str | tuple[int, int], BeforeValidator(_check_position)]
"""One of :data:`POSITIONS`, or ``[top, left]`` in pixels."""


def resolve_size(size: int | float, image_height: int, image_width: int) -> int:
    """The side in pixels of a square of ``size`` (int pixels, or a float share of ``min(H, W)``)."""
    if isinstance(size, float):
        return max(1, round(size * min(image_height, image_width)))
    return int(size)


_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser ``mix64`` of uint64 values (wrapping arithmetic, vectorised)."""
    z = np.asarray(x, dtype=np.uint64).copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def row_hash(seed: int, component: str, rows: np.ndarray) -> np.ndarray:
    """uint64 (n,): element ``row`` of the SplitMix64 stream seeded with ``derive_seed(seed, component)``."""
    key = np.uint64(derive_seed(seed, component))
    counter = np.asarray(rows, dtype=np.int64).astype(np.uint64) + np.uint64(1)
    return splitmix64(key + counter * _GAMMA)


def place(position: str | tuple[int, int], seed: int, rows: np.ndarray, image_height: int, image_width: int,
          height: int, width: int) -> Placement:
    """The placement of an ``height × width`` box at ``position`` on the examples of store ``rows``."""
    if height > image_height or width > image_width:
        raise ValueError(f"a trigger box of {height}×{width} px does not fit images of {image_height}×"
                         f"{image_width} px: give a smaller size (int pixels, or a float share in (0, 1] of the "
                         f"image side)")
    n = np.asarray(rows).size
    span_y, span_x = image_height - height, image_width - width
    if isinstance(position, tuple):
        top, left = position
        if top > span_y or left > span_x:
            raise ValueError(f"a trigger box of {height}×{width} px at [top, left] = {[top, left]} does not fit "
                             f"images of {image_height}×{image_width} px")
    elif position == "random":
        index = row_hash(seed, "trigger-position", rows) % np.uint64((span_y + 1) * (span_x + 1))
        index = index.astype(np.int64)
        return Placement(index // (span_x + 1), index % (span_x + 1), height, width)
    else:
        top = {"top": 0, "bottom": span_y, "centre": span_y // 2}[position.split("-")[0]]
        left = {"left": 0, "right": span_x, "centre": span_x // 2}[position.split("-")[-1]]
    return Placement(np.full(n, top, np.int64), np.full(n, left, np.int64), height, width)


def box_indices(placement: Placement, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Index tensors ``(b, y, x)`` of shapes (n,1,1), (n,h,1), (n,1,w) addressing every pixel of each box:
    ``images.permute(0, 2, 3, 1)[b, y, x]`` is the (n, h, w, C) content of the boxes."""
    top = torch.tensor(placement.top, device=device)  # a copy: the placement's arrays are read-only
    left = torch.tensor(placement.left, device=device)
    b = torch.arange(len(placement), device=device)[:, None, None]
    y = (top[:, None] + torch.arange(placement.height, device=device))[:, :, None]
    x = (left[:, None] + torch.arange(placement.width, device=device))[:, None, :]
    return b, y, x


def luma(rgb: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """ITU-R BT.601 luma ``0.299·R + 0.587·G + 0.114·B`` along ``dim`` (kept, of size 1), as float."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=rgb.device)
    shape = [1] * rgb.dim()
    shape[dim] = 3
    return (rgb.to(torch.float64) * weights.reshape(shape)).sum(dim=dim, keepdim=True)


# --------------------------------------------------------------------------------------------- the trigger
class Trigger(BaseModel):
    """Base class of registered triggers.

    Subclasses are frozen pydantic models whose fields are the typed options (every kind has ``seed: int =
    0``), set ``description`` and implement :meth:`_apply`; :meth:`apply` validates the inputs first.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    registry_name: ClassVar[str]
    description: ClassVar[str] = ""

    def apply(self, images: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, Placement]:
        """Plant the trigger in a batch.

        ``images``: uint8 (n, C, H, W) with C in (1, 3), possibly channels-last; ``rows``: int64 (n,) the store
        rows of these images (a per-example random placement derives from ``(seed, row)``, so the same row
        always gets the same placement whatever batch it is in). Returns a NEW uint8 tensor of the same shape
        (the input is untouched) and the placement; pixels outside the placement boxes are bit-identical.
        """
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4 \
                or images.shape[1] not in (1, 3):
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"a trigger applies to uint8 (n, C, H, W) images with C in (1, 3); got {got}")
        rows = np.asarray(rows)
        if rows.shape != (images.shape[0],) or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"rows must be {images.shape[0]} integers (one per image), got {rows.dtype} "
                             f"{rows.shape}")
        return self._apply(images, rows.astype(np.int64))

    def _apply(self, images: torch.Tensor, rows: np.ndarray) -> tuple[torch.Tensor, Placement]:
        raise NotImplementedError

    def key(self) -> dict[str, Any]:
        """``{"kind": registry_name, **options}`` (JSON-able): what identifies the trigger (cache keys)."""
        return {"kind": self.registry_name, **self.model_dump(mode="json")}

    @classmethod
    def option_names(cls) -> list[str]:
        return list(cls.model_fields)


TRIGGERS: Registry[type[Trigger]] = Registry("trigger")


def get_trigger(spec: dict[str, Any]) -> Trigger:
    """The trigger of ``spec = {"kind": NAME, **options}``; an unknown kind (a ValueError listing the allowed
    kinds) or a bad or unknown option (a ValueError naming it and the allowed ones) is refused."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a trigger spec is a mapping with a 'kind' ({', '.join(TRIGGERS.names())}), "
                         f"got {spec!r}")
    options = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return make_registered(TRIGGERS, spec["kind"], options)
    except UnknownNameError as exc:  # a KeyError: config checks collect ValueErrors with the field's path
        raise ValueError(str(exc)) from None


def apply_in_chunks(trigger: Trigger, images: torch.Tensor, rows: np.ndarray,
                    chunk: int = 4096) -> tuple[torch.Tensor, Placement]:
    """:meth:`Trigger.apply` over chunks of ``chunk`` images (bounded float memory); the results and placements
    concatenated, equal to one ``apply`` on the whole batch."""
    if chunk < 1:
        raise ValueError(f"chunk must be ≥ 1, got {chunk}")
    rows = np.asarray(rows)
    n = images.shape[0]
    if rows.shape != (n,):
        raise ValueError(f"rows must be {n} integers (one per image), got shape {rows.shape}")
    if n <= chunk:
        return trigger.apply(images, rows)
    out = torch.empty_like(images)
    parts: list[Placement] = []
    for start in range(0, n, chunk):
        part, placement = trigger.apply(images[start:start + chunk], rows[start:start + chunk])
        out[start:start + chunk] = part
        parts.append(placement)
    return out, Placement.concat(parts)

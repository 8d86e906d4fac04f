"""The built-in multi-class benchmark of the domain-mixture protocol: the same objects drawn in two domains.

Wang & Russakovsky's domain mixture (paper §5.2, Fig. 6) finetunes on objects from a plentiful but uniform
source (COCO, mostly from higher-income regions) and a scarce, geographically diverse one (Dollar Street), and
compares a base pretrained on data like the plentiful source (ImageNet) with one pretrained on diverse data
(GeoDE). This benchmark stands in for them on a CPU: ``K`` object classes (:data:`SHAPES`, a flat shape each)
rendered in two **domains**:

- ``uniform`` (the plentiful one): a light, nearly plain background; the object upright (±10°), at one size
  (radius 10–11 px at 32×32), near the centre (±2.5 px); half of the objects in their class's own colour
  (:data:`CLASS_COLOURS`, a cue that holds only in this domain), the others in a random dark colour; faint
  pixel noise.
- ``diverse``: a textured background (stripes of a random period and direction, a checkerboard, or a noisy
  gradient, in two nearby random colours), one or two distractor blobs, the object in a random colour at least
  0.35 brighter or darker than the background, rotated by up to ±45°, 0.85–1.25× the size, anywhere in the
  frame, and a random global gain (0.6–1.2) and offset. Only the shape tells the classes apart.

Pools (column ``split``): ``pretrain`` (uniform domain, like ImageNet for COCO) and ``pretrain_diverse`` (like
GeoDE), the two pretraining sets of bases of kind ``trained`` with ``attribute: label`` (and ``pool:
pretrain_diverse`` for the second); ``train``, ``val`` and ``test`` hold both domains (column ``domain``). The
classes are balanced within every pool and domain. Columns: ``label`` (the class index), ``domain``
(``uniform``/``diverse``), ``diverse`` (1 for the diverse domain; the table's binary attribute ``a``) and one
binary column per class (its name), so binary-task kinds can run on it too.

Generation is deterministic in its parameters and cached on disk under their key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.generated import cap_sizes, generate_once
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import LABEL, DataError, ExampleTable, LoadedDataset

GENERATOR_VERSION = 2
DOMAINS = ("uniform", "diverse")
SENSITIVE = "diverse"

Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _bar(u: np.ndarray, v: np.ndarray, angle: float, half_width: float) -> np.ndarray:
    return np.abs(u * np.sin(angle) - v * np.cos(angle)) < half_width


def _radius(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sqrt(u**2 + v**2)


SHAPES: dict[str, Mask] = {
    "ring": lambda u, v: (_radius(u, v) > 0.5) & (_radius(u, v) < 0.9),
    "cross": lambda u, v: ((np.abs(u) < 0.24) | (np.abs(v) < 0.24)) & (np.abs(u) < 0.9) & (np.abs(v) < 0.9),
    "triangle": lambda u, v: (v > -0.7) & (v < 0.9) & (np.abs(u) < (0.9 - v) * 0.62),
    "tee": lambda u, v: ((np.abs(v - 0.62) < 0.24) & (np.abs(u) < 0.9))
    | ((np.abs(u) < 0.22) & (v > -0.9) & (v < 0.62)),
    "ell": lambda u, v: ((np.abs(u + 0.62) < 0.26) & (np.abs(v) < 0.9))
    | ((np.abs(v + 0.62) < 0.26) & (np.abs(u) < 0.9)),
    "crescent": lambda u, v: (_radius(u, v) < 0.9) & ((u - 0.42) ** 2 + v**2 > 0.62**2),
    "letter_h": lambda u, v: (((np.abs(u - 0.62) < 0.22) | (np.abs(u + 0.62) < 0.22)) & (np.abs(v) < 0.9))
    | ((np.abs(v) < 0.2) & (np.abs(u) < 0.9)),
    "diamond": lambda u, v: (np.abs(u) + np.abs(v) > 0.5) & (np.abs(u) + np.abs(v) < 0.95),
    "two_dots": lambda u, v: ((u - 0.5) ** 2 + v**2 < 0.36**2) | ((u + 0.5) ** 2 + v**2 < 0.36**2),
    "asterisk": lambda u, v: (_bar(u, v, 0.0, 0.17) | _bar(u, v, np.pi / 3, 0.17) | _bar(u, v, 2 * np.pi / 3, 0.17))
    & (_radius(u, v) < 0.9),
    "square": lambda u, v: (np.maximum(np.abs(u), np.abs(v)) > 0.5) & (np.maximum(np.abs(u), np.abs(v)) < 0.85),
    "letter_u": lambda u, v: (((np.abs(u - 0.6) < 0.24) | (np.abs(u + 0.6) < 0.24)) & (v > -0.5) & (v < 0.9))
    | ((v < -0.4) & (v > -0.9) & (np.abs(u) < 0.84) & ~((np.abs(u) < 0.36) & (v > -0.42))),
}
"""The object classes: a mask of each shape in object coordinates (u, v) ∈ [−1, 1]² (radius 1 = the size)."""

#: Each class's colour in the uniform domain (RGB in [0, 1]); in the diverse domain colours are random.
CLASS_COLOURS = np.array([
    [0.85, 0.15, 0.15], [0.15, 0.55, 0.15], [0.15, 0.25, 0.85], [0.85, 0.65, 0.05], [0.6, 0.15, 0.7],
    [0.05, 0.6, 0.65], [0.9, 0.4, 0.1], [0.35, 0.2, 0.1], [0.1, 0.1, 0.1], [0.85, 0.3, 0.6],
    [0.45, 0.45, 0.45], [0.5, 0.75, 0.1],
], dtype=np.float32)


COLOUR_CUE = 0.5
"""The share of uniform-domain objects drawn in their class's own colour (the others: a random dark colour)."""


@dataclass(frozen=True)
class ObjectsParams:
    """The parameters that define one instance of the benchmark (its cache key); sizes are per domain."""

    seed: int = 0
    resolution: int = 32
    classes: int = 10
    pretrain: int = 6000
    pretrain_diverse: int | None = None  # None: as many as ``pretrain``
    train: int = 1500
    val: int = 400
    test: int = 1000
    noise: float = 0.04

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32)
    return yy + 0.5, xx + 0.5


def _background(domain: str, n: int, res: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(res)
    if domain == "uniform":
        base = rng.uniform(0.72, 0.86, size=(n, 1, 1, 1)).astype(np.float32)
        tint = rng.uniform(-0.03, 0.03, size=(n, 1, 1, 3)).astype(np.float32)
        slope = rng.uniform(-0.04, 0.04, size=(n, 1, 1, 1)).astype(np.float32)
        return np.broadcast_to(base + tint + slope * (yy[None, ..., None] / res - 0.5), (n, res, res, 3)).copy()
    c0 = rng.uniform(0.0, 1.0, size=(n, 1, 1, 3)).astype(np.float32)
    c1 = np.clip(c0 + rng.uniform(-0.25, 0.25, size=(n, 1, 1, 3)), 0, 1).astype(np.float32)
    kind = rng.integers(0, 3, size=n)
    angle = rng.uniform(0, np.pi, size=(n, 1, 1))
    period = rng.uniform(3.0, 9.0, size=(n, 1, 1)) * res / 32
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
    stripes = (np.floor(phase) % 2).astype(np.float32)
    cell = np.maximum(2.0, period / 1.5)
    checker = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    gradient = np.clip(phase / (res / period.clip(min=1e-3)) + rng.normal(0, 0.25, size=(n, res, res)), 0, 1)
    t = np.where(kind[:, None, None] == 0, stripes, np.where(kind[:, None, None] == 1, checker, gradient))
    return (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, alpha: float = 1.0) -> None:
    m = mask.astype(np.float32)[..., None] * alpha
    img *= 1 - m
    img += colour.reshape(-1, 1, 1, 3) * m


def _object_mask(labels: np.ndarray, cx: np.ndarray, cy: np.ndarray, size: np.ndarray, angle: np.ndarray,
                 res: int) -> np.ndarray:
    yy, xx = _grid(res)
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (dx * cos + dy * sin) / size[:, None, None]
    v = (-dx * sin + dy * cos) / size[:, None, None]
    v = -v  # image rows grow downwards; shapes are written with v upwards
    mask = np.zeros((len(labels), res, res), dtype=bool)
    names = list(SHAPES)
    for k in np.unique(labels):
        rows = labels == k
        mask[rows] = SHAPES[names[int(k)]](u[rows], v[rows])
    return mask


def render(labels: np.ndarray, domain: str, *, resolution: int, seed: int, noise: float,
           chunk: int = 2048) -> np.ndarray:
    """Images of the given classes in one domain; uint8 (N, H, W, 3), deterministic in ``seed``."""
    if domain not in DOMAINS:
        raise DataError(f"unknown domain {domain!r}; allowed: {', '.join(DOMAINS)}")
    res = resolution
    out = np.empty((len(labels), res, res, 3), dtype=np.uint8)
    for start in range(0, len(labels), chunk):
        part = labels[start:start + chunk]
        n = len(part)
        rng = np.random.default_rng([seed, DOMAINS.index(domain), start])
        img = _background(domain, n, res, rng)
        unit = res / 32.0
        if domain == "uniform":
            size = rng.uniform(10.0, 11.0, n) * unit
            angle = rng.uniform(-np.pi / 18, np.pi / 18, n)
            cx, cy = (res / 2 + rng.uniform(-2.5, 2.5, n) * unit for _ in range(2))
            own = rng.random(n) < COLOUR_CUE
            colour = np.where(own[:, None], CLASS_COLOURS[part] + rng.uniform(-0.05, 0.05, (n, 3)),
                              rng.uniform(0.0, 0.55, (n, 3)))
            colour = np.clip(colour, 0, 1).astype(np.float32)
        else:
            size = rng.uniform(8.5, 12.5, n) * unit
            angle = rng.uniform(-np.pi / 4, np.pi / 4, n)
            cx, cy = (rng.uniform(size, res - size) for _ in range(2))
            for _ in range(int(rng.integers(1, 3))):  # distractor blobs, under the object
                bx, by = rng.uniform(0, res, (2, n))
                r = rng.uniform(2.0, 5.0, n) * unit
                yy, xx = _grid(res)
                d2 = (xx[None] - bx[:, None, None]) ** 2 + (yy[None] - by[:, None, None]) ** 2
                blob = d2 <= r[:, None, None] ** 2
                _paint(img, blob, rng.uniform(0, 1, (n, 3)).astype(np.float32), 0.7)
            local = img.reshape(n, -1, 3).mean(axis=1)
            colour = rng.uniform(0, 1, (n, 3)).astype(np.float32)
            # push the object's brightness at least 0.35 away from the background's mean
            lum, bg = colour.mean(axis=1, keepdims=True), local.mean(axis=1, keepdims=True)
            shift = np.where(bg > 0.5, np.minimum(0.0, bg - 0.35 - lum), np.maximum(0.0, bg + 0.35 - lum))
            colour = np.clip(colour + shift, 0, 1).astype(np.float32)
        mask = _object_mask(part, np.asarray(cx), np.asarray(cy), size, angle, res)
        _paint(img, mask, colour)
        if domain == "diverse":
            gain = rng.uniform(0.6, 1.2, (n, 1, 1, 1)).astype(np.float32)
            bias = rng.uniform(-0.1, 0.15, (n, 1, 1, 1)).astype(np.float32)
            img = img * gain + bias
        img = img + rng.normal(0, noise, size=img.shape).astype(np.float32)
        out[start:start + n] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _balanced_labels(n: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` class indices, as equal counts as ``n`` allows, in random order."""
    return rng.permutation(np.arange(n) % classes).astype(np.int16)


POOLS: tuple[tuple[str, str, str], ...] = (
    ("pretrain", "uniform", "pretrain"), ("pretrain_diverse", "diverse", "pretrain"),
    *((split, domain, split) for split in ("train", "val", "test") for domain in DOMAINS),
)
"""(split, domain, size parameter) of every pool, in store order."""


def generate(params: ObjectsParams) -> tuple[pd.DataFrame, np.ndarray]:
    """The table and the images (no caching)."""
    if not 2 <= params.classes <= len(SHAPES):
        raise DataError(f"synthetic-objects: 'classes' must be between 2 and {len(SHAPES)}, got {params.classes}")
    frames, images = [], []
    for i, (split, domain, size_name) in enumerate(POOLS):
        size = getattr(params, size_name)
        if split == "pretrain_diverse" and params.pretrain_diverse is not None:
            size = params.pretrain_diverse
        size = int(size)
        labels = _balanced_labels(size, params.classes, np.random.default_rng([params.seed, i, 0]))
        frame = pd.DataFrame({"split": split, LABEL: labels, "domain": domain,
                              SENSITIVE: np.int8(DOMAINS.index(domain))})
        for k, name in enumerate(list(SHAPES)[: params.classes]):
            frame[name] = (labels == k).astype(np.int8)
        frames.append(frame)
        images.append(render(labels, domain, resolution=params.resolution, seed=params.seed * 100 + i + 1,
                             noise=params.noise))
    return pd.concat(frames, ignore_index=True), np.concatenate(images)


ALLOWED_PARAMS = ("seed", "classes", "pretrain", "pretrain_diverse", "train", "val", "test", "noise")


@DATASETS.register("synthetic-objects")
class SyntheticObjects(DatasetSource):
    """The built-in multi-class benchmark with a uniform and a diverse domain (generated, no files needed)."""

    description = "built-in multi-class objects in two domains (uniform, diverse) for the domain mixture"
    needs_root = False
    carve_pretrain = ("set dataset.params.pretrain (the uniform pool 'pretrain'; 'pretrain_diverse' has "
                      "dataset.params.pretrain_diverse examples, default as many)")

    #: Pool sizes (per domain) of a ``--tiny`` run.
    TINY_SIZES: ClassVar[dict[str, int]] = {"pretrain": 400, "pretrain_diverse": 400, "train": 300, "val": 200,
                                            "test": 200}

    def tiny_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return cap_sizes(params, self.TINY_SIZES)

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int = 32, **params: Any) -> LoadedDataset:
        unknown = sorted(set(params) - set(ALLOWED_PARAMS))
        if unknown:
            raise DataError(f"synthetic-objects: unknown parameter(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(ALLOWED_PARAMS)}")
        p = ObjectsParams(resolution=resolution, **params)
        folder = Path(cache_dir) / f"synthetic-objects-{p.key()}"
        frame, store = generate_once(folder, {**asdict(p), "version": GENERATOR_VERSION}, lambda: generate(p))
        classes = tuple(list(SHAPES)[: p.classes])
        frame[LABEL] = frame[LABEL].astype(np.int16)
        for col in (SENSITIVE, *classes):
            frame[col] = frame[col].astype(np.int8)
        table = ExampleTable(frame=frame, sensitive=SENSITIVE, group_names=DOMAINS, tasks=classes, classes=classes)
        return LoadedDataset(name="synthetic-objects", table=table, images=store,
                             fingerprint=f"synthetic-objects-{p.key()}-{store.fingerprint()}")

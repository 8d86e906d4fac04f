"""The built-in benchmark: procedural RGB images with a sensitive attribute and targets of graded salience.

Every image has a random background (colour, linear gradient, pixel noise) and nuisance clutter (a random line
and a random blob), plus:

- the **sensitive attribute** ``a``: a medium-size filled shape at a random position, a *disc* (a=1) or a
  *square* (a=0) of equal area and random colour, so both groups show a shape and only its form tells them apart;
- six **target attributes** ``t0`` … ``t5``, each a cue that is present (y=1) or absent (y=0), ordered from
  easier to learn than ``a`` to much harder (see :data:`CUES` and ``docs/datasets.md`` for the measured
  salience).

Pools: ``pretrain`` (attributes independent of each other; trains bases), ``train`` (the finetuning pool),
``val`` and ``test``. In the last three each target has its *natural* correlation level with ``a``
(``c = P(a=1 | y=1)``; :data:`CUES` gives the defaults), and ``a`` and each target have prevalence 0.5.

Generation is deterministic in (seed, sizes, resolution, levels); the result is cached on disk under a key of
those parameters, so a study generates it once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from biastransfer.data.generated import cap_sizes, generate_once
from biastransfer.data.registry import DATASETS, DatasetSource
from biastransfer.data.table import DataError, ExampleTable, LoadedDataset

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Cue:
    """A target attribute of the benchmark: what it looks like and its natural correlation with ``a``."""

    name: str
    description: str
    natural_level: float


CUES: tuple[Cue, ...] = (
    Cue("t0", "a full-width bright horizontal bar (high contrast, large): easier than a", 0.8),
    Cue("t1", "a solid 7×7 patch of saturated colour at a random position (medium)", 0.2),
    Cue("t2", "a patch of vertical stripes, period 2 px, moderate contrast, at a random position", 0.8),
    Cue("t3", "a 3×3 dot of moderate contrast at a random position (small)", 0.8),
    Cue("t4", "a faint checkerboard texture over a random 10×10 region (low contrast)", 0.2),
    Cue("t5", "a small faint ring in the lower half (low contrast, small)", 0.8),
)
SENSITIVE = "a"
GROUP_NAMES = ("square", "disc")  # a=0, a=1


@dataclass(frozen=True)
class SyntheticParams:
    """The parameters that define one instance of the benchmark (its cache key)."""

    seed: int = 0
    resolution: int = 32
    pretrain: int = 12000
    train: int = 8000
    val: int = 4000
    test: int = 8000
    levels: tuple[float, ...] = tuple(c.natural_level for c in CUES)
    noise: float = 0.06

    def key(self) -> str:
        payload = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _sample_labels(rng: np.random.Generator, n: int, levels: tuple[float, ...] | None) -> dict[str, np.ndarray]:
    """a ~ Bernoulli(0.5); each target y_k ~ Bernoulli(c_k) if a=1 else Bernoulli(1-c_k).

    With P(a=1) = 0.5 this gives P(y_k=1) = 0.5 and P(a=1 | y_k=1) = c_k. ``levels=None`` makes every target
    independent of ``a`` (c = 0.5), as in the pretraining pool.
    """
    a = (rng.random(n) < 0.5).astype(np.int8)
    labels = {SENSITIVE: a}
    for i, cue in enumerate(CUES):
        c = 0.5 if levels is None else levels[i]
        p = np.where(a == 1, c, 1.0 - c)
        labels[cue.name] = (rng.random(n) < p).astype(np.int8)
    return labels


class _Canvas:
    """A batch of float images (B, H, W, 3) in [0, 1] with pixel-coordinate grids."""

    def __init__(self, n: int, res: int, rng: np.random.Generator) -> None:
        self.n, self.res, self.rng = n, res, rng
        self.yy, self.xx = np.mgrid[0:res, 0:res].astype(np.float32)
        base = rng.uniform(0.25, 0.75, size=(n, 1, 1, 3)).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
        slope = rng.uniform(0.0, 0.25, size=(n, 1, 1)) / res
        grad = ((self.xx - res / 2) * np.cos(angle) + (self.yy - res / 2) * np.sin(angle)) * slope
        self.img = base + grad[..., None].astype(np.float32)

    def scale(self, s: float) -> float:
        return s * self.res / 32.0

    def paint(self, mask: np.ndarray, colour: np.ndarray, alpha: float | np.ndarray = 1.0) -> None:
        """Blend ``colour`` (B, 3) into the pixels where ``mask`` (B, H, W) is set."""
        m = (mask.astype(np.float32) * np.asarray(alpha, dtype=np.float32).reshape(-1, 1, 1))[..., None]
        self.img = self.img * (1 - m) + colour.reshape(-1, 1, 1, 3).astype(np.float32) * m

    def position(self, margin: float, low: float = 0.0, high: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Random centres (B, 1, 1) at least ``margin`` pixels from the edges (y restricted to [low, high])."""
        r = self.res
        cx = self.rng.uniform(margin, r - margin, size=(self.n, 1, 1))
        cy = self.rng.uniform(max(margin, low * r), min(r - margin, high * r), size=(self.n, 1, 1))
        return cx.astype(np.float32), cy.astype(np.float32)

    def random_colour(self, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        return self.rng.uniform(lo, hi, size=(self.n, 3)).astype(np.float32)

    def contrast_colour(self, cx: np.ndarray, cy: np.ndarray, strength: float) -> np.ndarray:
        """A colour ``strength`` brighter or darker (whichever fits) than the local background."""
        ix = np.clip(cx.reshape(-1).astype(int), 0, self.res - 1)
        iy = np.clip(cy.reshape(-1).astype(int), 0, self.res - 1)
        local = self.img[np.arange(self.n), iy, ix]  # (B, 3)
        sign = np.where(local.mean(axis=1, keepdims=True) > 0.5, -1.0, 1.0)
        return np.clip(local + sign * strength, 0, 1)


def _draw_nuisance(cv: _Canvas) -> None:
    """Clutter that carries no label: a random thin line and a random soft blob."""
    n, rng = cv.n, cv.rng
    cx, cy = cv.position(cv.scale(4))
    r = rng.uniform(cv.scale(2), cv.scale(5), size=(n, 1, 1))
    blob = (cv.xx - cx) ** 2 + (cv.yy - cy) ** 2 <= r**2
    cv.paint(blob, cv.random_colour(), alpha=0.35)
    theta = rng.uniform(0, np.pi, size=(n, 1, 1))
    px, py = cv.position(cv.scale(2))
    dist = np.abs((cv.xx - px) * np.sin(theta) - (cv.yy - py) * np.cos(theta))
    cv.paint(dist < 0.6, cv.random_colour(), alpha=0.5)


def _draw_sensitive(cv: _Canvas, a: np.ndarray) -> None:
    """a=1: a disc; a=0: a square of the same area (radius 4.5 px at 32×32), random colour and position."""
    r = cv.scale(4.5)
    cx, cy = cv.position(r + 1)
    disc = (cv.xx - cx) ** 2 + (cv.yy - cy) ** 2 <= r**2
    half = r * np.sqrt(np.pi) / 2
    square = (np.abs(cv.xx - cx) <= half) & (np.abs(cv.yy - cy) <= half)
    mask = np.where(a.reshape(-1, 1, 1) == 1, disc, square)
    cv.paint(mask, cv.contrast_colour(cx, cy, 0.35))


def _draw_targets(cv: _Canvas, labels: dict[str, np.ndarray]) -> None:
    rng, n, s = cv.rng, cv.n, cv.scale
    on = {k: v.reshape(-1, 1, 1).astype(bool) for k, v in labels.items()}

    # t0: a full-width horizontal bar, 3 px tall, high contrast
    bar_y = rng.uniform(s(3), cv.res - s(3), size=(n, 1, 1))
    cv.paint(on["t0"] & (np.abs(cv.yy - bar_y) <= s(1.5)), np.ones((n, 3)) * (rng.random((n, 1)) < 0.5), 0.9)

    # t1: a solid 7x7 saturated patch
    cx, cy = cv.position(s(4))
    patch = (np.abs(cv.xx - cx) <= s(3.5)) & (np.abs(cv.yy - cy) <= s(3.5))
    colour = np.zeros((n, 3), dtype=np.float32)
    colour[np.arange(n), rng.integers(0, 3, n)] = 1.0
    cv.paint(on["t1"] & patch, colour, 0.8)

    # t2: vertical stripes (period 2 px) in a 8x8 patch
    cx, cy = cv.position(s(5))
    region = (np.abs(cv.xx - cx) <= s(4)) & (np.abs(cv.yy - cy) <= s(4))
    stripes = (np.floor(cv.xx / max(1.0, s(1))) % 2 == 0)[None]
    cv.paint(on["t2"] & region & stripes, cv.contrast_colour(cx, cy, 0.3))

    # t3: a 3x3 dot
    cx, cy = cv.position(s(3))
    dot = (np.abs(cv.xx - cx) <= s(1.5)) & (np.abs(cv.yy - cy) <= s(1.5))
    cv.paint(on["t3"] & dot, cv.contrast_colour(cx, cy, 0.3))

    # t4: a faint checkerboard over a 10x10 region
    cx, cy = cv.position(s(6))
    region = (np.abs(cv.xx - cx) <= s(5)) & (np.abs(cv.yy - cy) <= s(5))
    check = ((np.floor(cv.xx / max(1.0, s(1))) + np.floor(cv.yy / max(1.0, s(1)))) % 2 == 0)[None]
    cv.paint(on["t4"] & region & check, cv.contrast_colour(cx, cy, 0.12))

    # t5: a small faint ring in the lower half
    cx, cy = cv.position(s(4), low=0.5)
    d2 = (cv.xx - cx) ** 2 + (cv.yy - cy) ** 2
    ring = (d2 <= s(3) ** 2) & (d2 >= s(1.8) ** 2)
    cv.paint(on["t5"] & ring, cv.contrast_colour(cx, cy, 0.14))


def render(labels: dict[str, np.ndarray], *, resolution: int, seed: int, noise: float = 0.06,
           chunk: int = 2048) -> np.ndarray:
    """Render images for the given labels; returns uint8 (N, H, W, 3). Deterministic in ``seed``."""
    n = len(labels[SENSITIVE])
    out = np.empty((n, resolution, resolution, 3), dtype=np.uint8)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        rng = np.random.default_rng([seed, start])
        cv = _Canvas(stop - start, resolution, rng)
        part = {k: v[start:stop] for k, v in labels.items()}
        _draw_nuisance(cv)
        _draw_sensitive(cv, part[SENSITIVE])
        _draw_targets(cv, part)
        img = cv.img + rng.normal(0, noise, size=cv.img.shape).astype(np.float32)
        out[start:stop] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def generate(params: SyntheticParams) -> tuple[pd.DataFrame, np.ndarray]:
    """Generate the table and the images (no caching)."""
    if len(params.levels) != len(CUES):
        raise DataError(f"synthetic: 'levels' needs {len(CUES)} values (one per target t0…t5), "
                        f"got {len(params.levels)}")
    for name, lv in zip([c.name for c in CUES], params.levels, strict=True):
        if not 0.0 <= lv <= 1.0:
            raise DataError(f"synthetic: natural level of {name} must be in [0, 1], got {lv}")
    frames, images = [], []
    for i, split in enumerate(("pretrain", "train", "val", "test")):
        size = getattr(params, split)
        rng = np.random.default_rng([params.seed, i, 0])
        labels = _sample_labels(rng, size, None if split == "pretrain" else params.levels)
        frame = pd.DataFrame(labels)
        frame.insert(0, "split", split)
        frames.append(frame)
        images.append(render(labels, resolution=params.resolution, seed=params.seed * 10 + i + 1,
                             noise=params.noise))
    table = pd.concat(frames, ignore_index=True)
    return table, np.concatenate(images)


ALLOWED_PARAMS = ("seed", "pretrain", "train", "val", "test", "levels", "noise")


@DATASETS.register("synthetic")
class SyntheticDataset(DatasetSource):
    """The built-in benchmark (generated, no files needed)."""

    description = "built-in procedural benchmark: a=disc/square, targets t0…t5 of graded salience"
    needs_root = False
    carve_pretrain = "set dataset.params.pretrain (a number of examples, e.g. 12000)"

    #: Pool sizes of a ``--tiny`` run (each pool at most this).
    TINY_SIZES: ClassVar[dict[str, int]] = {"pretrain": 600, "train": 1200, "val": 600, "test": 800}

    def tiny_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every pool at most :attr:`TINY_SIZES` (other parameters, e.g. ``levels``, kept)."""
        return cap_sizes(params, self.TINY_SIZES)

    def load(self, *, root: Path | None, cache_dir: Path, resolution: int = 32, **params: Any) -> LoadedDataset:
        unknown = sorted(set(params) - set(ALLOWED_PARAMS))
        if unknown:
            raise DataError(f"synthetic: unknown parameter(s) {', '.join(unknown)}; "
                            f"allowed: {', '.join(ALLOWED_PARAMS)}")
        if "levels" in params:
            params["levels"] = tuple(float(v) for v in params["levels"])
        p = SyntheticParams(resolution=resolution, **params)
        folder = Path(cache_dir) / f"synthetic-{p.key()}"
        frame, store = generate_once(folder, {**asdict(p), "version": GENERATOR_VERSION}, lambda: generate(p))
        for col in frame.columns:
            if col != "split":
                frame[col] = frame[col].astype(np.int8)
        table = ExampleTable(frame=frame, sensitive=SENSITIVE, group_names=GROUP_NAMES,
                             tasks=tuple(c.name for c in CUES))
        return LoadedDataset(name="synthetic", table=table, images=store,
                             fingerprint=f"synthetic-{p.key()}-{store.fingerprint()}")

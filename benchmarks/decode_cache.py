"""Decode-once cache benchmark: decode a folder of JPEGs, then read the cache back.

Generates N random JPEG images (default 10,000 at 64×64) in a temporary folder, runs
:func:`biastransfer.data.cache.decode_images` twice and prints::

    first_decode_seconds: X     (decode + resize + write the memory-mapped cache)
    cached_read_seconds: Y      (second call: key check + memory-map + reading every pixel once)
    cache_speedup: X/Y

Usage: ``python benchmarks/decode_cache.py [--n 10000] [--size 64] [--resolution 32] [--workers N]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from biastransfer.data.cache import decode_images


def make_folder(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` random size×size JPEGs (smooth noise, so they compress like photos rather than pure noise)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    small = max(2, size // 8)
    for i in range(n):
        coarse = rng.integers(0, 256, size=(small, small, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
        path = folder / f"{i:06d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of images")
    parser.add_argument("--size", type=int, default=64, help="side of the generated JPEGs")
    parser.add_argument("--resolution", type=int, default=32, help="decoded side")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default min(8, cpus))")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bt-decode-bench-") as tmp:
        t0 = time.perf_counter()
        paths = make_folder(Path(tmp) / "images", args.n, args.size)
        print(f"generated {args.n} JPEGs of {args.size}x{args.size} in {time.perf_counter() - t0:.2f} s")
        cache_dir = Path(tmp) / "cache"

        t0 = time.perf_counter()
        first = decode_images(paths, cache_dir=cache_dir, resolution=args.resolution, workers=args.workers,
                              progress=False)
        checksum_first = int(first.images.array.sum(dtype=np.uint64))
        first_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        second = decode_images(paths, cache_dir=cache_dir, resolution=args.resolution, workers=args.workers,
                               progress=False)
        checksum_second = int(second.images.array.sum(dtype=np.uint64))
        second_s = time.perf_counter() - t0

        assert second.from_cache and not first.from_cache
        assert checksum_first == checksum_second, "cached pixels differ from the decoded ones"
        print(f"images: {len(second.images)} x {args.resolution}x{args.resolution}x3 uint8")
        print(f"first_decode_seconds: {first_s:.3f}")
        print(f"cached_read_seconds: {second_s:.3f}")
        print(f"cache_speedup: {first_s / second_s:.1f}")


if __name__ == "__main__":
    main()

"""Decoded image cache for file-based datasets.

Images are decoded and resized **once** per (file list, resolution, resize policy, channels) into one uint8
array of shape (N, R, R, C), saved as ``<cache_dir>/<name>-<key>.npy`` and memory-mapped on later loads (see
DESIGN.md, principle 6 "Decode once"). The key is a sha256 of the ordered file list with each file's size and
modification time, so an edited, added or removed file gives a new key (and a fresh decode).

A JSON sidecar ``<name>-<key>.json`` records the key's inputs and the images that were dropped. Both files are
written under temporary names and renamed into place when complete (the ``.npy`` first, the sidecar last); a
cache entry counts only when both exist, so a killed decode never leaves a file that looks complete.

Bad images: a missing file or one PIL cannot decode raises :class:`~biastransfer.data.table.DataError` naming
the path(s), unless ``skip_bad=True``, in which case the image is dropped and recorded (position, path,
reason) in the returned :class:`DecodedImages` and in the sidecar.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from biastransfer.data.table import DataError, ImageStore

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bump when decoding changes (resampling filter, crop arithmetic...) so old caches are not reused."""

RESIZE_POLICIES = ("center_crop", "stretch", "pad")
"""``center_crop``: scale the short side to R and crop the centre square; ``stretch``: resize to R×R ignoring
the aspect ratio; ``pad``: scale the long side to R and pad the rest with black (centred)."""

CHUNK = 64
"""Images per task submitted to the thread pool (one progress-bar step)."""

_MAX_LISTED = 10


@dataclass(frozen=True)
class DecodedImages:
    """What :func:`decode_images` returns; unpacks as ``store, kept, dropped = decode_images(...)``.

    ``kept`` are the positions (into the input path list) of the images in the store, in order; ``dropped``
    the (path, reason) pairs of the bad images skipped with ``skip_bad=True``. ``from_cache`` tells whether
    the store was read from the cache without decoding.
    """

    images: ImageStore
    kept: list[int]
    dropped: list[tuple[str, str]]
    from_cache: bool
    cache_path: Path
    seconds: float

    def __iter__(self) -> Iterator[Any]:
        return iter((self.images, self.kept, self.dropped))


def _validate(resolution: int, resize: str, channels: int) -> None:
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise DataError(f"resolution must be a positive integer, got {resolution!r}")
    if resize not in RESIZE_POLICIES:
        raise DataError(f"unknown resize policy {resize!r}; allowed: {', '.join(RESIZE_POLICIES)}")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")


def cache_key(paths: Sequence[Path], *, resolution: int, resize: str, channels: int) -> tuple[str, list[int]]:
    """The cache key of an ordered file list, and the positions of the files that do not exist.

    The key hashes, in order, each file's absolute path, size and modification time (ns), plus the resolution,
    resize policy, channel count and :data:`CACHE_VERSION`.
    """
    h = hashlib.sha256(
        json.dumps({"v": CACHE_VERSION, "r": resolution, "resize": resize, "c": channels}).encode()
    )
    missing: list[int] = []
    for i, p in enumerate(paths):
        try:
            st = os.stat(p)
            entry = f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n"
        except OSError:
            missing.append(i)
            entry = f"{os.path.abspath(p)}\0missing\n"
        h.update(entry.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:20], missing


def decode_one(path: Path, *, resolution: int, resize: str = "center_crop", channels: int = 3) -> np.ndarray:
    """Decode one image file into a (R, R, C) uint8 array (raises PIL/OS errors unchanged)."""
    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as img:
        if img.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is small (result stays >= R×R).
            img.draft(mode, (resolution, resolution))
        img = img.convert(mode)
        w, h = img.size
        resample = Image.Resampling.BILINEAR
        if resize == "stretch":
            out = img.resize((resolution, resolution), resample)
        elif resize == "center_crop":
            s = min(w, h)
            box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
            out = img.resize((resolution, resolution), resample, box=box)
        else:  # pad
            scale = resolution / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            small = img.resize((nw, nh), resample)
            out = Image.new(mode, (resolution, resolution), 0)
            out.paste(small, ((resolution - nw) // 2, (resolution - nh) // 2))
        arr = np.asarray(out, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing file"
    return f"cannot decode image: {type(exc).__name__}: {exc}"


def _bad_message(bad: list[tuple[str, str]], total: int) -> str:
    lines = [f"  {p}: {r}" for p, r in bad[:_MAX_LISTED]]
    more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    return (f"{len(bad)} of {total} images are missing or corrupt:\n" + "\n".join(lines) + more
            + "\n(pass skip_bad=True / --skip-bad to drop them and record what was dropped)")


def _show_progress(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


def _decode_into(out: np.ndarray, paths: Sequence[Path], todo: list[int], *, resolution: int, resize: str,
                 channels: int, workers: int, progress: bool) -> dict[int, str]:
    """Decode ``paths[i]`` into ``out[i]`` for every i in ``todo``; returns {position: reason} of failures."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    def work(chunk: list[int]) -> dict[int, str]:
        failed: dict[int, str] = {}
        for i in chunk:
            try:
                out[i] = decode_one(paths[i], resolution=resolution, resize=resize, channels=channels)
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
                failed[i] = _reason(exc)
        return failed

    chunks = [todo[s:s + CHUNK] for s in range(0, len(todo), CHUNK)]
    failures: dict[int, str] = {}
    bar = Progress(TextColumn("decoding images"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not _show_progress(progress), transient=True)
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        task = bar.add_task("decode", total=len(todo))
        futures = {pool.submit(work, c): len(c) for c in chunks}
        for fut in as_completed(futures):
            failures.update(fut.result())
            bar.advance(task, futures[fut])
    return failures


def _atomic_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


def _read_hit(npy: Path, meta: Path, n: int,
              skip_bad: bool) -> tuple[ImageStore, list[int], list[tuple[str, str]]]:
    info = json.loads(meta.read_text())
    dropped_entries = info.get("dropped", [])
    dropped = [(d["path"], d["reason"]) for d in dropped_entries]
    if dropped and not skip_bad:
        raise DataError(_bad_message(dropped, n))
    gone = {int(d["position"]) for d in dropped_entries}
    kept = [i for i in range(n) if i not in gone]
    store = ImageStore.open(npy)
    if len(store) != len(kept):
        raise DataError(f"image cache {npy} holds {len(store)} images but its sidecar {meta} lists "
                        f"{len(kept)}; delete both files to rebuild")
    return store, kept, dropped


def decode_images(paths: Sequence[Path], *, cache_dir: Path, resolution: int, resize: str = "center_crop",
                  channels: int = 3, skip_bad: bool = False, workers: int | None = None,
                  progress: bool = True, name: str = "images") -> DecodedImages:
    """Decode and resize ``paths`` once into a memory-mapped uint8 (N, R, R, C) store, or read it from cache.

    Args:
        paths: image files, in the order of the dataset's rows.
        cache_dir: folder of the cache files (created if needed).
        resolution: output side R (square images).
        resize: one of :data:`RESIZE_POLICIES`.
        channels: 3 (RGB) or 1 (grayscale).
        skip_bad: drop missing/corrupt images (recorded in ``dropped``) instead of raising DataError.
        workers: decoding threads (default: ``min(8, cpu count)``).
        progress: show a rich progress bar (only when stderr is a terminal).
        name: file-name prefix of the cache files (e.g. the dataset name); not part of the key.

    Returns:
        A :class:`DecodedImages` (unpacks as ``(store, kept_positions, dropped)``).

    Raises:
        DataError: a bad image without ``skip_bad`` (message names the paths), or no image could be decoded.
    """
    _validate(resolution, resize, channels)
    paths = [Path(p) for p in paths]
    n = len(paths)
    if n == 0:
        raise DataError("no image files to decode (empty file list)")
    t0 = time.perf_counter()
    key, missing = cache_key(paths, resolution=resolution, resize=resize, channels=channels)
    cache_dir = Path(cache_dir)
    npy = cache_dir / f"{name}-{key}.npy"
    meta = cache_dir / f"{name}-{key}.json"

    if npy.exists() and meta.exists():
        try:
            store, kept, dropped = _read_hit(npy, meta, n, skip_bad)
        except (json.JSONDecodeError, KeyError, TypeError):
            logger.warning("unreadable cache sidecar %s; decoding again", meta)
        else:
            secs = time.perf_counter() - t0
            logger.info("read cache %s (%d images, %d dropped) in %.2f s", npy, len(kept), len(dropped), secs)
            return DecodedImages(store, kept, dropped, True, npy, secs)

    if missing and not skip_bad:
        raise DataError(_bad_message([(str(paths[i]), "missing file") for i in missing], n))

    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp = cache_dir / f"{stem}.partial.npy"
    tmp2 = cache_dir / f"{stem}.compact.partial.npy"
    shape = (n, resolution, resolution, channels)
    workers = workers or min(8, os.cpu_count() or 1)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        missing_set = set(missing)
        todo = [i for i in range(n) if i not in missing_set]
        failures = {i: "missing file" for i in missing}
        failures.update(_decode_into(out, paths, todo, resolution=resolution, resize=resize,
                                     channels=channels, workers=workers, progress=progress))
        bad_positions = sorted(failures)
        dropped = [(str(paths[i]), failures[i]) for i in bad_positions]
        if dropped and not skip_bad:
            raise DataError(_bad_message(dropped, n))
        kept = [i for i in range(n) if i not in failures]
        if not kept:
            raise DataError(_bad_message(dropped, n).replace("corrupt:", "corrupt (all of them):"))
        if dropped:  # compact the good rows into a second file
            compact = np.lib.format.open_memmap(tmp2, mode="w+", dtype=np.uint8,
                                                shape=(len(kept), *shape[1:]))
            kept_arr = np.asarray(kept)
            for s in range(0, len(kept), 1024):
                compact[s:s + 1024] = out[kept_arr[s:s + 1024]]
            compact.flush()
            del compact, out
            tmp.unlink()
            tmp2.replace(npy)
        else:
            out.flush()
            del out
            tmp.replace(npy)
        _atomic_json(meta, {
            "version": CACHE_VERSION, "key": key, "count": n, "kept": len(kept), "resolution": resolution,
            "resize": resize, "channels": channels, "first_path": str(paths[0]),
            "dropped": [{"position": i, "path": str(paths[i]), "reason": failures[i]} for i in bad_positions],
        })
    finally:
        for t in (tmp, tmp2):
            if t.exists():
                t.unlink()
    secs = time.perf_counter() - t0
    logger.info("decoded %d images in %.1f s into %s", len(kept), secs, npy)
    if dropped:
        logger.warning("dropped %d bad images (recorded in %s), first: %s (%s)", len(dropped), meta,
                       dropped[0][0], dropped[0][1])
    return DecodedImages(ImageStore.open(npy), kept, dropped, False, npy, secs)

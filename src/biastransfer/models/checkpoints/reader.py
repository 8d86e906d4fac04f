"""Reading checkpoint files safely: ``torch.load(..., weights_only=True)`` or a built-in safetensors reader."""

from __future__ import annotations

import json
import pickle
import re
import struct
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["CheckpointReadError", "read_checkpoint"]


class CheckpointReadError(ValueError):
    """A file could not be read as a checkpoint: corrupt, not a state dict, or refused by ``weights_only``."""


_SAFETENSORS_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}

_REFUSED_RE = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _is_safetensors(path: Path) -> bool:
    """True for a ``.safetensors`` suffix, or a file starting with a u64 header length then ``{``."""
    if path.suffix == ".safetensors":
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) != 9 or head[8:9] != b"{":
        return False
    return 0 < struct.unpack("<Q", head[:8])[0] < 100_000_000


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file: u64 little-endian header length, JSON header, raw little-endian data."""

    def bad(why: str) -> CheckpointReadError:
        return CheckpointReadError(f"could not read checkpoint {path}: {why}")

    data = path.read_bytes()
    if len(data) < 8:
        raise bad("too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise bad("the safetensors header runs past the end of the file")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"bad safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise bad("bad safetensors header (not a JSON object)")
    body = memoryview(data)[8 + n :]
    out: dict[str, Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(o) for o in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise bad(f"unsupported or malformed safetensors entry {name!r}") from None
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= len(body) or end - begin != numel * itemsize:
            raise bad(f"safetensors entry {name!r} has bad data offsets")
        if numel == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype).reshape(shape)
    return out


def read_checkpoint(path: str | Path) -> Any:
    """Read a checkpoint file safely: ``torch.load(path, map_location='cpu', weights_only=True)``.

    ``.safetensors`` files (recognised by suffix or header) are read without pickle. Raises
    :class:`FileNotFoundError` if the file does not exist, and :class:`CheckpointReadError` naming the file
    if it is corrupt or pickles objects that ``weights_only`` refuses (a whole pickled model, an
    ``argparse.Namespace`` saved next to the weights …).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _REFUSED_RE.search(str(exc))
        if refused:
            raise CheckpointReadError(
                f"could not read checkpoint {path}: torch.load(weights_only=True) refused it because it "
                f"pickles the Python object {refused.group(1)}, not only tensors and plain containers. "
                "biastransfer never unpickles arbitrary objects; re-save only the state dict, e.g. "
                "torch.save(model.state_dict(), 'clean.pth')."
            ) from None
        raise CheckpointReadError(
            f"could not read checkpoint {path}: not a readable torch file (corrupt or another format)"
        ) from None
    except Exception as exc:  # corrupt zip, truncated file, random bytes …
        raise CheckpointReadError(
            f"could not read checkpoint {path}: not a readable torch file ({type(exc).__name__}: {exc})"
        ) from None

"""Compiled forward passes for the training engine (``FitConfig.compile``), reused across runs.

One ``torch.compile``d function, ``model(x)``, serves every run of the process: module parameters are graph
inputs (dynamo inlines ``nn.Module`` calls), so a new model of the same architecture and input shape reuses the
compiled code without recompiling, and the inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, default
``/tmp/torchinductor_$USER``) makes a new process's compilation of a known graph a cache lookup.
Shapes are static (``dynamic=False``): the engine sends only full batches through the compiled function (the
training remainder runs eager; evaluation pads its last batch), so one architecture and image size compile one
training graph and one evaluation graph.

Compilation needs a working C++ compiler on CPU; :func:`compile_available` checks once per process and the
engine falls back to eager (with a warning) when it is missing.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

RECOMPILE_LIMIT = 64
"""Distinct graphs (architecture × shape × train/eval × frozen layers) one process may compile before dynamo
falls back to eager; the default of 8 is low for a study that mixes architectures and transfer modes."""


def _call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


class _State:
    def __init__(self) -> None:
        self.fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
        self.available: bool | None = None
        self.reason = ""
        self.first_call_seconds: dict[tuple, float] = {}


_STATE = _State()


def compile_available() -> bool:
    """Whether ``torch.compile`` works here (checked once per process by compiling a tiny function)."""
    if _STATE.available is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probe = torch.compile(lambda t: torch.relu(t) * 2.0 + 1.0, dynamic=False)
                out = probe(torch.arange(-4.0, 4.0))
            _STATE.available = bool(torch.equal(out, torch.relu(torch.arange(-4.0, 4.0)) * 2.0 + 1.0))
            _STATE.reason = "" if _STATE.available else "compiled probe gave wrong numbers"
        except Exception as exc:  # no C++ compiler, unsupported platform ...
            _STATE.available, _STATE.reason = False, f"{type(exc).__name__}: {exc}"
        if not _STATE.available:
            log.warning("torch.compile is unavailable (%s); training runs eager", _STATE.reason)
    return _STATE.available


def compiled_call() -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The process-wide compiled ``model(x)`` (eager ``model(x)`` when compilation is unavailable)."""
    if _STATE.fn is None:
        if not compile_available():
            _STATE.fn = _call
        else:
            import torch._dynamo.config as dynamo_config

            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
            compiled = torch.compile(_call, dynamic=False)

            def timed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
                key = (type(model).__name__, getattr(model, "arch", ""), tuple(x.shape), x.device.type,
                       model.training, torch.is_grad_enabled())
                if key in _STATE.first_call_seconds:
                    return compiled(model, x)
                t0 = time.perf_counter()
                out = compiled(model, x)
                _STATE.first_call_seconds[key] = time.perf_counter() - t0
                log.info("compiled %s in %.1f s", key, _STATE.first_call_seconds[key])
                return out

            _STATE.fn = timed
    return _STATE.fn


def compile_seconds() -> float:
    """Seconds spent in first calls of the compiled function in this process (compilation, or cache loads)."""
    return float(sum(_STATE.first_call_seconds.values()))


def reset() -> None:
    """Forget the compiled function and dynamo's caches (tests and benchmarks measuring cold compilation)."""
    torch._dynamo.reset()
    _STATE.fn = None
    _STATE.first_call_seconds.clear()

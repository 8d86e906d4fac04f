"""The memory layout of a training's images and convolution weights: channels-last or contiguous NCHW, chosen per
host by a fixed rule (never by timing), recorded with each run.

The rule (:func:`layout_rule`), in order:

1. ``BIASTRANSFER_MEMORY_FORMAT=contiguous|channels_last`` in the environment decides (tests, comparisons);
2. on a GPU: channels-last (cuDNN's tensor-core convolutions are NHWC; the layout the engine always used there);
3. on a CPU: channels-last when torch's convolutions run through oneDNN (``torch.backends.mkldnn``) and ATen's
   kernels use an x86 vector instruction set (:data:`CHANNELS_LAST_CAPABILITIES`, from
   ``torch.backends.cpu.get_cpu_capability()``, which ``ATEN_CPU_CAPABILITY`` can lower); otherwise contiguous,
   PyTorch's default layout (without oneDNN the native convolution converts channels-last input back to NCHW, and no
   measurement supports channels-last on the other instruction sets).

Why a rule and not a measured choice cached per machine: a layout changes the float summation order, so two hosts
that pick differently differ in the last digits, and a timing taken on a shared machine is noise-dominated (on one
2-core AMD EPYC under load, ``channels_last_step_speedup`` read 1.17 and 1.42 minutes apart; BENCHMARKS.md): a
measured pick would depend on the load at first use and on a cache file outside the run's inputs, and two workers
could race on it. The capability is a property of the host and of ``ATEN_CPU_CAPABILITY`` alone, readable without
running anything, and every measurement on record favours channels-last where the rule picks it: 1.24–1.55× per
training step on AMD Zen 5, 1.29× on an Intel Xeon with AMX, 1.17–1.42× on AMD Zen 4 (all AVX-512, 1 thread, the
demo's model at 32×32). On every host where the engine ran before this rule (x86 with AVX2 or AVX-512, CUDA) the
layout, and hence every number, is unchanged.

Each run records the layout it used (:func:`memory_format_provenance`).
"""

from __future__ import annotations

import functools
import os

import torch

ENV = "BIASTRANSFER_MEMORY_FORMAT"
MEMORY_FORMATS: dict[str, torch.memory_format] = {"contiguous": torch.contiguous_format,
                                                   "channels_last": torch.channels_last}
CHANNELS_LAST_CAPABILITIES = frozenset({"AVX2", "AVX512"})
"""CPU capabilities (``torch.backends.cpu.get_cpu_capability()``) on which, with oneDNN, the engine trains
channels-last."""


def layout_rule(device_type: str, capability: str, onednn: bool) -> tuple[str, str]:
    """The layout rule without the environment override: (layout name, why)."""
    if device_type != "cpu":
        return "channels_last", f"rule: {device_type} device"
    if onednn and capability.upper() in CHANNELS_LAST_CAPABILITIES:
        return "channels_last", f"rule: CPU capability {capability} with oneDNN"
    return "contiguous", f"rule: CPU capability {capability}" + ("" if onednn else " without oneDNN")


@functools.cache
def _host_rule(device_type: str) -> tuple[str, str]:  # the host's capability does not change within a process
    return layout_rule(device_type, torch.backends.cpu.get_cpu_capability(), torch.backends.mkldnn.is_available())


def choose(device: torch.device | str | None = None) -> tuple[str, str]:
    """(layout name, why) for ``device`` (None: the CPU) on this host; ``BIASTRANSFER_MEMORY_FORMAT`` wins."""
    override = os.environ.get(ENV, "").strip()
    if override:
        if override.lower() not in MEMORY_FORMATS:
            raise ValueError(f"{ENV}={override!r}: must be one of {', '.join(MEMORY_FORMATS)} (or unset: chosen per "
                             f"host)")
        return override.lower(), f"{ENV}"
    return _host_rule(torch.device("cpu" if device is None else device).type)


def memory_format_name(device: torch.device | str | None = None) -> str:
    """``contiguous`` or ``channels_last``: the layout the engine trains and evaluates in on ``device``."""
    return choose(device)[0]


def memory_format(device: torch.device | str | None = None) -> torch.memory_format:
    """The torch memory format of :func:`memory_format_name`."""
    return MEMORY_FORMATS[memory_format_name(device)]


def memory_format_provenance(device: torch.device | str | None = None) -> dict[str, str]:
    """What a run records about its layout: ``memory_format`` and what chose it (the rule, or the environment)."""
    name, why = choose(device)
    return {"memory_format": name, "memory_format_by": why}

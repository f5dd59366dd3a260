"""Which device computes, and whether this CPU does bf16 arithmetic natively."""

from __future__ import annotations

import torch

from planetloc.errors import PlanetlocError


def pick_device(name: str) -> str:
    """``auto`` (CUDA when present, else CPU) or the named device, refused if absent."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise PlanetlocError(
            f"device {name!r} is not a device name (auto, cpu, cuda, cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PlanetlocError(f"device {name!r} requested but CUDA is not available")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise PlanetlocError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise PlanetlocError(f"device {name!r} is not supported (auto, cpu, cuda, cuda:N)")
    return name


def cpu_has_native_bf16() -> bool:
    """Whether the CPU has bf16 instructions (AMX or AVX512-BF16).

    Elsewhere PyTorch emulates bf16 on the CPU, more slowly than float32, so bf16 autocast
    on a CPU is worth it only where this is true.
    """
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)

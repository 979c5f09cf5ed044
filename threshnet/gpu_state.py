"""A GPU's SM clock, temperature and power draw while it is timed (NVML, via PyTorch).

A GPU's time for the same network moves with its clock boost and thermal state, so a
latency timed on a GPU records them beside it, before and after. PyTorch reads them
through NVML (``torch.cuda.clock_rate`` and friends need the ``nvidia-ml-py`` package);
where that is missing, or on a CPU, there is nothing to record.
"""

from __future__ import annotations

import contextlib

import torch


def gpu_state(device: torch.device, when: str) -> dict[str, float]:
    """``latency_gpu_{clock_mhz,temperature_c,power_w}_{when}`` of ``device``; empty on a
    CPU or without NVML."""
    if device.type != "cuda":
        return {}
    with contextlib.suppress(ModuleNotFoundError, ImportError, RuntimeError, OSError):
        return {
            f"latency_gpu_clock_mhz_{when}": float(torch.cuda.clock_rate(device)),
            f"latency_gpu_temperature_c_{when}": float(torch.cuda.temperature(device)),
            f"latency_gpu_power_w_{when}": torch.cuda.power_draw(device) / 1000.0,
        }
    return {}

"""A cross-process reader/writer gate per device, so latency is timed on an idle device.

Trials sharing a GPU (``--gpus-per-trial 0.5``) train concurrently. Each trial holds the
device's gate *shared* while it computes (a few dozen steps at a time, ending with the
device synchronised) and *exclusive* while it times latency, so a latency is never
measured while another trial computes on that device. Writers take precedence: a
waiting latency measurement blocks new shared holders (a turnstile lock), so it cannot
be starved by a stream of training steps.

The locks are ``fcntl.flock`` files in a node-local directory, keyed by the device's
identity (the GPU's UUID, which is stable under Ray's CUDA_VISIBLE_DEVICES remapping).
The kernel drops them when a process dies, so a killed trial never leaves the gate shut.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch


def device_key(device: torch.device) -> str:
    """A node-wide identity of ``device``: the GPU's UUID, or 'cpu'."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        uuid = getattr(properties, "uuid", None)
        return f"cuda-{uuid}" if uuid is not None else f"cuda-{properties.pci_bus_id}"
    return device.type


def default_lock_dir() -> Path:
    """Node-local directory for gate files (never a shared filesystem)."""
    return Path(tempfile.gettempdir()) / f"threshnet-search-gates-{os.getuid()}"


class DeviceGate:
    """Shared (compute) / exclusive (measure) access to one device across processes."""

    def __init__(self, key: str, lock_dir: Path | None = None):
        directory = lock_dir or default_lock_dir()
        directory.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
        self._turnstile = os.open(directory / f"{safe}.turnstile", os.O_RDWR | os.O_CREAT, 0o600)
        self._resource = os.open(directory / f"{safe}.lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Hold while computing; many holders at once."""
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)  # wait behind a queued measurement
        fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        fcntl.flock(self._resource, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._resource, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold while timing; waits until no one computes, and keeps newcomers out."""
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._resource, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._resource, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._turnstile)
        os.close(self._resource)

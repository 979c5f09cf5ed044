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
The kernel also lists them (``/proc/locks`` on Linux): ``gate_users`` says which processes
hold or wait for a gate on this node, and which program each runs under, so a run can say
what its timing waits for (another study training on the same device, say).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
        self.waited_s = 0.0  # how long the last exclusive() waited to get in

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
        """Hold while timing; waits until no one computes, and keeps newcomers out
        (``waited_s`` then says how long that took)."""
        asked = time.monotonic()
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._resource, fcntl.LOCK_EX)
            self.waited_s = time.monotonic() - asked
            try:
                yield
            finally:
                fcntl.flock(self._resource, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._turnstile)
        os.close(self._resource)


RAY_PROCESS = re.compile(r"^ray::|/ray/core/src/ray/|/ray/_private/workers/")


@dataclass(frozen=True)
class GateUser:
    """A process holding or waiting for a device's gate on this node."""

    key: str  # the device's (device_key), as its file names it
    pid: int
    waiting: bool  # blocked, not yet in
    # holds the device exclusively, or waits for it so: times a latency (a process queued
    # at the turnstile may be either: it counts as computing)
    timing: bool
    command: str  # its command line
    program: tuple[int, str]  # the first process up its ancestry that is not Ray's
    ancestors: tuple[int, ...]  # its parent, grandparent, ... up to init

    def under(self, pid: int) -> bool:
        """Whether it is ``pid`` or runs under it (a local Ray's worker is under its driver)."""
        return self.pid == pid or pid in self.ancestors

    def describe(self) -> str:
        """'pid 23008 (ray::train, under pid 22860: python -m search.fidelity ...)'."""
        owner, owner_command = self.program
        under = "" if owner == self.pid else f", under pid {owner}: {_short(owner_command)}"
        return f"pid {self.pid} ({_short(self.command)}{under})"


def gate_users(lock_dir: Path | None = None) -> list[GateUser]:
    """The processes holding or waiting for a device gate in ``lock_dir`` (this node's by
    default), from the kernel's lock table; empty where there is none (not Linux)."""
    directory = lock_dir or default_lock_dir()
    files: dict[tuple[int, int], tuple[str, bool]] = {}  # (device, inode) -> key, turnstile
    for path in (*directory.glob("*.lock"), *directory.glob("*.turnstile")):
        with contextlib.suppress(OSError):
            stat = path.stat()
            files[(stat.st_dev, stat.st_ino)] = (path.stem, path.suffix == ".turnstile")
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    users: dict[int, GateUser] = {}
    for line in table.splitlines():
        fields = line.split()
        waiting = len(fields) > 1 and fields[1] == "->"
        if waiting:
            del fields[1]
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        found = files.get(_file_id(fields[5]))
        # pid 0: an owner in another PID namespace, or gone; the pid is the process that
        # took the lock (a child that inherited it after that one ended is not named)
        if found is None or not fields[4].isdigit() or int(fields[4]) == 0:
            continue
        key, turnstile = found
        if turnstile and not waiting:  # a timing holds both; a computing one only passes
            continue
        pid = int(fields[4])
        if pid in users and not users[pid].waiting:
            continue
        ancestors = _ancestors(pid)
        command = _command(pid)
        owner = (pid, command)
        if RAY_PROCESS.search(command):  # a Ray worker: the program it runs under
            owner = next(
                ((p, c) for p in ancestors if not RAY_PROCESS.search(c := _command(p))), owner
            )
        users[pid] = GateUser(
            key,
            pid,
            waiting,
            fields[3] == "WRITE" and not turnstile,
            command,
            owner,
            tuple(ancestors),
        )
    return list(users.values())


def _file_id(text: str) -> tuple[int, int]:
    """/proc/locks' 'MAJ:MIN:INODE' (major and minor in hex) as (st_dev, st_ino)."""
    try:
        major, minor, inode = text.split(":")
        return os.makedev(int(major, 16), int(minor, 16)), int(inode)
    except ValueError:
        return -1, -1


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    words = raw.rstrip(b"\0").decode(errors="replace").split("\0")
    if words and "/" in words[0] and "python" in os.path.basename(words[0]):
        words[0] = os.path.basename(words[0])  # 'python -m search.run', not the venv's path
    return " ".join(words).strip() or "?"


def _ancestors(pid: int) -> list[int]:
    chain: list[int] = []
    while pid > 1 and len(chain) < 64:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state
        except (OSError, IndexError, ValueError):
            break
        chain.append(pid)
    return chain


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

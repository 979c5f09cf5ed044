"""Whether the machine was oversubscribed while something was timed.

A latency taken while more threads want the CPUs than there are, or while the hypervisor
gives this VM's time to others, measures the machine as much as the network. Over a window
(``LoadWindow``) this reads, from Linux's own counters:

- CPU pressure (``/proc/pressure/cpu``, "some"): the share of the window in which at least
  one runnable task waited for a CPU. It covers the window itself, where the load average
  trails by a minute (a neighbour that just stopped still counts);
- steal (``/proc/stat``): the share of the CPUs' time in the window taken by other VMs;
- the 1-minute load average against the usable CPUs: the signal where pressure is not
  available (kernels without PSI, other systems), and shown beside it.

``oversubscribed`` is pressure above ``PRESSURE_LIMIT`` (the load average above the CPUs
without PSI) or steal above ``STEAL_LIMIT``; ``measure_when_calm`` times something again,
a bounded number of times, while its window was oversubscribed (``wait_until_calm``
waits for a calm moment between attempts).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

PRESSURE_FILE = Path("/proc/pressure/cpu")
STAT_FILE = Path("/proc/stat")
# The share of a window with a task waiting for a CPU above which it counts as
# oversubscribed: measured on a 2-core VM, 0 % idle, 1 % with one busy process, 50 % with
# one runnable thread more than cores, 100 % beyond (BENCHMARKS.md, "Latency stability").
PRESSURE_LIMIT = 0.10
STEAL_LIMIT = 0.05  # the share of CPU time taken by other VMs
MEASURE_ATTEMPTS = 3  # a measurement in an oversubscribed window is taken again up to twice
RETRY_WAIT_SECONDS = 2.0  # at most, for a calm moment before the second attempt; doubled
CALM_WAIT_SECONDS = 30.0  # at most, before a whole pass of timings is taken again

Result = TypeVar("Result")


def usable_cpus() -> int:
    """CPUs this process may run on."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class LoadReading:
    """The machine's load over one window."""

    load_average: float  # 1 minute, at the window's end
    cpus: int  # usable by this process
    pressure: float | None  # share of the window a task waited for a CPU (None: no PSI)
    steal: float | None  # share of the CPUs' time stolen (None: not Linux)
    seconds: float  # the window's length

    @property
    def oversubscribed(self) -> bool:
        if self.pressure is not None:
            waited = self.pressure > PRESSURE_LIMIT
        else:
            waited = self.load_average > self.cpus
        return waited or (self.steal or 0.0) > STEAL_LIMIT

    def describe(self) -> str:
        """E.g. "load 7.2 on 2 CPUs, CPU pressure 45 %, steal 0 %"."""
        parts = [f"load {self.load_average:.1f} on {self.cpus} CPUs"]
        if self.pressure is not None:
            parts.append(f"CPU pressure {self.pressure:.0%}")
        if self.steal is not None:
            parts.append(f"steal {self.steal:.0%}")
        return ", ".join(parts)

    def record(self) -> dict[str, float | int]:
        """The fields a trial's record keeps (NaN-free: missing signals are left out)."""
        fields: dict[str, float | int] = {
            "latency_load": self.load_average,
            "latency_oversubscribed": int(self.oversubscribed),
        }
        if self.pressure is not None:
            fields["latency_cpu_pressure"] = self.pressure
        if self.steal is not None:
            fields["latency_steal"] = self.steal
        return fields


def _pressure_total_us() -> int | None:
    """Microseconds in which some task waited for a CPU, since boot (None: no PSI)."""
    try:
        text = PRESSURE_FILE.read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            for item in line.split():
                if item.startswith("total="):
                    return int(item.removeprefix("total="))
    return None


def _cpu_jiffies() -> tuple[int, int] | None:
    """(steal, total) CPU time since boot in clock ticks, all CPUs (None: no /proc/stat)."""
    try:
        first = STAT_FILE.read_text(encoding="ascii").split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal guest guest_nice; guests are in user
    values = [int(value) for value in first[1:9]]
    steal = values[7] if len(values) > 7 else 0
    return steal, sum(values)


class LoadWindow:
    """Counters at its start; ``reading()`` gives the load since then."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._pressure = _pressure_total_us()
        self._jiffies = _cpu_jiffies()

    def reading(self) -> LoadReading:
        seconds = max(time.monotonic() - self._started, 1e-6)
        pressure_now = _pressure_total_us()
        pressure = None
        if self._pressure is not None and pressure_now is not None:
            pressure = min(1.0, (pressure_now - self._pressure) / 1e6 / seconds)
        jiffies_now = _cpu_jiffies()
        steal = None
        if self._jiffies is not None and jiffies_now is not None:
            total = jiffies_now[1] - self._jiffies[1]
            steal = (jiffies_now[0] - self._jiffies[0]) / total if total > 0 else 0.0
        return LoadReading(
            load_average=os.getloadavg()[0],
            cpus=usable_cpus(),
            pressure=pressure,
            steal=steal,
            seconds=seconds,
        )


def attempts_on(device_type: str) -> int:
    """How many times a timing on ``device_type`` is taken at most: the load read here is
    the CPUs', so only a CPU's timing is taken again while they are oversubscribed."""
    return MEASURE_ATTEMPTS if device_type == "cpu" else 1


def measure_when_calm(
    measure: Callable[[], Result],
    *,
    attempts: int = MEASURE_ATTEMPTS,
    wait_seconds: float = RETRY_WAIT_SECONDS,
) -> tuple[Result, LoadReading, int]:
    """Run ``measure``; while its window was oversubscribed, wait and run it again (at
    most ``attempts`` runs in all: ``attempts_on`` the device). Returns the last result,
    its window's reading and the number of runs."""
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    attempt = 1
    while True:
        window = LoadWindow()
        result = measure()
        reading = window.reading()
        if not reading.oversubscribed or attempt >= attempts:
            return result, reading, attempt
        wait_until_calm(wait_seconds * 2 ** (attempt - 1))
        attempt += 1


def wait_until_calm(max_seconds: float, poll_seconds: float = 1.0) -> LoadReading:
    """Wait, at most about ``max_seconds``, for a window of ``poll_seconds`` in which the
    machine was not oversubscribed; that window's reading (or the last one)."""
    deadline = time.monotonic() + max_seconds
    while True:
        window = LoadWindow()
        time.sleep(poll_seconds)
        reading = window.reading()
        if not reading.oversubscribed or time.monotonic() >= deadline:
            return reading

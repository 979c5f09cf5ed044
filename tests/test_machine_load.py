"""The load monitor: what it reads from Linux's counters, and when it takes a timing again."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from threshnet.machine_load import (
    MEASURE_ATTEMPTS,
    PRESSURE_FILE,
    PRESSURE_LIMIT,
    STEAL_LIMIT,
    LoadReading,
    LoadWindow,
    attempts_on,
    measure_when_calm,
    usable_cpus,
)


def _reading(**changes: object) -> LoadReading:
    values = {"load_average": 0.5, "cpus": 2, "pressure": 0.0, "steal": 0.0, "seconds": 1.0}
    return LoadReading(**{**values, **changes})  # type: ignore[arg-type]


def test_oversubscribed_means_waiting_for_a_cpu_or_stolen_time() -> None:
    assert not _reading().oversubscribed
    assert _reading(pressure=PRESSURE_LIMIT * 2).oversubscribed
    assert _reading(steal=STEAL_LIMIT * 2).oversubscribed
    # the load average alone decides only where there is no pressure counter
    assert not _reading(load_average=7.0).oversubscribed
    assert _reading(load_average=7.0, pressure=None).oversubscribed
    assert not _reading(load_average=1.5, pressure=None, steal=None).oversubscribed
    line = _reading(load_average=7.2, pressure=0.45).describe()
    assert line == "load 7.2 on 2 CPUs, CPU pressure 45%, steal 0%"
    assert _reading(pressure=None, steal=None).record() == {
        "latency_load": 0.5,
        "latency_oversubscribed": 0,
    }


@pytest.fixture
def more_busy_processes_than_cpus() -> Iterator[None]:
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(usable_cpus() + 1)
    ]
    time.sleep(0.5)
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


@pytest.mark.skipif(not PRESSURE_FILE.exists(), reason="this kernel has no CPU pressure counter")
def test_a_timing_taken_while_oversubscribed_is_taken_again_a_bounded_number_of_times(
    more_busy_processes_than_cpus: None,
) -> None:
    runs = []

    def measure() -> int:
        runs.append(time.monotonic())
        time.sleep(0.5)
        return len(runs)

    result, reading, attempts = measure_when_calm(measure, attempts=3, wait_seconds=0.2)
    assert reading.oversubscribed and reading.pressure is not None
    assert reading.pressure > PRESSURE_LIMIT
    assert attempts == 3 and result == 3 and len(runs) == 3


def test_only_a_cpu_timing_is_taken_again_for_the_cpus_load() -> None:
    # one rule for a trial's timing and the study's reference time
    assert attempts_on("cpu") == MEASURE_ATTEMPTS > 1
    assert attempts_on("cuda") == 1 and attempts_on("mps") == 1


def test_a_window_reads_shares_between_zero_and_one() -> None:
    window = LoadWindow()
    time.sleep(0.2)
    reading = window.reading()
    assert reading.cpus == usable_cpus() and reading.seconds >= 0.2
    for share in (reading.pressure, reading.steal):
        assert share is None or 0.0 <= share <= 1.0
    result, _, attempts = measure_when_calm(lambda: "done", attempts=1)
    assert result == "done" and attempts == 1
    with pytest.raises(ValueError, match="attempts"):
        measure_when_calm(lambda: None, attempts=0)

"""The device gate: latency waits for computing processes, and newcomers wait for it."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from search.worker.gate import DeviceGate


def _hold_shared(lock_dir: str, seconds: float, started, log) -> None:
    gate = DeviceGate("test-device", Path(lock_dir))
    with gate.shared():
        started.set()
        log.put(("a-start", time.monotonic()))
        time.sleep(seconds)
        log.put(("a-end", time.monotonic()))


def _late_shared(lock_dir: str, log) -> None:
    gate = DeviceGate("test-device", Path(lock_dir))
    with gate.shared():
        log.put(("b-start", time.monotonic()))


@pytest.mark.timeout(90)  # a broken gate deadlocks: fail instead of hanging
def test_exclusive_waits_for_compute_and_blocks_newcomers(tmp_path: Path) -> None:
    context = mp.get_context("spawn")
    started, log = context.Event(), context.Queue()
    holder = context.Process(target=_hold_shared, args=(str(tmp_path), 1.5, started, log))
    holder.start()
    assert started.wait(30)
    gate = DeviceGate("test-device", tmp_path)
    late = None
    with gate.exclusive():  # blocks until the holder's shared section ends
        measured_at = time.monotonic()
        late = context.Process(target=_late_shared, args=(str(tmp_path), log))
        late.start()
        time.sleep(1.0)  # the newcomer must not get in while we measure
        released_at = time.monotonic()
    holder.join(30)
    late.join(30)
    assert holder.exitcode == 0 and late.exitcode == 0
    events = dict(log.get(timeout=5) for _ in range(3))
    assert events["a-end"] <= measured_at
    assert events["b-start"] >= released_at
    gate.close()


@pytest.mark.timeout(30)
def test_shared_holders_run_together(tmp_path: Path) -> None:
    first, second = DeviceGate("d", tmp_path), DeviceGate("d", tmp_path)
    with first.shared(), second.shared():
        pass  # would deadlock if shared were exclusive
    first.close()
    second.close()

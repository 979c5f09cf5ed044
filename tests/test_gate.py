"""The device gate: latency waits for computing processes, and newcomers wait for it."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from search.tasks import gate_waits
from search.tasks.gate_waits import sharing_note, waiting_line
from search.worker.gate import DeviceGate, GateUser, gate_users


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
    assert gate.waited_s > 0.5  # the holder held on for 1.5 s after it had started
    gate.close()


@pytest.mark.timeout(30)
def test_shared_holders_run_together(tmp_path: Path) -> None:
    first, second = DeviceGate("d", tmp_path), DeviceGate("d", tmp_path)
    with first.shared(), second.shared():
        pass  # would deadlock if shared were exclusive
    first.close()
    second.close()


def _orphan_holding(lock: Path, seconds: int) -> int:
    """The pid of a process, not under this one (its parent shell exits), that holds
    ``lock`` shared for ``seconds``, as another program's training holds a gate."""
    shell = subprocess.run(
        ["sh", "-c", f"flock -s -o {lock} sleep {seconds} >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(shell.stdout.split()[0])


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel's lock table is Linux's")
@pytest.mark.timeout(60)
def test_a_timing_waiting_for_another_programs_training_is_said_with_who(
    tmp_path: Path,
) -> None:
    gate = DeviceGate("cpu", tmp_path)  # this run's timing
    holder = _orphan_holding(tmp_path / "cpu.lock", 30)
    try:
        _wait_until(lambda: any(user.pid == holder for user in gate_users(tmp_path)))
        (other,) = gate_users(tmp_path)
        assert (other.key, other.waiting, other.timing) == ("cpu", False, False)
        assert not other.under(os.getpid())
        assert "sleep 30" in other.command or "flock" in other.command
        assert sharing_note([other], os.getpid()).startswith(f" | device shared: pid {holder} (")

        waiter = threading.Thread(target=lambda: gate.exclusive().__enter__())
        waiter.daemon = True
        waiter.start()
        _wait_until(lambda: any(user.waiting for user in gate_users(tmp_path)))
        users = gate_users(tmp_path)
        (mine,) = [user for user in users if user.waiting]
        assert mine.pid == os.getpid() and mine.timing and mine.under(os.getpid())
        line = waiting_line("timing the reference network", 75.0, users, os.getpid())
        assert line is not None
        assert line.startswith("timing the reference network: 1 min 15 s so far, waiting for the")
        assert f"pid {holder} (" in line and "computes on cpu" in line
        # nothing of ours waits: nothing to say, though the other program still computes
        assert waiting_line("x", 75.0, [other], os.getpid()) is None
        time.sleep(0.3)
    finally:
        os.kill(holder, signal.SIGKILL)
    _wait_until(lambda: not waiter.is_alive())  # the kernel dropped the dead holder's lock
    assert gate.waited_s >= 0.3
    gate.close()


def test_this_runs_own_trials_on_the_gate_are_not_another_program(tmp_path: Path) -> None:
    mine = GateUser("cpu", 42, False, False, "ray::train", (7, "python -m search.run"), (7, 1))
    assert mine.under(7) and not mine.under(8)
    assert sharing_note([mine], 7) == ""
    assert sharing_note([mine], 8) == (
        " | device shared: pid 42 (ray::train, under pid 7: python -m search.run) computes on "
        "cpu (timings wait for it)"
    )


@pytest.mark.long  # a local Ray's start, 15 s; every e2e study runs this wait (unsaid)
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel's lock table is Linux's")
@pytest.mark.timeout(120)
def test_the_driver_says_whom_a_local_ray_tasks_timing_waits_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    monkeypatch.setattr(gate_waits, "FIRST_NOTE_S", 0.5)
    holder = _orphan_holding(tmp_path / "cpu.lock", 60)
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        # the worker is waiting now, but may have begun to just before this poll (its
        # start is late on a busy machine): let it wait a while before the holder ends
        time.sleep(0.5)
        os.kill(holder, signal.SIGKILL)  # the other program ends: the timing goes on

    def time_alone(lock_dir: str) -> float:  # defined here: pickled by value for the worker
        from search.worker.gate import DeviceGate

        gate = DeviceGate("cpu", Path(lock_dir))
        with gate.exclusive():
            pass
        gate.close()
        return gate.waited_s

    monkeypatch.setattr(gate_waits, "gate_users", lambda: gate_users(tmp_path))
    # Ray's workers run at nice 15: beside other work at full load (a training, a test
    # running alongside) the task's worker would take a minute to import torch and reach
    # the gate only after the holder's 60 s; the driver's priority keeps it on time
    monkeypatch.setenv("RAY_worker_niceness", "0")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(time_alone)
        waited = gate_waits.get_saying_gate_waits(
            task.remote(str(tmp_path)), what="timing the reference", say=say, local=True
        )
    finally:
        ray.shutdown()
    assert len(said) == 1, said
    assert said[0].startswith("timing the reference: ") and "waiting for the device" in said[0]
    assert f"pid {holder} (flock -s -o " in said[0]
    assert waited >= 0.5

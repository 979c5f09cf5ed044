"""SIGTERM as clusters send it: a stop like Ctrl-C, exit status 143, and a watch that acts
at once even while the main thread is held in a library's C code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from threshnet.cli import EXIT_TERMINATED


def _start(code: str, prelude: str = "") -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", prelude + "\n" + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


# How the command was started: in a shell, or in the background with SIGINT ignored, as
# `nohup CMD &` (and any `&` of a non-interactive shell) leaves it: Ctrl-C's signal then
# does nothing, and SIGTERM must stop the command all the same.
STARTS = {
    "shell": "",
    "nohup-background": "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)",
}


@pytest.mark.parametrize("start", list(STARTS))
def test_sigterm_stops_a_command_like_ctrl_c_with_exit_status_143(start: str) -> None:
    process = _start(
        """
        import time
        from threshnet.cli import run_cli, stop_on_sigterm

        def main(argv):
            print("ready", flush=True)
            time.sleep(60)
            return 0

        stop_on_sigterm()
        raise SystemExit(run_cli("prog", main, None))
        """,
        STARTS[start],
    )
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == EXIT_TERMINATED
    assert time.monotonic() - signalled < 5
    assert stderr.strip().splitlines() == ["prog: stopped by SIGTERM (finished work is kept)"]


def test_an_error_after_a_sigterm_is_the_stop_not_a_crash() -> None:
    """A cluster's SIGTERM reaches the workers too: what the main thread was waiting on
    then fails (a Ray task's worker died), which is the stop's fallout, exit status 143."""
    process = _start(
        """
        import time
        from threshnet.cli import run_cli, stop_on_sigterm

        def main(argv):
            print("ready", flush=True)
            try:
                time.sleep(60)
            except KeyboardInterrupt:
                raise RuntimeError("the task's worker died") from None
            return 0

        stop_on_sigterm()
        raise SystemExit(run_cli("prog", main, None))
        """
    )
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == EXIT_TERMINATED
    assert stderr.strip().splitlines() == ["prog: stopped by SIGTERM (finished work is kept)"]


def test_the_sigterm_watch_runs_while_the_main_thread_is_held_in_c_code() -> None:
    # The main thread waits on a lock no one releases and holds SIGTERM off, so the signal
    # reaches the process through another thread and Python's handler never runs: as when
    # the main thread waits in a library's C code. Only the watch can end the process.
    process = _start(
        """
        import os, signal, threading
        from threshnet.cli import stop_on_sigterm

        def watch():
            print("watch ran", flush=True)
            os._exit(143)

        stop_on_sigterm(watch)
        lock = threading.Lock()
        lock.acquire()
        print("ready", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        lock.acquire()
        """
    )
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == EXIT_TERMINATED
    assert stdout.strip() == "watch ran"


def test_rays_failure_signal_handler_is_off_before_ray_is_imported() -> None:
    # Ray's C++ handler took SIGTERM from ours and aborted a stopped command (exit -6)
    probe = (
        "import search.run, ray._private.ray_constants as constants; "
        "print(constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER)"
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"

"""Ray as a cluster: start or join it, reach its head, size each task, stop on SIGTERM.

A SIGTERM stops a command as Ctrl-C does: Ray Tune ends the trials in flight, they are
recorded as interrupted and queued again, and the command exits 143. A SIGTERM to the
whole process group (Kubernetes, SLURM's ``scancel``, systemd, ``docker stop``) also ends
the Ray head that ``ray.init`` started in the driver's group, and a driver that waits for
it would wait a minute. So the driver watches its head after a SIGTERM: once the head is
gone, or ``SIGTERM_DEADLINE_SECONDS`` after the signal, it kills what is left of the Ray
processes it started and exits 143; the trials it could not record stay running in the
Optuna storage and the next run queues them again (search.driver.bookkeeping).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator

import psutil

from search.setup.settings import VERBOSE, RunResources
from threshnet import cli
from threshnet.cli import UserError

CONNECT_TIMEOUT_SECONDS = 10.0
# Ray Tune's own stop gives running trials 5 s (a constant of Tune's) before it kills them,
# and the whole stop takes 7-9 s on 2 busy cores; Kubernetes grants 30 s, the issue 10 s.
SIGTERM_DEADLINE_SECONDS = 9.0


_local_head: list[psutil.Process] = []  # the processes of a Ray this process started


def _all_alive(processes: list[psutil.Process]) -> bool:
    try:
        return all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)
    except psutil.Error:  # gone between the two questions
        return False


def _wait_for_one_to_end(processes: list[psutil.Process], timeout: float) -> None:
    """Return as soon as one of ``processes`` ends, or after ``timeout`` seconds. Woken by
    the kernel (a pidfd per process) rather than by polling: when a SIGTERM went to the
    whole group, Ray's core worker in this process exits it (status 1, nothing said) soon
    after the raylet dies, so the watch must see the death first."""
    deadline = time.monotonic() + timeout
    descriptors: list[int] = []
    try:
        try:
            for process in processes:
                descriptors.append(os.pidfd_open(process.pid))
        except ProcessLookupError:  # one has ended already
            return
        except (AttributeError, OSError):  # no pidfds here (not Linux >= 5.3): poll instead
            while time.monotonic() < deadline and _all_alive(processes):
                time.sleep(0.02)
            return
        poller = select.poll()
        for descriptor in descriptors:
            poller.register(descriptor, select.POLLIN)
        poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def stop_on_sigterm(prog: str) -> None:
    """SIGTERM stops the command as Ctrl-C does and exits 143 (threshnet.cli). If one of
    the Ray processes this process started ends with the signal (it went to the whole
    process group: Ray can no longer stop its work), or the command is still there
    ``SIGTERM_DEADLINE_SECONDS`` later, the Ray processes it started are killed and it
    exits 143 at once."""

    def watch() -> None:
        started_head = bool(_local_head)
        ray_processes = list(_local_head) or psutil.Process().children()  # in ray.init: its own
        _wait_for_one_to_end(ray_processes, SIGTERM_DEADLINE_SECONDS)
        if _all_alive(ray_processes):
            why = "Ray did not stop in time, so the run ends now"
        elif started_head and not _local_head:
            # ray_session's own shutdown ended the head: the stop went as planned and what
            # it records is written; this exit only spares the rest of Ray's teardown.
            why = "Ray is shut down"
        else:  # a Ray process this command started died first: the whole group was signalled
            why = "Ray was signalled too, so the run ends now"
        print(
            f"{prog}: stopped by SIGTERM; {why}: finished trials are kept, and the trials "
            "that were running are queued again: rerun the same command to resume",
            file=sys.stderr,
            flush=True,
        )
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.send_signal(signal.SIGKILL)
        os._exit(cli.EXIT_TERMINATED)

    cli.stop_on_sigterm(watch)


def _init(resources: RunResources, level: int, verbose: bool) -> None:
    import ray

    if resources.address:
        try:
            ray.init(address=resources.address, logging_level=level, log_to_driver=verbose)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(
                f"cannot join the Ray cluster at {resources.address}: {error}"
            ) from None
        return
    # Ray turns token authentication on for a new local cluster and warns about that
    # default on every start; the setting is kept, the warning silenced (a logger name
    # of Ray's, not an API: ray is pinned below 2.61).
    if not verbose:
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
    ray.init(
        # a new local Ray even where a cluster started with `ray start` runs on this
        # machine (Ray would join that one, and refuse num_cpus for it); --address joins one
        address="local",
        num_cpus=resources.num_cpus or os.cpu_count(),
        include_dashboard=False,
        logging_level=level,
        log_to_driver=verbose,
    )


@contextlib.contextmanager
def ray_session(resources: RunResources, prog: str) -> Iterator[None]:
    """Ray for one command: join ``resources.address``, or start a local Ray; shut down
    on the way out, however the command ends. SIGTERM stops it (``stop_on_sigterm``).

    Workers' own output stays in Ray's session logs (a trial's result, or the reason it
    failed, reaches the driver as its record): a worker stopped mid-trial prints
    tracebacks that would otherwise reach the user's terminal as if the run had failed.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    verbose = resources.verbosity >= VERBOSE
    level = logging.INFO if verbose else logging.WARNING
    stop_on_sigterm(prog)
    try:
        try:
            _init(resources, level, verbose)
        except SystemExit as stop:  # ray.init's own SIGTERM handler ran: sys.exit(15)
            if stop.code != signal.SIGTERM:
                raise
            stop_on_sigterm(prog)
            signal.raise_signal(signal.SIGTERM)  # ours now: a stop, with exit status 143
        if not resources.address:
            _local_head[:] = psutil.Process().children()  # GCS, raylet, Ray's monitors
        stop_on_sigterm(prog)  # again: ray.init installs a handler of its own
        yield
    finally:
        _local_head.clear()  # first: the head shutting down is no sign of a SIGTERM's kill
        ray.shutdown()


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """UserError (one line) when nothing answers at a ``host:port`` Ray address.

    Ray itself retries an unreachable head node for minutes; a plain TCP connection says
    within seconds. Other forms ("auto", "ray://...") are left to Ray.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({reason}); check the address and "
            "that `ray start --head` runs there"
        ) from None


def trial_resources(resources: RunResources) -> tuple[float, float]:
    """(CPUs, GPUs) per trial, checked against what the Ray cluster has."""
    import ray

    cluster = ray.cluster_resources()
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    gpus_per_trial = resources.gpus_per_trial
    if gpus_per_trial is None:
        gpus_per_trial = 1.0 if gpus >= 1 else 0.0
    if gpus_per_trial > gpus:
        raise UserError(
            f"--gpus-per-trial {gpus_per_trial:g} needs a GPU, but the Ray cluster has {gpus:g}"
        )
    if resources.cpus_per_trial > cpus:
        raise UserError(
            f"--cpus-per-trial {resources.cpus_per_trial:g} exceeds the cluster's {cpus:g} CPUs"
        )
    return resources.cpus_per_trial, gpus_per_trial

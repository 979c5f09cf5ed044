"""Ray as a cluster: start or join it, reach its head, size each task, stop on SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import socket

from search.setup.settings import VERBOSE, RunResources
from threshnet.cli import UserError

CONNECT_TIMEOUT_SECONDS = 10.0


def stop_on_sigterm() -> None:
    """Make SIGTERM (what ``timeout``, ``kill`` and batch schedulers send) stop the run the
    way Ctrl-C does: Ray Tune's SIGINT handler ends the trials in flight, which are then
    recorded as interrupted and queued again; outside Tune it is a KeyboardInterrupt."""
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.raise_signal(signal.SIGINT))


def start_ray(resources: RunResources) -> bool:
    """Connect to or start Ray; True when this process started it.

    Workers' own output stays in Ray's session logs (a trial's result, or the reason it
    failed, reaches the driver as its record): a worker stopped mid-trial prints
    tracebacks that would otherwise reach the user's terminal as if the run had failed.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    verbose = resources.verbosity >= VERBOSE
    if resources.address:
        try:
            ray.init(
                address=resources.address,
                logging_level=logging.INFO if verbose else logging.WARNING,
                log_to_driver=verbose,
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(
                f"cannot join the Ray cluster at {resources.address}: {error}"
            ) from None
        return False
    # Ray turns token authentication on for a new local cluster and warns about that
    # default on every start; the setting is kept, the warning silenced (a logger name
    # of Ray's, not an API: ray is pinned below 2.61).
    if not verbose:
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR
        )
    ray.init(
        num_cpus=resources.num_cpus or os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.INFO if verbose else logging.WARNING,
        log_to_driver=verbose,
    )
    return True


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

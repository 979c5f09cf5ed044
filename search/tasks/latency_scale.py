"""Fix a study's latency scale when a run starts: one Ray task shaped like a trial.

Before any trial runs (so the device is idle), a task with a trial's resources learns its
device kind (threshnet.latency_scale.device_kind) and, when the study has no reference
time for that kind yet, times the reference network by the study's protocol (taking this
machine's calm time instead when the one now is not calm or runs well slower:
threshnet.latency_scale.study_reference). A
resumed study, and every node of a kind already timed, reuses the stored time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.tasks.gate_waits import get_saying_gate_waits
from search.worker.context import TrialContext
from search.worker.latency import latency_device, measure_study_reference, worker_device_kind
from search.worker.trial import trial_device, trial_threads
from threshnet.latency_scale import calm_reference, remember_calm_reference, study_reference
from threshnet.training.data import default_cache_dir

START_SOURCE = "the idle device when the study started"


def _reference_time_on_worker(
    context: TrialContext, known: frozenset[str]
) -> tuple[str, dict[str, Any] | None]:
    """(this worker's device kind, its reference time, or None when ``known``)."""
    device = latency_device(context, trial_device())
    threads = trial_threads(context)
    kind = worker_device_kind(context, device, threads)
    if kind in known:
        return kind, None
    measured = measure_study_reference(context, device, threads, START_SOURCE)
    cache = Path(context.cache_dir) if context.cache_dir else default_cache_dir()
    calm = calm_reference(cache, kind)
    remember_calm_reference(cache, kind, measured)
    return kind, study_reference(measured, calm)


def time_reference_on_cluster(
    context: TrialContext,
    gpus_per_trial: float,
    known: frozenset[str],
    *,
    say: Callable[[str], None],
    local: bool,
) -> tuple[str, dict[str, Any] | None]:
    """Run the task on the cluster (Ray already initialised; ``local``: started by this
    process, so that ``say`` can tell what the timing waits for on this node)."""
    import ray

    task = ray.remote(num_cpus=context.cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(
        _reference_time_on_worker
    )
    return get_saying_gate_waits(
        task.remote(context, known),
        what="latency scale: timing the reference network",
        say=say,
        local=local,
    )

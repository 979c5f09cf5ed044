"""The final latency pass when a study reaches its trial count (studies.remeasure).

It runs as one Ray task with a whole device of the kind the trials used (a whole GPU
when they had a share of one), after every trial has ended, so the device is idle; the
task gets the loaded study and returns the table, which the driver writes into the
study directory (a worker on another node cannot see that directory).
"""

from __future__ import annotations

from pathlib import Path

from studies.load import Study, load_study
from studies.remeasure import (
    Remeasured,
    default_device,
    describe,
    remeasure,
    write_remeasured,
)


def _remeasure_on_worker(study: Study, threads: int | None) -> Remeasured:
    return remeasure(study, device=default_device(study), threads=threads)


def final_latency_pass(root: Path, cpus_per_trial: float, gpus_per_trial: float) -> str:
    """Re-time the study's front candidates and presets; a line saying what was done."""
    import ray

    study = load_study(root)
    task = ray.remote(
        num_cpus=cpus_per_trial, num_gpus=1 if gpus_per_trial > 0 else 0, max_retries=0
    )(_remeasure_on_worker)
    threads = max(1, int(cpus_per_trial))
    result = ray.get(task.remote(study, threads))
    path = write_remeasured(root, result)
    return f"final latency pass: {describe(result.table)} (front candidates and presets): {path}"

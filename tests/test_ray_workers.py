"""The local Ray a command starts runs its trials at the driver's priority."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import search_env

pytestmark = pytest.mark.slow

PROBE = """
import os, ray
from search.setup.settings import RunResources
from search.tasks.cluster import ray_session
with ray_session(RunResources(trials=1, num_cpus=1), "probe"):
    niceness = ray.get(ray.remote(num_cpus=1)(lambda: os.nice(0)).remote())
print(os.nice(0), niceness)
"""


def test_trial_workers_run_at_the_drivers_priority_not_rays_nice_15() -> None:
    # Ray's default (nice 15) gave a trial 3.6 % of a CPU beside two busy processes
    env = {k: v for k, v in search_env().items() if k != "RAY_worker_niceness"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    driver, worker = done.stdout.split()
    assert worker == driver

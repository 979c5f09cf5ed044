"""Running a study. The commands sit at the top (``search.run``, ``search.fidelity``,
``search.console``); below them, rooms whose imports run one way, downwards:

- ``search.driver``: the driver loop (Ray Tune, Optuna, storage, records, progress, resume);
- ``search.tasks``: Ray as a cluster and one-off Ray tasks (retraining, baselines);
- ``search.worker``: what runs on a Ray worker (one trial, its warm data, the device gate);
- ``search.setup``: a study before Ray starts (settings, directory, journal, data, checks);
- ``search.methods``: pure rules (samplers, the MO-ASHA decision, cost constraints).
"""

import os

# Ray's core worker installs a C++ failure-signal handler that also takes SIGTERM, below
# Python, at times after ray.init has returned: a stopped command then aborted (exit -6)
# instead of stopping (threshnet.cli.stop_on_sigterm; seen in 2 of the last 3 CI runs).
# Ray's documented switch turns it off for this process and the Ray processes it starts;
# it is read when ray is imported, so it is set before any module here imports ray.
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")

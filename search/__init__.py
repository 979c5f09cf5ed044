"""Running a study. The commands sit at the top (``search.run``, ``search.fidelity``,
``search.console``); below them, rooms whose imports run one way, downwards:

- ``search.driver``: the driver loop (Ray Tune, Optuna, storage, records, progress, resume);
- ``search.tasks``: Ray as a cluster and one-off Ray tasks (retraining, baselines);
- ``search.worker``: what runs on a Ray worker (one trial, its warm data, the device gate);
- ``search.setup``: a study before Ray starts (settings, directory, journal, data, checks);
- ``search.methods``: pure rules (samplers, the MO-ASHA decision, cost constraints).
"""

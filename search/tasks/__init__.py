"""Ray as a cluster and one-off Ray tasks: starting or joining Ray, retraining chosen configs
(the fidelity check), measuring the baselines. Imports ``search.worker`` and below."""

"""The driver loop: Ray Tune with our Optuna searcher and schedulers, the storage as the
source of truth, trials.csv, progress, resume and the final latency pass. Imports every
room below it (``search.tasks``, ``search.worker``, ``search.setup``, ``search.methods``)."""

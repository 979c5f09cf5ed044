"""Running a study: CLI, trial function, Ray Tune + Optuna wiring, resources, resume."""

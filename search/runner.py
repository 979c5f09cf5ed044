"""Run (or resume) a study: Optuna storage as the source of truth, Ray Tune as the executor.

A run opens the study directory under its lock, marks trials left RUNNING by a killed
run as interrupted and queues them again, counts finished trials (completed, failed or
infeasible), and asks Ray Tune for exactly the trials still missing up to ``--trials``.
The published presets are queued first (once per study), so every study measures them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from search.faults import FAULTS_VARIABLE
from search.optuna_bridge import RecordingOptunaSearch, make_sampler, suggest
from search.records import INTERRUPTED, TrialsTable
from search.settings import OBJECTIVES, RunResources, StudySettings
from search.study import StudyDirectory
from search.trial import TrialContext, evaluate_trial, split_training_data
from space import config_to_params, param_names
from threshnet.cli import UserError
from threshnet.data import CacheEntry, DataError, load_split, locate_cache
from threshnet.presets import PUBLISHED_PRESETS, get_preset

logger = logging.getLogger("search")


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    root: Path
    finished: int
    completed: int
    failed: int
    infeasible: int
    requeued: int
    started_trials: int
    seconds: float
    target: int
    storage: str  # what optuna-dashboard opens

    @property
    def stopped_early(self) -> bool:
        return self.finished < self.target

    def lines(self) -> list[str]:
        return [
            f"study {self.root}: {self.finished} finished trials "
            f"({self.completed} completed, {self.failed} failed, {self.infeasible} infeasible); "
            f"{self.started_trials} run now, {self.requeued} re-queued after an interruption; "
            f"{self.seconds:.0f} s",
            f"results: {self.root / 'trials.csv'}; Optuna storage: optuna-dashboard {self.storage}",
        ] + (
            [
                f"stopped before {self.target} finished trials; unfinished trials are queued "
                "again: rerun the same command to resume"
            ]
            if self.stopped_early
            else []
        )


def _versions() -> dict[str, str]:
    names = ("threshnet-search", "torch", "torchvision", "optuna", "ray", "numpy")
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _git_revision() -> str:
    source = Path(__file__).resolve().parent
    try:
        revision = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return revision + (" (with uncommitted changes)" if dirty else "")


def _driver_devices() -> list[str]:
    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [f"cpu ({os.cpu_count()} cores)"]


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that ran to an end (completed, failed or infeasible), not interrupted ones."""
    done = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=done)
        if trial.user_attrs.get("status") != INTERRUPTED
    ]


def requeue_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a stopped run as interrupted and queue their parameters."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for frozen in running:
        trial = optuna.Trial(study, frozen._trial_id)
        trial.set_user_attr("status", INTERRUPTED)
        trial.set_user_attr("error", "interrupted before it finished; queued to run again")
        study.tell(frozen.number, state=TrialState.FAIL)
        study.enqueue_trial(frozen.params, user_attrs={"requeued_from": frozen.number})
    return len(running)


def presets_to_queue(study: optuna.Study, settings: StudySettings) -> list[dict[str, Any]]:
    """Parameter dicts of the published presets not yet in the study (in any state)."""
    if not settings.enqueue_presets:
        return []
    known = []
    for trial in study.get_trials(deepcopy=False):
        known.append(trial.params)
        known.append(trial.system_attrs.get("fixed_params"))
    points = []
    for name in PUBLISHED_PRESETS:
        preset = dataclasses.replace(get_preset(name), num_classes=settings.space.num_classes)
        try:
            params = config_to_params(preset, settings.space)
        except ValueError as error:
            logger.warning("preset %s is not queued: %s", name, error)
            continue
        if params not in known:
            points.append(params)
    return points


def sampler_seed(seed: int, run_index: int) -> int:
    """The sampler's seed for the ``run_index``-th run (1-based) of a study.

    The first run uses ``seed``; each resumed run gets its own, so a resumed run does not
    replay the first run's random suggestions (which would duplicate trials).
    """
    return seed + (run_index - 1) * 1_000_003


def _trainable(config: dict[str, Any], context: TrialContext) -> None:
    from ray import tune

    result = evaluate_trial(config, context)
    for objective in OBJECTIVES:  # Tune requires the metrics in every result
        result.setdefault(objective, math.nan)
    tune.report(result)


def _start_ray(resources: RunResources) -> bool:
    """Connect to or start Ray; True when this process started it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env_vars = (
        {FAULTS_VARIABLE: os.environ[FAULTS_VARIABLE]} if FAULTS_VARIABLE in os.environ else {}
    )
    runtime_env = {"env_vars": env_vars} if env_vars else None
    if resources.address:
        try:
            ray.init(
                address=resources.address, runtime_env=runtime_env, logging_level=logging.WARNING
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(
                f"cannot join the Ray cluster at {resources.address}: {error}"
            ) from None
        return False
    ray.init(
        num_cpus=resources.num_cpus or os.cpu_count(),
        include_dashboard=False,
        runtime_env=runtime_env,
        logging_level=logging.WARNING,
    )
    return True


def _check_resources(resources: RunResources) -> tuple[float, float]:
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


def prepare_data(settings: StudySettings, cache_dir: str | None) -> tuple[CacheEntry, int]:
    """Decode and cache the training images once, check the split; (cache entry, classes)."""
    try:
        entry = locate_cache("train", data_dir=settings.data_dir, cache_dir=cache_dir)
        data = load_split("train", data_dir=settings.data_dir, cache_dir=cache_dir, entry=entry)
        train_set, val_set = split_training_data(data, settings)
    except DataError as error:
        raise UserError(str(error)) from None
    logger.info(
        "data: %d proxy-training and %d validation images, %d classes (test split unused)",
        len(train_set),
        len(val_set),
        len(data.classes),
    )
    return entry, len(data.classes)


def run_study(
    directory: StudyDirectory,
    settings: StudySettings,
    resources: RunResources,
    manifest: dict[str, Any],
    train_cache: CacheEntry,
) -> RunSummary:
    """Run the study in ``directory`` until it has ``resources.trials`` finished trials."""
    started = time.perf_counter()
    storage_url = manifest.get("storage")
    study = directory.load_study(storage_url)
    requeued = requeue_interrupted(study)
    table = TrialsTable(directory.trials_path, tuple(param_names(settings.space)))
    table.write(study)  # replaces a table a crash may have left behind
    remaining = resources.trials - len(finished_trials(study))
    if remaining <= 0:
        return _summary(directory, study, requeued, 0, started, resources.trials, storage_url)

    started_ray = _start_ray(resources)
    try:
        cpus_per_trial, gpus_per_trial = _check_resources(resources)
        run_record = {
            "started": dt.datetime.now(dt.UTC).isoformat(),
            "resources": {**resources.to_dict(), "gpus_per_trial": gpus_per_trial},
            "trials_before": len(finished_trials(study)),
            "requeued": requeued,
            "sampler_seed": sampler_seed(settings.seed, len(manifest["runs"]) + 1),
            "status": "running",
        }
        manifest["runs"].append(run_record)
        directory.write_manifest(manifest)
        _fit(
            directory,
            storage_url,
            settings,
            resources,
            study,
            table,
            train_cache,
            cpus_per_trial,
            gpus_per_trial,
            remaining,
            len(manifest["runs"]),
        )
        run_record["status"] = "finished"
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    study = directory.load_study(storage_url)
    requeued += requeue_interrupted(study)  # trials still RUNNING when the run stopped
    table.write(study)
    run_record["finished"] = dt.datetime.now(dt.UTC).isoformat()
    run_record["trials_after"] = len(finished_trials(study))
    directory.write_manifest(manifest)
    run_started = dt.datetime.fromisoformat(run_record["started"])
    started_now = sum(
        1
        for trial in study.get_trials(deepcopy=False)
        if trial.datetime_start is not None
        and trial.datetime_start.astimezone(dt.UTC) >= run_started
    )
    return _summary(directory, study, requeued, started_now, started, resources.trials, storage_url)


def _fit(
    directory: StudyDirectory,
    storage_url: str | None,
    settings: StudySettings,
    resources: RunResources,
    study: optuna.Study,
    table: TrialsTable,
    train_cache: CacheEntry,
    cpus_per_trial: float,
    gpus_per_trial: float,
    remaining: int,
    run_index: int,
) -> None:
    from ray import tune

    searcher = RecordingOptunaSearch(
        table=table,
        failure_hint=str(directory.ray_dir),
        space=functools.partial(suggest, space=settings.space),
        metric=list(OBJECTIVES),
        mode=["max", "min"],
        points_to_evaluate=presets_to_queue(study, settings) or None,
        sampler=make_sampler(settings.sampler, sampler_seed(settings.seed, run_index)),
        study_name=directory.name,
        storage=directory.storage(storage_url),
    )
    context = TrialContext(
        settings=settings,
        cache_dir=resources.cache_dir,
        train_cache=train_cache,
        cpus_per_trial=cpus_per_trial,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, context=context),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=remaining,
            max_concurrent_trials=resources.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=f"run-{run_index:03d}",
            storage_path=str(directory.ray_dir.resolve()),
            failure_config=tune.FailureConfig(max_failures=0),
            verbose=0,  # one line per finished trial comes from the searcher instead
        ),
    )
    for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        # Their advice (Tuner.restore) does not apply: this study resumes by rerunning
        # the same command, which the summary says.
        logging.getLogger(name).setLevel(logging.ERROR)
    tuner.fit()


def _summary(
    directory: StudyDirectory,
    study: optuna.Study,
    requeued: int,
    started_trials: int,
    started: float,
    target: int,
    storage_url: str | None,
) -> RunSummary:
    finished = finished_trials(study)
    states = [trial.state for trial in finished]
    return RunSummary(
        root=directory.root,
        finished=len(finished),
        completed=states.count(TrialState.COMPLETE),
        failed=states.count(TrialState.FAIL),
        infeasible=states.count(TrialState.PRUNED),
        requeued=requeued,
        started_trials=started_trials,
        seconds=time.perf_counter() - started,
        target=target,
        storage=storage_url or str(directory.journal_path),
    )


def new_manifest(name: str, settings: StudySettings, storage: str | None) -> dict[str, Any]:
    """The manifest of a new study (``storage``: None for the journal file, or a URL)."""
    return {
        "name": name,
        "storage": storage,
        "created": dt.datetime.now(dt.UTC).isoformat(),
        "settings": settings.to_dict(),
        "seed": settings.seed,
        "versions": _versions(),
        "git_revision": _git_revision(),
        "driver_host": platform.node(),
        "driver_devices": _driver_devices(),
        "note": "val_acc is proxy validation accuracy on a split of the training set; "
        "the test set is never read during a search",
        "runs": [],
    }

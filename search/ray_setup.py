"""Ray set-up: start or join Ray, size each trial, and run trials with Ray Tune."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
from dataclasses import dataclass
from typing import Any

import optuna
from ray.tune.schedulers import TrialScheduler

from search.bookkeeping import sampler_seed
from search.mo_asha import RungSchedule
from search.optuna_bridge import RecordingOptunaSearch
from search.progress import VERBOSE, Progress
from search.records import TrialsTable
from search.rung_scheduler import MultiObjectiveASHA
from search.samplers import make_sampler
from search.settings import OBJECTIVES, RunResources, StudySettings
from search.trial import TrialContext, evaluate_trial
from studies.schema import trial_record
from threshnet.cli import UserError
from threshnet.training.data import CacheEntry

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


def _report(result: dict[str, Any]) -> None:
    from ray import tune

    for objective in OBJECTIVES:  # Tune requires the metrics in every result
        result.setdefault(objective, math.nan)
    tune.report(result)


def _trainable(config: dict[str, Any], context: TrialContext) -> None:
    _report(evaluate_trial(config, context, report_rung=_report))


def _scheduler(settings: StudySettings, run: TuneRun) -> TrialScheduler | None:
    """mo-asha's scheduler, holding the rung results of the study's earlier trials."""
    if settings.scheduler != "mo-asha":
        return None
    study = optuna.load_study(study_name=run.study_name, storage=run.storage)
    earlier = [
        (trial.number, trial_record(trial))
        for trial in study.get_trials(deepcopy=False)
        if trial.state.is_finished()
    ]
    schedule = RungSchedule(settings.rungs, settings.reduction_factor)
    return MultiObjectiveASHA(schedule, earlier)


@dataclass(frozen=True)
class TuneRun:
    """One Ray Tune run of a study's missing trials."""

    study_name: str
    storage: optuna.storages.BaseStorage
    table: TrialsTable
    experiment_dir: str  # Ray Tune's storage path; also where a failed worker's logs are
    run_index: int  # 1-based, over the study's runs
    trials: int
    cpus_per_trial: float
    gpus_per_trial: float


def run_trials(
    run: TuneRun, settings: StudySettings, resources: RunResources, train_cache: CacheEntry
) -> Exception | None:
    """Ask Ray Tune for ``run.trials`` feasible trials, suggested and recorded through
    Optuna (infeasible suggestions are recorded by the searcher and not counted).

    Returns what stopped the run early, if anything: an OSError when the study could not
    be written (a full disk; trials in flight end unrecorded and the next run queues them
    again), or a UserError when the cost caps leave almost nothing of the space.
    """
    from ray import tune

    class StopWhenRecordingFails(tune.Stopper):
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False

        def stop_all(self) -> bool:
            return searcher.abort is not None

    progress = Progress(
        target=run.trials, full_epochs=settings.train.epochs, verbosity=resources.verbosity
    )
    searcher = RecordingOptunaSearch(
        progress=progress,
        table=run.table,
        failure_hint=run.experiment_dir,
        space=settings.space,
        caps=settings.caps,
        input_size=settings.train.input_size,
        target=run.trials,
        metric=list(OBJECTIVES),
        mode=["max", "min"],
        sampler=make_sampler(settings.sampler, sampler_seed(settings.seed, run.run_index)),
        study_name=run.study_name,
        storage=run.storage,
    )
    context = TrialContext(
        settings=settings,
        cache_dir=resources.cache_dir,
        train_cache=train_cache,
        cpus_per_trial=run.cpus_per_trial,
    )
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, context=context),
        {"cpu": run.cpus_per_trial, "gpu": run.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=_scheduler(settings, run),
            num_samples=-1,  # the searcher ends the run after run.trials finished trials
            max_concurrent_trials=resources.max_concurrent,
            reuse_actors=True,  # warm workers: see search.trial
        ),
        run_config=tune.RunConfig(
            name=f"run-{run.run_index:03d}",
            storage_path=run.experiment_dir,
            failure_config=tune.FailureConfig(max_failures=0),
            stop=StopWhenRecordingFails(),
            verbose=1 if resources.verbosity >= VERBOSE else 0,  # else search.progress
        ),
    )
    # Ray Tune's newer console output prints its experiment banner (with a TensorBoard
    # hint) even at verbose=0; its classic output (documented switch) prints nothing
    # there: progress comes from the searcher's one line per trial instead.
    if resources.verbosity < VERBOSE:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
        # Their advice (Tuner.restore) does not apply: this study resumes by rerunning
        # the same command, which the summary says.
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        tuner.fit()
    finally:
        progress.close()
    return searcher.abort

"""Run a study's trials with Ray Tune: the searcher, the scheduler, the trainable."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from ray.tune.schedulers import TrialScheduler

from search.driver.bookkeeping import sampler_seed
from search.driver.latency_scale import ScaleBook
from search.driver.optuna_bridge import RecordingOptunaSearch
from search.driver.progress import Progress
from search.driver.records import TrialsTable
from search.driver.rung_scheduler import MultiObjectiveASHA
from search.methods.mo_asha import RungSchedule
from search.methods.samplers import GP_SHARE, make_sampler
from search.setup.settings import OBJECTIVES, VERBOSE, RunResources, StudySettings
from search.worker.context import TrialContext
from search.worker.simulated import SimulatedContext, simulated_trainable
from search.worker.trial import evaluate_trial
from studies.schema import trial_record
from threshnet.training.data import CacheEntry


def _report(result: dict[str, Any]) -> None:
    from ray import tune

    for objective in OBJECTIVES:  # Tune requires the metrics in every result
        result.setdefault(objective, math.nan)
    tune.report(result)


def _trainable(config: dict[str, Any], context: TrialContext) -> None:
    _report(evaluate_trial(config, context, report_rung=_report))


def _with_context(
    settings: StudySettings, resources: RunResources, run: TuneRun, train_cache: CacheEntry | None
) -> Any:
    """The trainable with what its trials need: a real trial, or a simulated one."""
    from ray import tune

    if settings.simulation is not None:
        return tune.with_parameters(simulated_trainable, context=simulated_context(settings))
    real = TrialContext(
        settings=settings,
        cache_dir=resources.cache_dir,
        train_cache=train_cache,
        cpus_per_trial=run.cpus_per_trial,
        latency_scale=run.latency_scale,
    )
    return tune.with_parameters(_trainable, context=real)


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
    latency_scale: dict[str, float] | None = None  # the study's (search.driver.latency_scale)
    scale_book: ScaleBook | None = None


def make_searcher(
    run: TuneRun,
    settings: StudySettings,
    progress: Progress | None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    gp_share: float = GP_SHARE,
) -> RecordingOptunaSearch:
    """The run's searcher: suggests through the study's sampler, records every ended trial
    (also driven without Ray by bench/driver_scale.py, with its simulated ``clock`` and a
    ``gp_share`` of its choosing: see search.methods.samplers.make_sampler)."""
    return RecordingOptunaSearch(
        progress=progress,
        table=run.table,
        failure_hint=run.experiment_dir,
        space=settings.space,
        caps=settings.caps,
        input_size=settings.train.input_size,
        target=run.trials,
        metric=list(OBJECTIVES),
        mode=["max", "min"],
        sampler=make_sampler(
            settings.sampler,
            sampler_seed(settings.seed, run.run_index),
            gp_trials=settings.gp_trials,
            gp_share=gp_share,
            clock=clock,
        ),
        study_name=run.study_name,
        storage=run.storage,
        scale_book=run.scale_book,
    )


def simulated_context(settings: StudySettings) -> SimulatedContext:
    """What a simulated study's trials need (``settings.simulation`` set)."""
    assert settings.simulation is not None
    return SimulatedContext(
        simulation=settings.simulation,
        space=settings.space,
        input_size=settings.train.input_size,
        seed=settings.seed,
        epochs=settings.train.epochs,
        rungs=settings.rungs if settings.scheduler == "mo-asha" else (),
        objectives=OBJECTIVES,
    )


def run_trials(
    run: TuneRun,
    settings: StudySettings,
    resources: RunResources,
    train_cache: CacheEntry | None,
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

    study = optuna.load_study(study_name=run.study_name, storage=run.storage)
    progress = Progress(
        target=run.trials,
        full_epochs=settings.train.epochs,
        verbosity=resources.verbosity,
        earlier=study.get_trials(deepcopy=False),
        local=resources.address is None,
    )
    searcher = make_searcher(run, settings, progress, gp_share=resources.gp_share)
    trainable = tune.with_resources(
        _with_context(settings, resources, run, train_cache),
        {"cpu": run.cpus_per_trial, "gpu": run.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=_scheduler(settings, run),
            num_samples=-1,  # the searcher ends the run after run.trials finished trials
            max_concurrent_trials=resources.max_concurrent,
            reuse_actors=True,  # warm workers: see search.worker.trial
        ),
        run_config=tune.RunConfig(
            name=f"run-{run.run_index:03d}",
            storage_path=run.experiment_dir,
            failure_config=tune.FailureConfig(max_failures=0),
            stop=StopWhenRecordingFails(),
            verbose=1 if resources.verbosity >= VERBOSE else 0,  # else search.driver.progress
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

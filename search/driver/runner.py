"""Run (or resume) a study: Optuna storage as the source of truth, Ray Tune as the executor.

A run opens the study directory under its lock, marks trials left RUNNING by a killed
run as interrupted and queues them again, counts finished trials (completed or failed;
infeasible configs cost no training and do not count), and asks Ray Tune for exactly the
trials still missing up to ``--trials``.
The published presets are queued first (once per study), so every study measures them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from search.driver.bookkeeping import (
    FINISHED,
    STOPPED,
    finished_trials,
    queue_presets,
    requeue_interrupted,
    sampler_seed,
    trials_by_status,
)
from search.driver.final_pass import final_latency_pass
from search.driver.latency_scale import ScaleBook, fix_latency_scale, scale_times
from search.driver.records import TrialsTable
from search.driver.restore import restore_finished
from search.driver.tuner import TuneRun, run_trials
from search.setup.settings import QUIET, RunResources, StudySettings
from search.setup.study import StudyDirectory
from search.tasks.baselines_run import measure_baselines, missing_baselines
from search.tasks.cluster import ray_session, trial_resources
from search.worker.context import TrialContext
from space import param_names
from studies.schema import REMEASURED_FILE
from threshnet.cli import UserError
from threshnet.training.data import CacheEntry


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    root: Path
    finished: int
    completed: int
    failed: int
    stopped: int  # by mo-asha at a rung
    infeasible: int
    requeued: int
    started_trials: int
    seconds: float
    target: int
    storage: str  # what optuna-dashboard opens
    final_pass: str | None = None  # what the final latency pass did, if it ran
    baselines: str | None = None  # what --baselines measured, if anything

    @property
    def stopped_early(self) -> bool:
        return self.finished < self.target

    def lines(self) -> list[str]:
        return [
            f"study {self.root}: {self.finished} finished trials "
            f"({self.completed} completed, {self.failed} failed"
            + (f", {self.stopped} stopped early by mo-asha" if self.stopped else "")
            + f"; {self.infeasible} infeasible configs skipped without training); "
            f"{self.started_trials} run now, {self.requeued} re-queued after an interruption; "
            f"{self.seconds:.0f} s",
            f"results: {self.root / 'trials.csv'}; Optuna storage: optuna-dashboard {self.storage}",
            *([self.baselines] if self.baselines else []),
            *([self.final_pass] if self.final_pass else []),
        ] + (
            [
                f"stopped before {self.target} finished trials; unfinished trials are queued "
                "again: rerun the same command to resume"
            ]
            if self.stopped_early
            else []
        )


def run_study(
    directory: StudyDirectory,
    settings: StudySettings,
    resources: RunResources,
    manifest: dict[str, Any],
    train_cache: CacheEntry | None,
) -> RunSummary:
    """Run the study in ``directory`` until it has ``resources.trials`` finished trials."""
    started = time.perf_counter()
    storage_url = manifest.get("storage")
    study_name = manifest["study_name"]
    baselines_todo = missing_baselines(directory.root, resources.baselines)
    with contextlib.ExitStack() as ray_running, ThreadPoolExecutor(1) as opener:
        # Opening a large study takes seconds (the journal's replay, restore, the table):
        # Ray starts meanwhile when the study's table says it has trials to run (ray.init
        # stays on this thread). A table behind its journal (after a crash) can start Ray
        # for a study that turns out complete: a few seconds lost, nothing else. Ctrl-C or
        # SIGTERM meanwhile waits for the opening to end (or, for SIGTERM, the stop's
        # deadline: each journal operation is whole, as after kill -9).
        opening = opener.submit(_open, directory, settings, storage_url, study_name)
        ray_started = baselines_todo or _table_rows(directory.trials_path) < resources.trials
        if ray_started:
            ray_running.enter_context(ray_session(resources, "search.run"))
        storage, study, requeued, table = opening.result()
        finished_before = len(finished_trials(study))
        remaining = resources.trials - finished_before
        if remaining <= 0 and not baselines_todo:
            return _summary(directory, study, requeued, 0, started, resources.trials, storage_url)
        if remaining > 0 and settings.enqueue_presets:
            queue_presets(study, settings.space)
        if remaining > 0:
            # New trials make an earlier final latency pass partial: drop it (this run's
            # end, or studies.remeasure, makes a new one).
            (directory.root / REMEASURED_FILE).unlink(missing_ok=True)
        for earlier in manifest["runs"]:  # we hold the run lock: no other run is going on
            if earlier.get("status") == "running":
                earlier["status"] = "ended abruptly (killed, or its machine failed)"
        if not ray_started:  # the table was behind the journal
            ray_running.enter_context(ray_session(resources, "search.run"))
        cpus_per_trial, gpus_per_trial = trial_resources(resources)
        run_index = len(manifest["runs"]) + 1
        run_record = {
            "started": dt.datetime.now(dt.UTC).isoformat(),
            "resources": {**resources.to_dict(), "gpus_per_trial": gpus_per_trial},
            "trials_before": finished_before,
            "requeued": requeued,
            "sampler_seed": sampler_seed(settings.seed, run_index),
            "status": "running",
        }
        manifest["runs"].append(run_record)
        directory.write_manifest(manifest)
        context = TrialContext(settings, resources.cache_dir, train_cache, cpus_per_trial)
        if remaining > 0 and settings.simulation is None:  # a surrogate's latencies: no scale
            _say(_fix_scale(directory, manifest, context, gpus_per_trial, resources), resources)
        latency_scale = scale_times(manifest)
        context = dataclasses.replace(context, latency_scale=latency_scale)
        run = TuneRun(
            study_name=study_name,
            storage=storage,
            table=table,
            experiment_dir=str(directory.ray_dir.resolve()),
            run_index=run_index,
            trials=remaining,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            latency_scale=latency_scale,
            scale_book=ScaleBook(directory, manifest),
        )
        abort = run_trials(run, settings, resources, train_cache) if remaining > 0 else None
        if isinstance(abort, OSError):  # nothing more can be written; the next run tidies up
            if abort.errno in (errno.ENOSPC, errno.EDQUOT):
                raise abort  # the CLI says "no space left" in one line
            raise UserError(
                f"cannot write the study ({abort.strerror}: {abort.filename}); fix that, "
                "then rerun the same command to resume (finished trials are kept)"
            ) from None
        study = directory.load_study(storage, study_name)
        requeued += requeue_interrupted(study, storage)  # still RUNNING when the run stopped
        table.write(study)
        run_record["finished"] = dt.datetime.now(dt.UTC).isoformat()
        run_record["trials_after"] = len(finished_trials(study))
        reached = run_record["trials_after"] >= resources.trials
        run_record["status"] = "finished" if reached else "stopped"
        directory.write_manifest(manifest)  # the run's record is complete before the pass
        if abort is not None:
            raise abort
        baselines = None
        if baselines_todo and reached:  # after the trials: latency on an idle device
            baselines = measure_baselines(
                directory.root, baselines_todo, context, gpus_per_trial, resources.max_concurrent
            )
        final_pass = None
        if reached and resources.final_pass and remaining > 0:
            final_pass = (
                "final latency pass: skipped (a simulated study: its latencies come from "
                "the surrogate, not from networks to re-time)"
                if settings.simulation is not None
                else _final_pass(directory.root, cpus_per_trial, gpus_per_trial)
            )
    run_started = dt.datetime.fromisoformat(run_record["started"])
    started_now = sum(
        1
        for trial in study.get_trials(deepcopy=False)
        if trial.datetime_start is not None
        and trial.datetime_start.astimezone(dt.UTC) >= run_started
    )
    summary = _summary(
        directory, study, requeued, started_now, started, resources.trials, storage_url
    )
    return dataclasses.replace(summary, final_pass=final_pass, baselines=baselines)


def _open(
    directory: StudyDirectory, settings: StudySettings, storage_url: str | None, study_name: str
) -> tuple[optuna.storages.BaseStorage, optuna.Study, int, TrialsTable]:
    """The study's storage and study, caught up with its table (finished trials the
    journal lost are told again, interrupted ones queued again), and the table rewritten;
    with the number of trials queued again."""
    storage = directory.storage(storage_url)
    study = directory.load_study(storage, study_name)
    restored = restore_finished(
        study,
        storage,
        directory.trials_path,
        space=settings.space,
        caps=settings.caps,
        input_size=settings.train.input_size,
    )
    if restored:
        print(
            f"search.run: restored {restored} finished trials from trials.csv whose results "
            "the Optuna journal had lost; they are not trained again",
            file=sys.stderr,
        )
    requeued = requeue_interrupted(study, storage)
    table = TrialsTable(directory.trials_path, tuple(param_names(settings.space)))
    table.write(study)  # replaces a table a crash may have left behind
    return storage, study, requeued, table


def _table_rows(path: Path) -> int:
    """About how many trials the study's table holds (its lines less the header; 0 when
    there is none): whether a run will have trials to run, before the journal is read."""
    try:
        with path.open("rb") as table:
            lines = sum(1 for _ in table)
    except OSError:
        return 0
    return max(0, lines - 1)


def _fix_scale(
    directory: StudyDirectory,
    manifest: dict[str, Any],
    context: TrialContext,
    gpus_per_trial: float,
    resources: RunResources,
) -> str | None:
    """Fix the study's latency scale; a line saying what happened (when the reference
    could not be timed, the trials time it on their workers: the run goes on)."""
    try:
        return fix_latency_scale(
            directory,
            manifest,
            context,
            gpus_per_trial,
            say=lambda line: _say(line, resources),
            local=resources.address is None,
        )
    except Exception as error:
        reason = _first_line(error)
        return (
            f"latency scale: could not time the reference network before the trials "
            f"({reason[:200]}); the first trial of each device kind times it"
        )


def _first_line(error: Exception) -> str:
    """The first line of what went wrong (of the task's own error, for a Ray task's)."""
    cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError's original error
    error = cause if isinstance(cause, Exception) else error
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _say(line: str | None, resources: RunResources) -> None:
    if line and resources.verbosity > QUIET:
        print(line, flush=True)


def _final_pass(root: Path, cpus_per_trial: float, gpus_per_trial: float) -> str:
    """Run the final latency pass; a line saying what happened (a failure is no error of
    the run: its trials are all recorded)."""
    try:
        return final_latency_pass(root, cpus_per_trial, gpus_per_trial)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every trial is recorded already
        return f"final latency pass interrupted; run python -m studies.remeasure {root} for it"
    except Exception as error:  # reported in one line: the run stands
        reason = _first_line(error)
        return (
            f"final latency pass failed ({reason[:200]}); run python -m studies.remeasure "
            f"{root} for it"
        )


def _summary(
    directory: StudyDirectory,
    study: optuna.Study,
    requeued: int,
    started_trials: int,
    started: float,
    target: int,
    storage_url: str | None,
) -> RunSummary:
    ended = trials_by_status(study)
    return RunSummary(
        root=directory.root,
        finished=sum(len(ended[status]) for status in FINISHED),
        completed=len(ended["ok"]),
        failed=len(ended["failed"]),
        stopped=len(ended[STOPPED]),
        infeasible=len(ended["infeasible"]),
        requeued=requeued,
        started_trials=started_trials,
        seconds=time.perf_counter() - started,
        target=target,
        storage=storage_url or str(directory.journal_path),
    )

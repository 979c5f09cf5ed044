"""Optuna inside Ray Tune: samplers, the define-by-run space, and trial recording.

Ray's ``OptunaSearch`` asks and tells the Optuna study from the driver. The subclass
here also stores every measured field as the Optuna trial's user attributes, maps a
trial's own status to Optuna's states (ok -> COMPLETE, infeasible -> PRUNED, failed ->
FAIL) and rewrites ``trials.csv`` as each trial finishes.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from search.records import INTERRUPTED, RECORD_FIELDS, TrialsTable
from search.settings import SAMPLERS
from search.trial import NUMBER_KEY
from space import SearchSpace, sample_params


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """A multi-objective Optuna sampler by name (tpe, nsga2, gp, random)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=10
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=20)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Define-by-run space for OptunaSearch; passes the Optuna trial number along."""
    sample_params(trial, space)
    return {NUMBER_KEY: trial.number}


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def describe_outcome(number: int, record: dict[str, Any]) -> str:
    """One progress line for a finished trial."""
    name = f" ({record['preset']})" if record.get("preset") else ""
    if record["status"] == "ok":
        return (
            f"trial {number}{name}: val_acc {record['val_acc']:.4f}, "
            f"latency {record['latency_ms']:.3f} ms, {record.get('params', 0):,} params, "
            f"{record.get('trial_seconds', 0):.0f} s"
        )
    return f"trial {number}{name}: {record['status']}: {record.get('error', '')}"


class RecordingOptunaSearch(OptunaSearch):
    """OptunaSearch that records each trial's full result in the study and the table."""

    def __init__(self, *, table: TrialsTable, failure_hint: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._table = table
        self._failure_hint = failure_hint

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        record = {
            key: result[key]
            for key in RECORD_FIELDS
            if result and key in result and not _is_nan(result[key])
        }
        requeue = False
        if "status" not in record and not error:  # stopped before it reported: Ctrl-C
            record = {
                "status": INTERRUPTED,
                "error": "interrupted before it finished; queued again",
            }
            requeue = True
        elif "status" not in record:
            record = {
                "status": "failed",
                "error": "the trial's worker died or Ray failed to run it"
                + (f"; see {self._failure_hint}" if self._failure_hint else ""),
            }
        for key, value in record.items():
            ot_trial.set_user_attr(key, value)
        status = record["status"]
        if status == "ok":
            self._ot_study.tell(ot_trial, [record["val_acc"], record["latency_ms"]])
        elif status == "infeasible":
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
        else:
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
        if requeue:
            self._ot_study.enqueue_trial(
                ot_trial.params, user_attrs={"requeued_from": ot_trial.number}
            )
        self._completed_trials.add(trial_id)
        self._table.write(self._ot_study)
        print(describe_outcome(ot_trial.number, record), flush=True)

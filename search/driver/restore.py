"""Finished work restored from ``trials.csv`` when the Optuna journal lost it.

The journal is the study's source of truth, but a journal cut short (a crash mid-write
on a file system that lost its tail, or ``--repair-journal``, which cuts a damaged
journal back to the operations before the damage) can lack the completion of trials
whose full records ``trials.csv`` holds (each row is appended, fsynced, after its trial
was told). Before a run re-queues the trials the journal still has as RUNNING, this
tells the study those results instead, through Optuna's public ask-and-tell API, so no
finished trial trains twice:

- a trial the journal has as RUNNING with all its parameters gets its recorded result
  (COMPLETE with its objectives, FAIL, or PRUNED for one mo-asha stopped), with its
  record and constraints;
- a trial the journal lost (entirely, or all but part of its parameters) is queued with
  its parameters and asked for again (``enqueue_trial``, ``ask``), then told. The lost
  trials are the journal's last ones, so restored in order they get back their numbers,
  except after a partly kept one, which is retired as interrupted. Where another trial
  is already queued (ask would take it), the lost ones are left to train again.

Rows of infeasible trials (no training to save), of trials still running when the
table was written, and "ok" rows without both objectives (an edited or damaged table:
nothing to tell Optuna) are not restored; such a trial runs again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from search.driver.bookkeeping import FINISHED, STOPPED
from search.setup.settings import OBJECTIVES
from space import (
    LATENCY_CONSTRAINT,
    CostCaps,
    SearchSpace,
    check_config,
    params_to_config,
    sample_params,
)
from studies import schema
from studies.schema import INTERRUPTED, RECORD_ATTR, RECORD_FIELDS

_RETIRED = {
    "status": INTERRUPTED,
    "error": "the journal lost part of this trial; its result was restored as a new trial",
}


def _record(row: pd.Series) -> dict[str, Any]:
    """The trial's record (RECORD_FIELDS) from its table row, missing values left out."""
    record = {}
    for name in RECORD_FIELDS:
        value = row.get(name)
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            continue
        record[name] = value.item() if hasattr(value, "item") else value
    return record


def _params(row: pd.Series, names: list[str]) -> dict[str, Any]:
    return {
        name: int(row[name]) if float(row[name]).is_integer() else float(row[name])
        for name in names
        if name in row and not pd.isna(row[name])
    }


def _constraints(
    record: dict[str, Any],
    params: dict[str, Any],
    space: SearchSpace,
    caps: CostCaps,
    input_size: int,
) -> dict[str, float]:
    """The constraints the trial was told with (none without caps), as the search sets
    them (search.methods.feasibility, search.driver.optuna_bridge)."""
    if not caps.active:
        return {}
    costs, _ = check_config(params_to_config(params, space), caps, input_size)
    values = caps.constraint_values(costs)
    if caps.max_latency_ms is not None:
        latency = record.get("latency_ms")
        values[LATENCY_CONSTRAINT] = 0.0 if latency is None else caps.latency_constraint(latency)
    return values


def restore_finished(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    table_path: Path,
    *,
    space: SearchSpace,
    caps: CostCaps,
    input_size: int,
) -> int:
    """Tell ``study`` the finished results ``table_path`` holds and the journal lacks;
    returns how many trials were restored."""
    if not table_path.exists():
        return 0
    try:
        table = schema.read_trials(table_path)
    except schema.StudyError:
        return 0  # an unreadable table restores nothing; the run rewrites it
    names = schema.param_columns(table.columns)
    trials = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    not_running = [number for number, trial in trials.items() if trial.state != TrialState.RUNNING]
    # the rows to look at: finished in the table, missing or still running in the journal
    # (usually none; the loop below passes over the others, queued trials' numbers included)
    finished = table[table["status"].isin(FINISHED) & ~table["number"].isin(not_running)]
    no_objectives = finished.reindex(columns=list(OBJECTIVES)).isna().any(axis=1)
    finished = finished[~((finished["status"] == "ok") & no_objectives)]
    study_id = storage.get_study_id_from_name(study.study_name)
    restored = 0
    for _, row in finished.iterrows():
        number = int(row["number"])
        params = _params(row, names)
        known = trials.get(number)
        if known is not None and known.state == TrialState.RUNNING and known.params == params:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
            trial = optuna.Trial(study, trial_id)  # its creation and parameters survived
        elif known is None or known.state == TrialState.RUNNING:
            if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
                continue  # ask() would take a queued trial: this one trains again
            if known is not None:  # only part of its parameters survived: retire it
                retire = storage.get_trial_id_from_study_id_trial_number(study_id, number)
                storage.set_trial_user_attr(retire, RECORD_ATTR, _RETIRED)
                study.tell(number, state=TrialState.FAIL)
            study.enqueue_trial(params)
            trial = study.ask()  # the journal's next number: this one's where it lost a tail
            sample_params(trial, space)  # the enqueued parameters, with their distributions
        else:
            continue  # recorded in the journal, or another (queued) trial's number
        record = _record(row)
        constraints = _constraints(record, trial.params, space, caps, input_size)
        _tell(study, trial, record, constraints)
        restored += 1
    return restored


def _tell(
    study: optuna.Study, trial: optuna.Trial, record: dict[str, Any], constraints: dict[str, float]
) -> None:
    """Tell ``trial`` its recorded result, as the search told it (search.driver.optuna_bridge)."""
    trial.set_user_attr(RECORD_ATTR, record)
    for key, value in constraints.items():
        trial.set_constraint(key, value)
    if record["status"] == "ok":
        study.tell(trial, [record["val_acc"], record["latency_ms"]])
    elif record["status"] == STOPPED:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)

"""Optuna inside Ray Tune: samplers, the define-by-run space, and trial recording.

Ray's ``OptunaSearch`` asks and tells the Optuna study from the driver. The subclass
here also checks each suggested config against the cost caps (an infeasible one is
recorded at once, never trained; see search.methods.feasibility), stores every measured field
in the Optuna trial, maps a trial's own status to Optuna's states (ok
-> COMPLETE with its two values, failed -> FAIL; a trial stopped before it reported is
recorded as interrupted and queued again) and appends each ended trial's row to
``trials.csv``. A trial that ``--scheduler mo-asha`` stopped at an epoch rung is recorded
with status ``stopped`` and the rung's figures, and told to Optuna as PRUNED: Optuna's
state for a trial stopped early, which keeps it out of the study's ``best_trials`` and out
of every sampler's model of the objectives (the default GP and NSGA-II model COMPLETE
trials only; TPE counts PRUNED ones among its worse trials), so the samplers never mix
a rung's accuracy with full-budget ones (bench/multi_fidelity.py measured the
alternative, COMPLETE with the rung's accuracy: it halved the default GP sampler's
hypervolume; BENCHMARKS.md). A trial's record is one user attribute
(studies.schema.RECORD_ATTR): with the ``tell``, two storage writes per trial, however
many fields it measured.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from search.driver.bookkeeping import FINISHED, STOPPED, requeue_trial
from search.driver.latency_scale import ScaleBook
from search.driver.progress import Progress
from search.driver.records import TrialsTable
from search.methods.feasibility import (
    MAX_INFEASIBLE_IN_A_ROW,
    MAX_TOO_SLOW_IN_A_ROW,
    constrain,
    placeholder_values,
)
from search.worker.fields import NUMBER_KEY, config_record
from space import LATENCY_CONSTRAINT, CostCaps, SearchSpace, params_to_config, sample_params
from studies.schema import INTERRUPTED, RECORD_ATTR, RECORD_FIELDS
from threshnet.cli import UserError, keep_sigterm_handler


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """Define-by-run space for OptunaSearch; passes the Optuna trial number along."""
    sample_params(trial, space)
    return {NUMBER_KEY: trial.number}


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def describe_outcome(number: int, record: dict[str, Any]) -> str:
    """One progress line for a finished trial."""
    name = f" ({record['preset']})" if record.get("preset") else ""
    if record["status"] in ("ok", STOPPED):
        early = record["status"] == STOPPED
        stopped = f"stopped after {record['epochs']} epochs: " if early else ""
        return (
            f"trial {number}{name}: {stopped}val_acc {record['val_acc']:.4f}, "
            f"latency {record['latency_ms']:.3f} ms, {record.get('params', 0):,} params, "
            f"{record.get('trial_seconds', 0):.0f} s"
        )
    return f"trial {number}{name}: {record['status']}: {record.get('error', '')}"


class RecordingOptunaSearch(OptunaSearch):
    """OptunaSearch that records each trial's full result in the study and the table.

    It reads OptunaSearch's own bookkeeping (``_ot_trials``, ``_ot_study``,
    ``_completed_trials``): Ray offers no public hook for what a searcher does with a
    finished trial, so this subclass replaces ``on_trial_complete`` whole; ray is pinned
    below 2.61 in pyproject.toml for that, and the in-process tests of this class would
    catch a rename.
    """

    def __init__(
        self,
        *,
        table: TrialsTable,
        failure_hint: str,
        storage: optuna.storages.BaseStorage,
        space: SearchSpace,
        caps: CostCaps,
        input_size: int,
        target: int | None = None,
        progress: Progress | None = None,
        scale_book: ScaleBook | None = None,
        **kwargs: Any,
    ):
        super().__init__(storage=storage, space=functools.partial(suggest, space=space), **kwargs)
        self._table = table
        self._failure_hint = failure_hint
        self._optuna_storage = storage
        self._search_space = space
        self._caps = caps
        self._input_size = input_size
        # Why the run must stop (the first failure to write the study, say a full disk;
        # or caps that leave almost nothing of the space): search.driver.tuner stops on it
        # instead of losing the results that follow.
        self.abort: Exception | None = None
        self._study_id: int | None = None  # the Optuna study's id in the storage, once known
        # Finished (ok or failed) trials this run is for; None: as many as Tune asks for.
        # Trials found infeasible after their latency was measured do not count, so the
        # run goes on suggesting until this many have finished.
        self._target = target
        self.finished = 0
        self._too_slow_in_a_row = 0  # trials over --max-latency-ms since the last trained one
        self._fastest_ms = math.inf  # the fastest latency measured in this run
        self._progress = progress  # None: a plain line per ended trial
        self._scale_book = scale_book  # None: latencies as the workers give them

    def _tell_user(self, number: int, record: dict[str, Any], *, not_running: int = 0) -> None:
        """Print ended trial ``number``'s line (and the run's status line); ``not_running``:
        trials still listed as in flight that are not (one suggested and found infeasible)."""
        line = describe_outcome(number, record)
        if self._progress is None:
            print(line, flush=True)
            return
        running = len(self._ot_trials) - not_running  # finished ones are dropped
        self._progress.trial_ended(line, record, running)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        keep_sigterm_handler()  # Tune's loop runs here: ours, not Ray's crash handler
        if self.abort is not None:
            return None
        if self._target is not None:
            in_flight = len(self._ot_trials)
            if self.finished >= self._target:
                return Searcher.FINISHED
            if self.finished + in_flight >= self._target:
                return None  # enough in flight: wait for their outcome
        try:
            for _ in range(MAX_INFEASIBLE_IN_A_ROW):
                config = super().suggest(trial_id)
                if config is None or self._feasible(trial_id):
                    return config
                del self._ot_trials[trial_id]  # recorded as infeasible: ask Optuna again
        except OSError as error:  # the storage cannot be written
            self.abort = error
            return None
        self.abort = UserError(
            f"{MAX_INFEASIBLE_IN_A_ROW} suggested configs in a row broke the cost caps "
            "(--max-params/--max-macs): they leave almost nothing of the space; loosen "
            "them or narrow --space"
        )
        return None

    def _feasible(self, trial_id: str) -> bool:
        """Check the suggested config against the caps (closed forms); record it as
        infeasible, without training, when it breaks one."""
        if not self._caps.active:
            return True
        ot_trial = self._ot_trials[trial_id]
        config = params_to_config(ot_trial.params, self._search_space)
        costs, violations = constrain(ot_trial, config, self._caps, self._input_size)
        if not violations:
            return True
        record = {"status": "infeasible", "error": "; ".join(violations)}
        record.update(config_record(config, costs))
        if self._caps.max_latency_ms is not None:  # not measured: neutral for that cap
            ot_trial.set_constraint(LATENCY_CONSTRAINT, 0.0)
        ot_trial.set_user_attr(RECORD_ATTR, record)
        study = self._ot_study
        study.tell(ot_trial, placeholder_values(study, self._search_space.num_classes))
        self._append_row(ot_trial.number)
        self._tell_user(ot_trial.number, record, not_running=1)
        return False

    def _append_row(self, number: int) -> None:
        """Append trial ``number``'s row, as the storage now has it, to the table."""
        storage = self._optuna_storage
        if self._study_id is None:
            self._study_id = storage.get_study_id_from_name(self._ot_study.study_name)
        trial_id = storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        self._table.append(storage.get_trial(trial_id))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if self.abort is not None:
            return  # nothing more is recorded; the next run re-queues what is left
        try:
            self._record(trial_id, result, error)
        except Exception as failure:
            # An OSError is the storage that cannot be written (a full disk); anything
            # else is a fault of ours: either way, stop rather than lose what follows.
            self.abort = failure

    def _record(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        study = self._ot_study
        record = {
            key: result[key]
            for key in RECORD_FIELDS
            if result and key in result and not _is_nan(result[key])
        }
        if "error" in record:  # one line: a row of trials.csv is one line
            record["error"] = " ".join(str(record["error"]).split())
        if "status" not in record and not error:  # stopped before it reported: Ctrl-C
            reason = "interrupted before it finished; queued again"
            record = {"status": INTERRUPTED, "error": reason}
            requeue_trial(study, self._optuna_storage, ot_trial.number, ot_trial.params, reason)
        else:
            if "status" not in record:
                record = {
                    "status": "failed",
                    "error": "the trial's worker died or Ray failed to run it"
                    + (f"; see {self._failure_hint}" if self._failure_hint else ""),
                }
            if self._scale_book is not None:
                record = self._scale_book.settle(record, ot_trial.number)
            ot_trial.set_user_attr(RECORD_ATTR, record)
            if self._caps.max_latency_ms is not None and "latency_ms" in record:
                latency = self._caps.latency_constraint(record["latency_ms"])
                ot_trial.set_constraint(LATENCY_CONSTRAINT, latency)
            if record["status"] == "ok":
                study.tell(ot_trial, [record["val_acc"], record["latency_ms"]])
            elif record["status"] == "infeasible":  # over --max-latency-ms, not trained
                num_classes = self._search_space.num_classes
                study.tell(ot_trial, placeholder_values(study, num_classes))
            elif record["status"] == STOPPED:  # by mo-asha at a rung: see module doc
                study.tell(ot_trial, state=TrialState.PRUNED)
            else:
                study.tell(ot_trial, state=TrialState.FAIL)
        self._completed_trials.add(trial_id)  # told: never recorded twice, not in flight
        # Its Optuna handle (which caches a copy of the trial, record included) is not
        # needed again: kept, they grew the driver by ~20 KB a trial over 10,000 trials
        del self._ot_trials[trial_id]
        self._count(record)
        self._append_row(ot_trial.number)
        self._tell_user(ot_trial.number, record)

    def _count(self, record: dict[str, Any]) -> None:
        """Count a finished trial; stop the run when the latency cap rules out trial after
        trial (no config of the space may be that fast on this device)."""
        if record["status"] in FINISHED:
            self.finished += 1
            self._too_slow_in_a_row = 0
        if "latency_ms" in record:
            self._fastest_ms = min(self._fastest_ms, record["latency_ms"])
        if record["status"] != "infeasible" or "latency_ms" not in record:
            return
        self._too_slow_in_a_row += 1
        if self._too_slow_in_a_row >= MAX_TOO_SLOW_IN_A_ROW:
            self.abort = UserError(
                f"{MAX_TOO_SLOW_IN_A_ROW} trials in a row were slower than --max-latency-ms "
                f"{self._caps.max_latency_ms:g} (the fastest measured: "
                f"{self._fastest_ms:.3f} ms): loosen the cap or narrow --space"
            )

"""``--scheduler mo-asha`` as a Ray Tune scheduler: search.methods.mo_asha's rule at each rung.

A trial of a mo-asha study reports once per epoch rung short of the full budget (a
record with status ``stopped``, see search.worker.trial) and once at the end (its final
record). On a rung report the scheduler records (rung accuracy, latency) at that rung and
answers CONTINUE or STOP; Ray Tune then ends a stopped trial, and the searcher records
that rung report as the trial's result. The final report always continues to the end,
and so do the published presets: their results are recorded at each rung, but every
study measures them at the full budget (they are on every front and set the
hypervolume's reference point).

A resumed study starts the scheduler with the rung results its earlier trials recorded
(``rung_val_accs``), so a rung's ranking spans the whole study, not one run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.driver.bookkeeping import STOPPED
from search.methods.mo_asha import MultiObjectiveRungs, RungSchedule


def rung_results(record: dict[str, Any]) -> list[tuple[int, float]]:
    """(epochs, val_acc) at each rung a trial's record says it passed."""
    pairs = str(record.get("rung_val_accs") or "").split()
    return [(int(epochs), float(acc)) for epochs, acc in (pair.split(":") for pair in pairs)]


class MultiObjectiveASHA(FIFOScheduler):
    """Asynchronous successive halving on (accuracy, latency); trials run in FIFO order."""

    def __init__(self, schedule: RungSchedule, earlier: Iterable[tuple[int, dict[str, Any]]] = ()):
        """``earlier``: (trial number, record) of the study's trials from earlier runs."""
        super().__init__()
        self._rungs = MultiObjectiveRungs(schedule)
        self._stopped = 0
        for number, record in earlier:
            latency = record.get("latency_ms")
            for epochs, accuracy in rung_results(record) if latency is not None else ():
                self._rungs.on_result(f"earlier-{number}", epochs, accuracy, float(latency))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if result.get("status") != STOPPED:  # the trial's final record
            return TrialScheduler.CONTINUE
        keep = self._rungs.on_result(
            trial.trial_id,
            int(result["epochs"]),
            float(result["val_acc"]),
            float(result["latency_ms"]),
        )
        if keep or result.get("preset"):  # a published preset is always trained in full
            return TrialScheduler.CONTINUE
        self._stopped += 1
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        counts = ", ".join(f"{rung} epochs: {n}" for rung, n in self._rungs.counts.items())
        return f"MO-ASHA: {self._stopped} trials stopped; results per rung: {counts}"

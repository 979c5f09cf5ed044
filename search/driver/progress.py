"""What a run prints while it goes: a line per ended trial and one status line.

The status line says how far the run is (finished of wanted, running, failed, stopped,
elapsed, an ETA from this run's pace) and what the study has found (the Pareto front's
size and hypervolume, with the report's reference point), and when the machine is
oversubscribed: the driver's own since the last line (threshnet.machine_load), and how
many trials' latencies were timed so (their workers' readings). On a terminal it stays as the
last line, rewritten in place; in a log (not a terminal) it follows each trial's line.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from search.driver.bookkeeping import FINISHED
from search.setup.settings import NORMAL, QUIET
from studies.pareto import default_reference, hypervolume, pareto_mask
from studies.schema import trial_record
from threshnet.cli import format_duration
from threshnet.machine_load import LoadWindow


def front_summary(study: optuna.Study, full_epochs: int) -> tuple[int, float]:
    """(size of the Pareto front, its hypervolume) of the study's full-budget trials."""
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = trial_record(trial)
        if record.get("status") == "ok" and record.get("epochs") == full_epochs:
            rows.append(
                {
                    "val_acc": record["val_acc"],
                    "latency_ms": record["latency_ms"],
                    "preset": record.get("preset", ""),
                }
            )
    if not rows:
        return 0, 0.0
    frame = pd.DataFrame(rows)
    return int(pareto_mask(frame).sum()), hypervolume(frame, default_reference(frame))


class Progress:
    """Prints trial lines and the status line of one run."""

    def __init__(
        self,
        *,
        target: int,
        full_epochs: int,
        verbosity: int = NORMAL,
    ):
        self._target = target  # finished trials this run is for
        self._full_epochs = full_epochs
        self._verbosity = verbosity
        # sys.stdout is looked up at each write: Ray Tune pickles the searcher holding this
        self._live = sys.stdout.isatty()
        self._started = time.monotonic()
        self._counts = {"finished": 0, "failed": 0, "stopped": 0, "oversubscribed": 0}
        self._status_shown = False
        self._load = LoadWindow()  # the driver's machine since the last status line

    def trial_ended(
        self, line: str, record: dict[str, Any], study: optuna.Study, running: int
    ) -> None:
        """Print ``line`` for an ended trial, then the status line."""
        status = record.get("status")
        if status in FINISHED:
            self._counts["finished"] += 1
        if status in ("failed", "stopped"):
            self._counts[status] += 1
        self._counts["oversubscribed"] += int(record.get("latency_oversubscribed", 0))
        if self._verbosity == QUIET:
            return
        self._write(line, keep=True)
        self._write(self.status(study, running), keep=not self._live)

    def status(self, study: optuna.Study, running: int) -> str:
        """The status line."""
        finished = self._counts["finished"]
        elapsed = time.monotonic() - self._started
        eta = (
            f"ETA {format_duration(elapsed / finished * (self._target - finished))}"
            if 0 < finished < self._target
            else "ETA -"
        )
        size, volume = front_summary(study, self._full_epochs)
        stopped = f", {self._counts['stopped']} stopped" if self._counts["stopped"] else ""
        return (
            f"[{finished}/{self._target} finished, {running} running, "
            f"{self._counts['failed']} failed{stopped} | "
            f"{format_duration(elapsed)} elapsed, {eta} | "
            f"front {size}, hypervolume {volume:.4g}{self._load_note()}]"
        )

    def _load_note(self) -> str:
        """ " | oversubscribed: ..." while the machine is, or latencies were timed so."""
        reading = self._load.reading()
        self._load = LoadWindow()
        parts = [reading.describe()] if reading.oversubscribed else []
        if count := self._counts["oversubscribed"]:
            parts.append(f"{count} {'latency' if count == 1 else 'latencies'} timed so")
        return f" | oversubscribed: {'; '.join(parts)}" if parts else ""

    def close(self) -> None:
        """End a live status line, so what follows starts on a line of its own."""
        if self._live and self._status_shown:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._status_shown = False

    def _write(self, text: str, *, keep: bool) -> None:
        if self._live and self._status_shown:
            sys.stdout.write("\r\033[K")  # over the status line
        sys.stdout.write(text + ("\n" if keep else ""))
        sys.stdout.flush()
        self._status_shown = self._live and not keep

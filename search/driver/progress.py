"""What a run prints while it goes: a line per ended trial and one status line.

The status line says how far the run is (finished of wanted, running, failed, stopped,
elapsed, an ETA from this run's pace) and what the study has found (the Pareto front's
size and hypervolume, with the report's reference point), and when the machine is
oversubscribed: the driver's own since the last line (threshnet.machine_load), and how
many trials' latencies were timed so (their workers' readings); and, on a local Ray, when
another program computes on this machine's devices, which the trials' timings wait for
(search.tasks.gate_waits). On a terminal it stays as the
last line, rewritten in place; in a log (not a terminal) it follows each trial's line.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from search.driver.bookkeeping import FINISHED
from search.setup.settings import NORMAL, QUIET
from search.tasks.gate_waits import sharing_note
from search.worker.gate import gate_users
from studies.pareto import RunningFront
from studies.schema import trial_record
from threshnet.cli import format_duration
from threshnet.machine_load import LoadWindow

SHARING_EVERY_S = 5.0


class Progress:
    """Prints trial lines and the status line of one run."""

    def __init__(
        self,
        *,
        target: int,
        full_epochs: int,
        verbosity: int = NORMAL,
        earlier: Iterable[FrozenTrial] = (),
        local: bool = False,
    ):
        """``earlier``: the study's trials before this run (a resumed study's front);
        ``local``: the trials run on a Ray this process started (its devices are this
        machine's, and its workers run under this process)."""
        self._target = target  # finished trials this run is for
        self._local = local
        self._sharing = (-math.inf, "")  # (when looked up, the note)
        self._full_epochs = full_epochs
        self._verbosity = verbosity
        # sys.stdout is looked up at each write: Ray Tune pickles the searcher holding this
        self._live = sys.stdout.isatty()
        self._started = time.monotonic()
        self._counts = {"finished": 0, "failed": 0, "stopped": 0, "oversubscribed": 0}
        self._status_shown = False
        self._load = LoadWindow()  # the driver's machine since the last status line
        self._front = RunningFront()  # of the study's full-budget ok trials
        for trial in earlier:
            if trial.state == TrialState.COMPLETE:
                self._add_to_front(trial_record(trial))

    def _add_to_front(self, record: dict[str, Any]) -> None:
        if record.get("status") == "ok" and record.get("epochs") == self._full_epochs:
            self._front.add(record["val_acc"], record["latency_ms"], record.get("preset", ""))

    def trial_ended(self, line: str, record: dict[str, Any], running: int) -> None:
        """Count an ended trial (``record``, as told to the study), print ``line`` for it,
        then the status line."""
        self._add_to_front(record)
        status = record.get("status")
        if status in FINISHED:
            self._counts["finished"] += 1
        if status in ("failed", "stopped"):
            self._counts[status] += 1
        self._counts["oversubscribed"] += int(record.get("latency_oversubscribed", 0))
        if self._verbosity == QUIET:
            return
        self._write(line, keep=True)
        self._write(self.status(running), keep=not self._live)

    def status(self, running: int) -> str:
        """The status line."""
        finished = self._counts["finished"]
        elapsed = time.monotonic() - self._started
        eta = (
            f"ETA {format_duration(elapsed / finished * (self._target - finished))}"
            if 0 < finished < self._target
            else "ETA -"
        )
        stopped = f", {self._counts['stopped']} stopped" if self._counts["stopped"] else ""
        front = f"front {self._front.size}, hypervolume {self._front.hypervolume():.4g}"
        return (
            f"[{finished}/{self._target} finished, {running} running, "
            f"{self._counts['failed']} failed{stopped} | "
            f"{format_duration(elapsed)} elapsed, {eta} | "
            f"{front}{self._load_note()}{self._sharing_note()}]"
        )

    def _sharing_note(self) -> str:
        """ " | device shared: ..." while another program computes on this machine's devices
        (looked up at most every SHARING_EVERY_S: it reads the process table)."""
        if not self._local:
            return ""
        now = time.monotonic()
        if now - self._sharing[0] >= SHARING_EVERY_S:
            self._sharing = (now, sharing_note(gate_users(), os.getpid()))
        return self._sharing[1]

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

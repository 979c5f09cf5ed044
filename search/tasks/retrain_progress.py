"""The fidelity check's line about its trainings in flight, read from the progress file
each training writes beside its checkpoint after every epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from search.tasks.retrain import RetrainJob
from threshnet.cli import format_duration
from threshnet.training.epoch_checkpoint import read_progress

PROGRESS_EVERY_SECONDS = 60.0


class RunningTrainings:
    """An ``on_wait`` for :func:`search.tasks.retrain.retrain_configs`: at most every
    PROGRESS_EVERY_SECONDS, and only when an epoch has ended since the last line, prints
    each running training's epochs done, its training time and what is left at that pace."""

    def __init__(self, prog: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.prog, self.clock = prog, clock
        self.last_time, self.last_text = -math.inf, ""

    def __call__(self, jobs: list[RetrainJob]) -> None:
        now = self.clock()
        if now - self.last_time < PROGRESS_EVERY_SECONDS:
            return
        self.last_time = now
        parts = [
            part
            for job in sorted(jobs, key=lambda job: (job.number, job.epochs, job.seed))
            if (part := _progress_text(job))
        ]
        text = "; ".join(parts)
        if text and text != self.last_text:
            self.last_text = text
            print(f"{self.prog}: {text}", flush=True)


def _progress_text(job: RetrainJob) -> str:
    """``trial 19 6xall: epoch 4/6 after 1 h 05 min, about 32 min 30 s to go``; empty before
    its first epoch ends (or without a checkpoint)."""
    progress = None if job.checkpoint is None else read_progress(Path(job.checkpoint))
    if progress is None:
        return ""
    epoch = int(progress["epoch"])
    seconds = progress.get("train_seconds")
    text = f"trial {job.number} {job.epochs}x{job.images}: epoch {epoch}/{job.epochs}"
    if isinstance(seconds, (int, float)) and epoch > 0:
        left = seconds / epoch * (job.epochs - epoch)
        text += f" after {format_duration(seconds)}, about {format_duration(left)} to go"
    return text

"""Fault injection for the reliability tests: make chosen trials fail on purpose.

``THRESHNET_SEARCH_FAULTS="2=raise,3=oom,4=nan,5=exit"`` makes trial 2 raise, trial 3
raise CUDA's out-of-memory error, trial 4 train with a learning rate that drives the
loss to NaN, and trial 5's worker process exit mid-trial. Unset (the normal case),
nothing happens. The variable is forwarded to Ray workers by the runner.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from threshnet.training import TrainSettings

FAULTS_VARIABLE = "THRESHNET_SEARCH_FAULTS"
KINDS = ("raise", "oom", "nan", "exit")


def planned_faults() -> dict[int, str]:
    """Trial number -> fault kind, from the environment."""
    text = os.environ.get(FAULTS_VARIABLE, "").strip()
    faults = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        number, _, kind = item.partition("=")
        if kind not in KINDS or not number.strip().isdigit():
            raise ValueError(f"{FAULTS_VARIABLE}: bad item {item!r}; use N={'|'.join(KINDS)}")
        faults[int(number)] = kind
    return faults


def apply_fault(number: int, train: TrainSettings) -> TrainSettings:
    """Act out the fault planned for trial ``number``; returns the settings to train with."""
    kind = planned_faults().get(number)
    if kind == "raise":
        raise RuntimeError(f"injected fault in trial {number}")
    if kind == "oom":
        raise torch.cuda.OutOfMemoryError(f"injected out-of-memory in trial {number}")
    if kind == "exit":
        os._exit(17)
    if kind == "nan":
        return dataclasses.replace(train, lr=1e30, schedule="constant")
    return train

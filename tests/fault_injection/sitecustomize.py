"""Fault injection for the reliability tests, loaded by every Python process of a test run.

A test that wants faults puts this folder on ``PYTHONPATH`` (``conftest.fault_env``), so
Python imports this file at start-up in the process it starts and in every Ray worker
that process starts (they inherit the environment). Nothing in the product knows of it:
it patches product modules right after they are imported.

- ``THRESHNET_SEARCH_FAULTS="3=raise,4=oom,5=nan,6=exit"``: in ``search.worker.trial``, trial 3's
  proxy training raises, 4's runs out of CUDA memory, 5's trains with a learning rate that
  drives the loss to NaN, and 6's worker process exits mid-trial.
- ``THRESHNET_DISK_FULL_AT_BYTES=N``: the Optuna journal's file system is full once the
  journal holds about N bytes: the append that reaches N writes part of its line (what
  fits, at least a byte), then fails ENOSPC.
- ``THRESHNET_TRAIN_EXIT_AFTER_EPOCH=N``: ``threshnet.train`` exits (status 17) when
  epoch N+1 would start, after epoch N's checkpoint, like a kill between two epochs.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import json
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

SEARCH_FAULTS = "THRESHNET_SEARCH_FAULTS"
TRAIN_EXIT = "THRESHNET_TRAIN_EXIT_AFTER_EPOCH"
DISK_FULL = "THRESHNET_DISK_FULL_AT_BYTES"


def _planned_faults() -> dict[int, str]:
    faults = {}
    for item in filter(None, os.environ.get(SEARCH_FAULTS, "").split(",")):
        number, _, kind = item.partition("=")
        faults[int(number)] = kind.strip()
    return faults


def _patch_search_trial(module: ModuleType) -> None:
    import torch

    faults = _planned_faults()
    evaluate, run_proxy = module.evaluate_trial, module.run_proxy

    def evaluate_with_faults(params: dict, context: object, **kwargs: object) -> dict:
        number = int(params.get(module.NUMBER_KEY, -1))
        kind = faults.get(number)
        if kind == "exit":
            os._exit(17)

        def faulty_proxy(config, train_set, val_set, settings, **kwargs):
            if kind == "raise":
                raise RuntimeError(f"injected fault in trial {number}")
            if kind == "oom":
                raise torch.cuda.OutOfMemoryError(f"injected out-of-memory in trial {number}")
            if kind == "nan":
                settings = dataclasses.replace(settings, lr=1e30, schedule="constant")
            return run_proxy(config, train_set, val_set, settings, **kwargs)

        module.run_proxy = faulty_proxy
        try:
            return evaluate(params, context, **kwargs)
        finally:
            module.run_proxy = run_proxy

    module.evaluate_trial = evaluate_with_faults


def _patch_train(module: ModuleType) -> None:
    stop_after = int(os.environ[TRAIN_EXIT])
    train_epoch = module.train_epoch

    def exit_before_the_next_epoch(*args, epoch: int, **kwargs):
        if epoch == stop_after + 1:
            os._exit(17)
        return train_epoch(*args, epoch=epoch, **kwargs)

    module.train_epoch = exit_before_the_next_epoch


def _patch_journal(module: ModuleType) -> None:
    import errno

    limit = int(os.environ[DISK_FULL])
    backend = module.JournalFileBackend

    def append_until_full(self, logs: list) -> None:
        text = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        size = os.path.getsize(self._file_path)
        if size + len(text) <= limit:
            with open(self._file_path, "ab") as handle:
                handle.write(text)
            return
        with open(self._file_path, "ab") as handle:  # what fits, and never a whole line
            handle.write(text[: min(max(1, limit - size), len(text) - 1)])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._file_path)

    backend.append_logs = append_until_full


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs ``patches[name](module)`` right after module ``name`` is executed."""

    def __init__(self, patches: dict[str, Callable[[ModuleType], None]]):
        self.patches = patches

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = self.patches.get(name)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_then_patch(module: ModuleType) -> None:
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


_patches: dict[str, Callable[[ModuleType], None]] = {}
if os.environ.get(SEARCH_FAULTS):
    _patches["search.worker.trial"] = _patch_search_trial
if os.environ.get(DISK_FULL):
    _patches["optuna.storages.journal._file"] = _patch_journal
if os.environ.get(TRAIN_EXIT):
    _patches["threshnet.training.train"] = _patch_train
if _patches:
    sys.meta_path.insert(0, _PatchAfterImport(_patches))

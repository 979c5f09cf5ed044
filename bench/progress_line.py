"""The driver's status line per ended trial at 300 to 10,000 trials (BENCHMARKS.md, "Scale").

A journal-file study of N ended trials (full records; 3 of them the presets), then, per
repeat and interleaved, one status line's cost:

- ``from-scratch``: what the status line computed at each ended trial before it kept its
  front (search.driver.progress.front_summary up to commit 734d69b): every COMPLETE
  trial's record read from the study, then the front, reference and hypervolume of them;
- ``incremental``: ``Progress.trial_ended`` for one more ok record (added to the front the
  progress keeps, its line and the status line written to /dev/null);
- ``seed``: a resumed run's one-time ``Progress(earlier=study.get_trials(...))``.

    python bench/progress_line.py --trials 300 3000 10000 --repeats 15
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState, create_trial

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.driver.progress import Progress
from studies.pareto import default_reference, hypervolume, pareto_mask
from studies.schema import RECORD_ATTR, RECORD_FIELDS, open_storage, trial_record
from threshnet.presets import PUBLISHED_PRESETS

EPOCHS = 4


def _record(rng: random.Random, preset: str = "") -> dict[str, Any]:
    """A full record (every field set, as a trained trial's), ok at the full budget."""
    record: dict[str, Any] = {
        name: {str: "x", int: 1, float: rng.random()}[kind] for name, kind in RECORD_FIELDS.items()
    }
    record.update(
        status="ok",
        preset=preset,
        epochs=EPOCHS,
        val_acc=round(rng.uniform(0.3, 0.9), 4),
        latency_ms=round(rng.uniform(1.0, 10.0), 3),
    )
    return record


def _study(root: Path, trials: int, rng: random.Random) -> optuna.Study:
    study = optuna.create_study(
        storage=open_storage(root, None), directions=["maximize", "minimize"]
    )
    presets = list(PUBLISHED_PRESETS)
    for number in range(trials):
        record = _record(rng, presets[number] if number < len(presets) else "")
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                values=[record["val_acc"], record["latency_ms"]],
                user_attrs={RECORD_ATTR: record},
            )
        )
    return study


def _from_scratch(study: optuna.Study) -> tuple[int, float]:
    """The status line's front and hypervolume as computed before 2026-12-06's change."""
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = trial_record(trial)
        if record.get("status") == "ok" and record.get("epochs") == EPOCHS:
            rows.append({key: record.get(key, "") for key in ("val_acc", "latency_ms", "preset")})
    frame = pd.DataFrame(rows)
    return int(pareto_mask(frame).sum()), hypervolume(frame, default_reference(frame))


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _summary(values: list[float]) -> dict[str, float]:
    ms = [1000 * v for v in values]
    return {"min_ms": min(ms), "median_ms": statistics.median(ms), "max_ms": max(ms)}


def _measure(trials: int, repeats: int, rng: random.Random) -> dict[str, list[float]]:
    """Seconds of each arm, ``repeats`` times, interleaved (the order reversed every other)."""
    times: dict[str, list[float]] = {"from-scratch": [], "incremental": [], "seed": []}
    with tempfile.TemporaryDirectory() as directory:
        study = _study(Path(directory), trials, rng)
        earlier = study.get_trials(deepcopy=False)
        progress = Progress(target=trials + repeats, full_epochs=EPOCHS, earlier=earlier)
        ended = iter([_record(rng) for _ in range(repeats)])
        arms: dict[str, Callable[[], object]] = {
            "from-scratch": lambda: _from_scratch(study),
            "incremental": lambda: progress.trial_ended("trial", next(ended), running=0),
            "seed": lambda: Progress(target=1, full_epochs=EPOCHS, earlier=earlier),
        }
        with open(os.devnull, "w") as sink, redirect_stdout(sink):
            for repeat in range(repeats):
                for name in list(arms) if repeat % 2 == 0 else list(reversed(arms)):
                    times[name].append(_seconds(arms[name]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[300, 3000, 10000])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"# status line: optuna {optuna.__version__}, {os.cpu_count()} CPUs, journal file")
    rng = random.Random(0)
    for trials in args.trials:
        for name, values in _measure(trials, args.repeats, rng).items():
            print(json.dumps({"trials": trials, "arm": name, **_summary(values)}))


if __name__ == "__main__":
    main()

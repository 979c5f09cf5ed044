"""Bookkeeping throughput of the Optuna storages a study can use, at 1,000 trials.

What the driver does per trial, against each storage: ask (the product's space sampled by
Optuna's RandomSampler, so the sampler costs next to nothing), store the trial's record
(one user attribute shaped like ``studies.schema.RECORD_FIELDS``), tell two objectives.
Printed per storage: trials recorded per second over the whole run and over its last 100
trials, and the seconds to load every trial again (what a resume and ``studies.report``
do). Storages: the journal file (the default), SQLite on local disk, and PostgreSQL: a
throw-away local server (``tests/postgres_server.py``: Debian's ``postgresql``, needs
``pip install -e '.[postgres]'``) unless ``--postgres URL`` names one. Repeats alternate
the storages, each on a fresh study.

    python bench/storage_throughput.py                   # 1,000 trials, 2 repeats
    python bench/storage_throughput.py --trials 200 --repeats 1 --postgres none
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the throw-away PostgreSQL server of the tests

from space import DEFAULT_SPACE, sample_params  # noqa: E402
from studies.schema import RECORD_ATTR, RECORD_FIELDS  # noqa: E402


def _record(rng: random.Random) -> dict[str, object]:
    """A record with every field the product stores, values of the right types."""
    values = {str: "ok", int: 3, float: 0.5, bool: False}
    record = {name: values.get(kind, "x") for name, kind in RECORD_FIELDS.items()}
    record.update(val_acc=rng.random(), latency_ms=rng.uniform(5, 50))
    return record


def run_storage(
    storage: str | optuna.storages.BaseStorage, trials: int
) -> tuple[float, float, float]:
    """(trials/s overall, trials/s over the last 100, seconds to load every trial)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        storage=storage,
        study_name=f"bench-{time.monotonic_ns()}",
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    rng = random.Random(0)
    marks = []
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        sample_params(trial, DEFAULT_SPACE)
        record = _record(rng)
        trial.set_user_attr(RECORD_ATTR, record)
        study.tell(trial, [record["val_acc"], record["latency_ms"]])
        marks.append(time.perf_counter())
    overall = trials / (marks[-1] - started)
    last = min(100, trials - 1)
    tail = last / (marks[-1] - marks[-1 - last])
    loading = time.perf_counter()
    loaded = optuna.load_study(study_name=study.study_name, storage=storage)
    assert len(loaded.get_trials(deepcopy=False)) == trials
    return overall, tail, time.perf_counter() - loading


@contextlib.contextmanager
def storages(directory: Path, postgres: str | None) -> Iterator[dict[str, object]]:
    journal = optuna.storages.journal.JournalFileBackend(str(directory / "optuna.journal"))
    found: dict[str, object] = {
        "journal file": optuna.storages.JournalStorage(journal),
        "SQLite (local disk)": f"sqlite:///{directory / 'optuna.db'}",
    }
    if postgres == "none":
        yield found
        return
    if postgres:
        yield {**found, "PostgreSQL": postgres}
        return
    from postgres_server import postgres_server, unavailable

    if unavailable():
        print(f"PostgreSQL skipped: {unavailable()}")
        yield found
        return
    with postgres_server() as url:
        yield {**found, "PostgreSQL (local server)": url}


def _spread(values: list[float], digits: int) -> str:
    return "/".join(
        f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--postgres", help="a PostgreSQL URL, or 'none' (default: start one)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as temporary,
        storages(Path(temporary), args.postgres) as chosen,
    ):
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in chosen}
        for _ in range(args.repeats):
            for name, storage in chosen.items():
                results[name].append(run_storage(storage, args.trials))
    print(
        f"storage bookkeeping, {args.trials} trials (ask, record, tell), {args.repeats} "
        f"alternating repeats, min/median/max; {platform.node()}, optuna {optuna.__version__}"
    )
    print(f"{'storage':<28}{'trials/s':>22}{'last 100: trials/s':>24}{'load all (s)':>20}")
    for name, runs in results.items():
        print(
            f"{name:<28}{_spread([r[0] for r in runs], 1):>22}"
            f"{_spread([r[1] for r in runs], 1):>24}{_spread([r[2] for r in runs], 2):>20}"
        )


if __name__ == "__main__":
    main()

"""The case study's full-training stage: the winner by the long budget against ThreshNet79
and ThreshNet28, one recipe for all three (``threshnet.train``, resumable per epoch).

The winner is the config with the best long-budget accuracy among those whose latency in
the study (re-measured where the final pass ran) is below ThreshNet79's. Its choice is
written to ``winner.json`` before it trains, so a later session trains the same one.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: the project's packages from the checkout
    sys.path.insert(0, str(REPO))

from studies.fidelity import ladder_summary  # noqa: E402
from studies.load import eligible_trials, load_study  # noqa: E402

PRESETS = ("threshnet79", "threshnet28")


def choose_winner(study_dir: Path) -> dict[str, Any]:
    """The most accurate config at the long budget among those faster than ThreshNet79."""
    study = load_study(study_dir)
    ladder = ladder_summary(study)
    if ladder is None:
        raise SystemExit("case_study: the fidelity stage has no long-budget results yet")
    configs = ladder.configs.dropna(subset=[ladder.long])
    reference = configs[configs["preset"] == "threshnet79"]
    if reference.empty:
        raise SystemExit("case_study: ThreshNet79 has no long-budget result yet")
    faster = configs[configs["latency_ms"] < float(reference["latency_ms"].iloc[0])]
    faster = faster[~faster["preset"].isin(PRESETS)]
    if faster.empty:
        raise SystemExit(
            "case_study: no config with a long-budget result is faster than ThreshNet79"
        )
    best = faster.sort_values(ladder.long, ascending=False).iloc[0]
    trials = eligible_trials(study).set_index("number")
    number = int(best["number"])
    return {
        "number": number,
        "preset": str(best["preset"]),
        "latency_ms": float(best["latency_ms"]),
        "threshnet79_latency_ms": float(reference["latency_ms"].iloc[0]),
        "long_budget": ladder.long,
        "long_val_acc": float(best[ladder.long]),
        "proxy_val_acc": float(best["search"]),
        "config": json.loads(str(trials.loc[number, "config_json"])),
        "candidates": len(faster),
    }


def full_training(
    recipe: Sequence[str],
    out: Path,
    data_dir: str,
    *,
    parallel: int,
    run: Callable[[list[str], Path], None],
) -> None:
    """Train ThreshNet79, ThreshNet28 and the winner with ``recipe`` under ``out/full``;
    the presets first, as they need no fidelity result."""
    full = out / "full"
    full.mkdir(parents=True, exist_ok=True)
    winner_file = full / "winner.json"
    if not winner_file.exists():
        try:
            winner = choose_winner(out / "study")
        except SystemExit as reason:
            print(f"{reason}; training the presets only for now", flush=True)
        else:
            winner_file.write_text(json.dumps(winner, indent=1) + "\n")
            (full / "winner-config.json").write_text(json.dumps(winner["config"], indent=1) + "\n")
    models: list[tuple[str, list[str]]] = [(name, ["--preset", name]) for name in PRESETS]
    if winner_file.exists():
        models.append(("winner", ["--config", str(full / "winner-config.json")]))

    def train(model: tuple[str, list[str]]) -> None:
        name, source = model
        summary = full / name / "summary.json"
        if summary.exists():  # committed; its checkpoint stays on the machine that trained it
            print(f"case_study: {name} is trained ({summary}); not trained again", flush=True)
            return
        command = [
            sys.executable,
            "-m",
            "threshnet.train",
            *source,
            "--data-dir",
            data_dir,
            "--out",
            str(full / name),
            *recipe,
        ]
        run(command, out / "logs" / f"full-{name}.log")

    if parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
        # trainings at once share the cores: one thread pool each, not each all cores
        # (oversubscribed OpenMP pools spin against each other)
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // parallel))
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for result in pool.map(train, models):
            del result

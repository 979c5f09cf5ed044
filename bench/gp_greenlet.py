"""Does Optuna's GP sampler suggest faster with ``greenlet`` installed?

Without ``greenlet`` Optuna's GP sampler optimises its acquisition function with one
L-BFGS-B run after another (and warns, "'greenlet' package is unavailable, falling back to
sequential L-BFGS-B optimization"); with it, the runs are batched. This bench runs the
product's GP sampler (``make_sampler("gp")``; the default ``gp-tpe`` up to its hand-over)
on the ``launch`` surrogate of ``bench/sampler_efficiency.py`` in two arms, each in a
fresh process on one thread: ``greenlet`` importable, and ``greenlet`` hidden from Optuna
(``sys.modules`` entry set to None before Optuna loads). The arms alternate, ``--repeats``
times each, same seed; printed: seconds per suggestion at 10, 50 and 100 finished trials
(min/median/max over the repeats) and the median ratio without/with. Needs ``pip install
greenlet``.

    python bench/gp_greenlet.py                  # 100 trials, 3 repeats (~10 min on 2 cores)
    python bench/gp_greenlet.py --trials 50 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = (10, 50, 100)

_ARM = """
import json, sys
if {hide}:
    sys.modules["greenlet"] = None  # Optuna's try_import sees no greenlet
sys.path.insert(0, {bench!r})
from sampler_efficiency import run_study
result = run_study("gp", "launch", {seed}, {trials}, 1)
print(json.dumps({{str(k): v for k, v in result.suggest_seconds.items()}}))
"""


def run_arm(hide_greenlet: bool, seed: int, trials: int) -> dict[int, float]:
    """Seconds per suggestion at each timing point, from one fresh process."""
    code = _ARM.format(hide=hide_greenlet, bench=str(ROOT / "bench"), seed=seed, trials=trials)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return {int(k): v for k, v in json.loads(result.stdout.splitlines()[-1]).items()}


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        import greenlet  # noqa: F401
    except ImportError:
        raise SystemExit("gp_greenlet: install greenlet first (pip install greenlet)") from None
    arms: dict[str, list[dict[int, float]]] = {"with greenlet": [], "without": []}
    for _ in range(args.repeats):  # interleaved: a load change hits both arms alike
        arms["with greenlet"].append(run_arm(False, args.seed, args.trials))
        arms["without"].append(run_arm(True, args.seed, args.trials))
    print(
        f"GP suggestion seconds, {args.trials} trials, seed {args.seed}, one thread, "
        f"{args.repeats} interleaved repeats; {platform.processor() or platform.machine()}"
    )
    points = [p for p in POINTS if p <= args.trials]
    print("arm            " + "  ".join(f"at {p:>3} told (min/med/max)" for p in points))
    for name, runs in arms.items():
        print(f"{name:<15}" + "  ".join(f"{_spread([r[p] for r in runs]):>25}" for p in points))
    ratios = [
        statistics.median(
            without[p] / with_[p]
            for without, with_ in zip(arms["without"], arms["with greenlet"], strict=True)
        )
        for p in points
    ]
    print("without / with " + "  ".join(f"{r:>25.2f}" for r in ratios))


if __name__ == "__main__":
    main()

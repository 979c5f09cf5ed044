"""Cost caps as Optuna constraints, and what an infeasible trial tells Optuna.

Infeasible configs are found by the searcher when Optuna suggests them, from closed-form
costs, and never reach a worker. They are told to Optuna as COMPLETE trials with their
constraint values (> 0) and placeholder objectives: constrained TPE and NSGA-II rank them
by how far they miss and ignore the placeholders, GP models the constraints beside the
objectives, and all three then steer away from the infeasible region. (A PRUNED trial,
as before, is ignored by NSGA-II and GP.) The placeholders are chance accuracy and the
slowest latency measured so far, so they stay within the range of real results.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from space import CostCaps, check_config
from studies.schema import trial_status
from threshnet.closed_form import ArchitectureCosts
from threshnet.config import ThreshNetConfig

# An uninterrupted run of infeasible suggestions this long means the caps leave almost
# nothing of the space: the run stops and says so.
MAX_INFEASIBLE_IN_A_ROW = 200
# Trials in a row over --max-latency-ms (each costs a latency measurement, seconds): as
# many mean that no config the sampler finds is that fast here; the run stops and says so.
MAX_TOO_SLOW_IN_A_ROW = 30
NOMINAL_LATENCY_MS = 1.0  # the placeholder before any latency was measured


def constrain(
    trial: optuna.Trial, config: ThreshNetConfig, caps: CostCaps, input_size: int
) -> tuple[ArchitectureCosts, list[str]]:
    """Set each cap's constraint on ``trial``; the config's costs and the caps it breaks
    (empty if none)."""
    costs, violations = check_config(config, caps, input_size)
    for key, value in caps.constraint_values(costs).items():
        trial.set_constraint(key, value)
    return costs, violations


def placeholder_values(study: optuna.Study, num_classes: int) -> list[float]:
    """The objectives an infeasible trial reports: chance accuracy, slowest latency so far."""
    measured = [
        trial.values[1]
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if trial_status(trial) == "ok"
    ]
    return [1.0 / num_classes, max(measured, default=NOMINAL_LATENCY_MS)]

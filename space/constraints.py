"""Cost caps checked from the config alone, before any training."""

from __future__ import annotations

from dataclasses import dataclass

from threshnet.config import ThreshNetConfig
from threshnet.costs import StaticCosts, static_costs


@dataclass(frozen=True)
class CostCaps:
    """Upper bounds on parameters and MACs (at the training input size); None = no cap."""

    max_params: int | None = None
    max_macs: int | None = None

    def violations(self, costs: StaticCosts) -> list[str]:
        """Human-readable reasons ``costs`` breaks the caps (empty when feasible)."""
        reasons = []
        if self.max_params is not None and costs.params > self.max_params:
            reasons.append(f"params {costs.params:,} > max {self.max_params:,}")
        if self.max_macs is not None and costs.macs > self.max_macs:
            reasons.append(f"MACs {costs.macs:,} > max {self.max_macs:,}")
        return reasons


def check_config(
    config: ThreshNetConfig, caps: CostCaps, input_size: int
) -> tuple[StaticCosts, list[str]]:
    """Static costs of ``config`` and the caps it violates (computed on the meta device)."""
    costs = static_costs(config, input_size)
    return costs, caps.violations(costs)

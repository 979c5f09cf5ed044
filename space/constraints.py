"""Cost caps checked from the config alone (closed forms, microseconds), before training.

A search tells Optuna each cap as a constraint (``Trial.set_constraint``): the relative
excess ``cost / cap - 1``, feasible when <= 0, so every constrained sampler (TPE,
NSGA-II, GP) learns where the infeasible region lies and by how much a config misses.
"""

from __future__ import annotations

from dataclasses import dataclass

from threshnet.closed_form import ArchitectureCosts, architecture_costs
from threshnet.config import ThreshNetConfig

LATENCY_CONSTRAINT = "latency"  # the Optuna constraint of --max-latency-ms


@dataclass(frozen=True)
class CostCaps:
    """Upper bounds on parameters and MACs (at the training input size), checked from the
    config alone, and on the measured batch-1 latency, checked after it is measured and
    before any training; None = no cap."""

    max_params: int | None = None
    max_macs: int | None = None
    max_latency_ms: float | None = None

    @property
    def active(self) -> bool:
        """Whether a cap is checked from the config alone (params, MACs)."""
        return self.max_params is not None or self.max_macs is not None

    def latency_constraint(self, latency_ms: float) -> float:
        """Optuna constraint of the latency cap: ``latency / cap - 1``."""
        assert self.max_latency_ms is not None
        return latency_ms / self.max_latency_ms - 1.0

    def latency_violation(self, latency_ms: float) -> str | None:
        """Why ``latency_ms`` breaks the latency cap, or None."""
        if self.max_latency_ms is None or latency_ms <= self.max_latency_ms:
            return None
        return f"latency {latency_ms:.3f} ms > max {self.max_latency_ms:g} ms"

    def _limits(self, costs: ArchitectureCosts) -> list[tuple[str, str, int, int]]:
        limits = [("params", "params", costs.params, self.max_params)]
        limits.append(("macs", "MACs", costs.macs, self.max_macs))
        return [(key, label, value, cap) for key, label, value, cap in limits if cap is not None]

    def constraint_values(self, costs: ArchitectureCosts) -> dict[str, float]:
        """Optuna constraint per cap: ``cost / cap - 1`` (feasible when <= 0)."""
        return {key: value / cap - 1.0 for key, _, value, cap in self._limits(costs)}

    def violations(self, costs: ArchitectureCosts) -> list[str]:
        """Human-readable reasons ``costs`` breaks the caps (empty when feasible)."""
        return [
            f"{label} {value:,} > max {cap:,}"
            for _, label, value, cap in self._limits(costs)
            if value > cap
        ]


def check_config(
    config: ThreshNetConfig, caps: CostCaps, input_size: int
) -> tuple[ArchitectureCosts, list[str]]:
    """Parameters and MACs of ``config`` and the caps it violates."""
    costs = architecture_costs(config, input_size)
    return costs, caps.violations(costs)

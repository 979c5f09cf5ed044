"""ThreshNet: a DenseNet/HarDNet hybrid family, built from one config-driven builder.

A plain PyTorch model library: it imports nothing from the search toolkit. The names
below load on first use (PEP 562), so a process that needs only configs and their
closed-form costs (threshnet.config, threshnet.closed_form) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from threshnet.config import SCHEMA_VERSION, StageConfig, ThreshNetConfig
    from threshnet.costs import StaticCosts, count_params, module_costs, static_costs
    from threshnet.latency import LatencyResult, LatencySettings, measure_latency
    from threshnet.model import ThreshNet, build_model, describe_stages
    from threshnet.presets import PRESETS, PUBLISHED, get_preset, preset_name

_EXPORTS = {
    "threshnet.config": ("SCHEMA_VERSION", "StageConfig", "ThreshNetConfig"),
    "threshnet.costs": ("StaticCosts", "count_params", "module_costs", "static_costs"),
    "threshnet.latency": ("LatencyResult", "LatencySettings", "measure_latency"),
    "threshnet.model": ("ThreshNet", "build_model", "describe_stages"),
    "threshnet.presets": ("PRESETS", "PUBLISHED", "get_preset", "preset_name"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "PRESETS",
    "PUBLISHED",
    "SCHEMA_VERSION",
    "LatencyResult",
    "LatencySettings",
    "StageConfig",
    "StaticCosts",
    "ThreshNet",
    "ThreshNetConfig",
    "build_model",
    "count_params",
    "describe_stages",
    "get_preset",
    "measure_latency",
    "module_costs",
    "preset_name",
    "static_costs",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'threshnet' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)

"""ThreshNet: a DenseNet/HarDNet hybrid family, built from one config-driven builder.

A plain PyTorch model library: it imports nothing from the search toolkit.
"""

from threshnet.config import SCHEMA_VERSION, StageConfig, ThreshNetConfig
from threshnet.costs import StaticCosts, count_params, module_costs, static_costs
from threshnet.latency import LatencyResult, LatencySettings, measure_latency
from threshnet.model import ThreshNet, build_model, describe_stages
from threshnet.presets import PRESETS, PUBLISHED, get_preset, preset_name

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

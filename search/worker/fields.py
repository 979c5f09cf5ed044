"""Record fields that a real trial (search.worker.trial) and a simulated one
(search.worker.simulated) fill the same way; no torch."""

from __future__ import annotations

import socket
from typing import Any

from threshnet.closed_form import ArchitectureCosts
from threshnet.config import ThreshNetConfig
from threshnet.presets import preset_name

NUMBER_KEY = "optuna_number"  # constant the define-by-run function adds to each config


def node_name() -> str:
    """Host name, plus the Ray node id when running inside Ray (one host can run several
    Ray nodes)."""
    host = socket.gethostname()
    try:
        import ray
    except ImportError:
        return host
    if not ray.is_initialized():
        return host
    return f"{host}/{ray.get_runtime_context().get_node_id()[:12]}"


def config_record(config: ThreshNetConfig, costs: ArchitectureCosts) -> dict[str, Any]:
    """The record fields that describe a config: preset name, depth, parameters and MACs
    (``costs``) and the config itself as one line of JSON."""
    return {
        "preset": preset_name(config) or "",
        "depth": config.depth,
        "params": costs.params,
        "macs": costs.macs,
        "config_json": config.to_json().replace("\n", ""),
    }

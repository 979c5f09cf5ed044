"""Zero-cost scores: rank configs at initialisation, with no training.

Besides parameter count and MACs (threshnet.costs), one gradient-based score: SynFlow
(Tanaka et al., NeurIPS 2020), which Abdelfattah et al. ("Zero-Cost Proxies for
Lightweight NAS", ICLR 2021) found among the best-ranking zero-cost proxies. It needs no
data: every weight is replaced by its absolute value, an all-ones input is passed through
the network in float64 and the score is the sum over all parameters of
``|theta| * dR/dtheta`` where ``R`` is the sum of the outputs. Batch normalisation is taken
in eval mode, where freshly initialised layers (running mean 0, variance 1, weight 1,
bias 0) are the identity up to their epsilon, as the reference implementation removes
them. The score grows over many orders of magnitude, so its natural logarithm is returned.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from threshnet.config import ThreshNetConfig
from threshnet.costs import architecture_costs
from threshnet.model import build_model

ZERO_COST_SCORES = ("params", "macs", "synflow")


@dataclass(frozen=True)
class ZeroCostScores:
    """A config's zero-cost scores (higher ranks higher) and the seconds they took."""

    params: float
    macs: float
    synflow: float  # natural log of the SynFlow score
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def synflow_log_score(model: nn.Module, input_size: int, *, seed: int = 0) -> float:
    """ln of the SynFlow score of ``model`` (not modified: a float64 copy is scored)."""
    torch.manual_seed(seed)
    scored = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for parameter in scored.parameters():
            parameter.abs_()
    scored.zero_grad(set_to_none=True)
    output = scored(torch.ones(1, 3, input_size, input_size, dtype=torch.float64))
    output.sum().backward()
    total = sum(
        (parameter * parameter.grad).sum().item()
        for parameter in scored.parameters()
        if parameter.grad is not None
    )
    return math.log(total) if total > 0 else float("-inf")


def zero_cost_scores(
    config: ThreshNetConfig, *, input_size: int = 32, seed: int = 0
) -> ZeroCostScores:
    """Parameters, MACs at ``input_size`` and ln SynFlow of ``config`` at initialisation."""
    started = time.perf_counter()
    costs = architecture_costs(config, input_size)
    torch.manual_seed(seed)
    model = build_model(config)
    synflow = synflow_log_score(model, input_size, seed=seed)
    return ZeroCostScores(
        params=float(costs.params),
        macs=float(costs.macs),
        synflow=synflow,
        seconds=time.perf_counter() - started,
    )

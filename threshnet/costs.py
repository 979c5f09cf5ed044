"""Static costs of a config: parameters, MACs/FLOPs, activation memory, torchstat figures.

:func:`static_costs` and :func:`architecture_costs` are closed forms of the config
(threshnet.closed_form, which imports no torch; re-exported here): one walk over the
stages, no network built and no forward pass (microseconds, whatever the size of the
net). :func:`module_costs` measures an existing module instead, with
``torch.utils.flop_counter`` and forward hooks on its leaf modules; tests check that both
give exactly the same figures.

Units (batch 1, float32): ``params`` counts parameters (BN running statistics are
buffers, not parameters); ``macs`` are the multiply-accumulates of conv and linear layers
as counted by ``torch.utils.flop_counter.FlopCounterMode``; ``flops = 2 * macs``;
``activation_mb`` is the size, in MiB, of every leaf module's output summed (torchstat's
"memory" column: a size measure, not a peak). The ``torchstat_*`` figures re-apply the
per-layer rules of the torchstat package that produced the cost columns of the ThreshNet
README ("FLOPs" there are MACs plus BN/ReLU/pool terms), so published and searched
models can be compared on the authors' own footing.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from threshnet.closed_form import (
    BYTES_PER_MIB,
    ArchitectureCosts,
    StaticCosts,
    architecture_costs,
    static_costs,
)
from threshnet.model import ThreshNet

__all__ = [
    "ArchitectureCosts",
    "StaticCosts",
    "architecture_costs",
    "count_params",
    "module_costs",
    "output_bytes",
    "static_costs",
]


def count_params(model: nn.Module) -> int:
    """Number of trainable and frozen parameters (BN running stats are buffers)."""
    return sum(parameter.numel() for parameter in model.parameters())


def _torchstat_terms(
    module: nn.Module, inputs: torch.Tensor, output: torch.Tensor
) -> tuple[int, int]:
    """torchstat's (FLOPs, MAdd) for one leaf module; unknown modules count zero."""
    in_numel = inputs.numel()
    out_numel = output.numel()
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        bias = module.bias is not None
        flops = out_numel * kernel + (out_numel if bias else 0)
        madd = out_numel * (2 * kernel - (0 if bias else 1))
        return flops, madd
    if isinstance(module, nn.BatchNorm2d):
        return in_numel * (2 if module.affine else 1), 4 * in_numel
    if isinstance(module, nn.ReLU):
        return in_numel, out_numel
    if isinstance(module, nn.MaxPool2d):
        size = module.kernel_size
        window = size * size if isinstance(size, int) else size[0] * size[1]
        return in_numel, (window - 1) * out_numel
    if isinstance(module, nn.Linear):
        batch = inputs.shape[0]
        macs = batch * module.in_features * module.out_features
        return macs, batch * module.out_features * (2 * module.in_features - 1)
    return 0, 0


def _leaf_statistics(model: nn.Module, example: torch.Tensor) -> tuple[int, int, int]:
    """Run ``example`` through ``model``; return (output bytes, torchstat FLOPs, MAdd)."""
    totals = [0, 0, 0]

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        totals[0] += output.numel() * output.element_size()
        flops, madd = _torchstat_terms(module, args[0], output)
        totals[1] += flops
        totals[2] += madd

    leaves = [module for module in model.modules() if not list(module.children())]
    handles = [leaf.register_forward_hook(hook) for leaf in leaves]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return totals[0], totals[1], totals[2]


def output_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """Bytes of every leaf module's output for ``example`` (runs one forward pass)."""
    return _leaf_statistics(model, example)[0]


def _count_flops(model: nn.Module, example: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(example)
    return counter.get_total_flops()


def module_costs(
    model: nn.Module, *, input_size: int, example: torch.Tensor | None = None
) -> StaticCosts:
    """Costs of an existing module (any device); see :func:`static_costs`."""
    if isinstance(model, ThreshNet):
        model.config.validate(input_size=input_size)
    if example is None:
        parameter = next(model.parameters())
        example = torch.zeros(1, 3, input_size, input_size, device=parameter.device)
    was_training = model.training
    model.eval()
    try:
        flops = _count_flops(model, example)
        output_bytes, ts_flops, ts_madd = _leaf_statistics(model, example)
    finally:
        model.train(was_training)
    return StaticCosts(
        input_size=input_size,
        params=count_params(model),
        macs=flops // 2,
        flops=flops,
        activation_mb=output_bytes / BYTES_PER_MIB,
        torchstat_flops=ts_flops,
        torchstat_madd=ts_madd,
    )

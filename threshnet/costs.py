"""Static costs of a config: parameters, MACs/FLOPs, activation memory, torchstat figures.

Parameters and MACs of a config come from closed forms (microseconds); the rest runs the
network on the ``meta`` device: shapes only, no arithmetic and no memory, so it costs
milliseconds even for configs too large to train.

Units: ``macs`` are multiply-accumulates of conv and linear layers as counted by
``torch.utils.flop_counter.FlopCounterMode``; ``flops = 2 * macs``. The ``torchstat_*``
figures re-apply the per-layer rules of the torchstat package that produced the cost
columns of the ThreshNet README ("FLOPs" there are MACs plus BN/ReLU/pool terms), so
published and searched models can be compared on the authors' own footing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from threshnet.config import ThreshNetConfig
from threshnet.harmonic import harmonic_layout
from threshnet.model import ThreshNet, build_model

BYTES_PER_MIB = 1024 * 1024


@dataclass(frozen=True)
class StaticCosts:
    """Size and arithmetic of one network at one input size (batch 1, float32)."""

    input_size: int
    params: int
    macs: int
    flops: int
    activation_mb: float
    torchstat_flops: int
    torchstat_madd: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class ArchitectureCosts:
    """Parameters and conv+linear MACs of a config, from the spec's closed forms."""

    params: int
    macs: int


def architecture_costs(config: ThreshNetConfig, input_size: int = 32) -> ArchitectureCosts:
    """Parameters and MACs (conv and linear layers, batch 1) of ``config`` at
    ``input_size``, by the closed forms of the family (no network is built: microseconds).

    Equal to :func:`static_costs`'s ``params`` and ``macs`` (tests check it).
    """
    config.validate(input_size=input_size)
    b = config.bottleneck
    first, second = config.stem
    stem_area = ((input_size - 1) // 2 + 1) ** 2
    params = 27 * first + 2 * first + 9 * first * second + 2 * second  # convs + BN affine
    macs = stem_area * (27 * first + 9 * first * second)
    channels = second
    for index, (stage, size) in enumerate(
        zip(config.stages, config.feature_sizes(input_size), strict=True)
    ):
        area = size * size
        if config.is_dense(index):
            for unit in range(stage.depth):
                c = channels + unit * stage.growth  # BN-ReLU-1x1(b)-BN-ReLU-3x3(growth)
                params += 2 * c + c * b + 2 * b + 9 * b * stage.growth
                macs += area * (c * b + 9 * b * stage.growth)
            block_out = channels + stage.depth * stage.growth
        else:
            layout = harmonic_layout(channels, stage.depth, stage.growth, stage.multiplier)
            for inputs, width in zip(layout.layer_inputs, layout.widths[1:], strict=True):
                params += 9 * inputs * width + 2 * width
                macs += area * 9 * inputs * width
            block_out = layout.out_channels
        params += block_out * stage.transition + 2 * stage.transition
        macs += area * block_out * stage.transition
        channels = stage.transition
    params += channels * config.num_classes + config.num_classes
    macs += channels * config.num_classes
    return ArchitectureCosts(params=params, macs=macs)


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


def static_costs(config: ThreshNetConfig, input_size: int = 32) -> StaticCosts:
    """Parameters, MACs, FLOPs and activation memory of ``config`` at ``input_size``.

    Parameters and MACs come from the closed forms (:func:`architecture_costs`); the
    activation memory and torchstat's figures from one pass of the network on PyTorch's
    meta device (shapes only: milliseconds). ``activation_mb`` is the sum of every leaf
    module's float32 output at batch 1, in MiB: exactly torchstat's "memory" column, a
    size measure, not a peak. :func:`module_costs` counts the same MACs with
    ``torch.utils.flop_counter`` (tests check that they agree).
    """
    closed = architecture_costs(config, input_size)
    with torch.device("meta"):
        model = build_model(config).eval()
        example = torch.empty(1, 3, input_size, input_size)
    output_bytes, ts_flops, ts_madd = _leaf_statistics(model, example)
    return StaticCosts(
        input_size=input_size,
        params=closed.params,
        macs=closed.macs,
        flops=2 * closed.macs,
        activation_mb=output_bytes / BYTES_PER_MIB,
        torchstat_flops=ts_flops,
        torchstat_madd=ts_madd,
    )


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

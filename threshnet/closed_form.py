"""Static costs of a config by closed forms: parameters, MACs/FLOPs, activation memory,
torchstat figures (units: see threshnet.costs, which also measures built modules).

One walk over the stages, no network built and no forward pass (microseconds, whatever
the size of the net), and no torch: a process that only needs a config's costs (the
search's cost caps, a simulated trial) never loads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from threshnet.config import ThreshNetConfig
from threshnet.harmonic import harmonic_layout

BYTES_PER_MIB = 1024 * 1024
FLOAT32_BYTES = 4


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


@dataclass(frozen=True)
class _ClosedForm:
    """Every static figure of a config at one input size, batch 1."""

    params: int
    macs: int
    output_elements: int  # of every leaf module's output, summed
    torchstat_flops: int
    torchstat_madd: int


def _closed_form(config: ThreshNetConfig, input_size: int) -> _ClosedForm:
    """Walk the stages of ``config`` once and count what :func:`module_costs` measures.

    The leaf modules of :class:`ThreshNet` are convs (no bias), BatchNorms each followed
    by a ReLU of the same shape, max-pools, and the head's adaptive pool, flatten and
    linear layer (concatenations are functions, not modules). The walk tallies conv MACs,
    conv output elements, BN-ReLU elements and pool terms; torchstat's rules then give, per
    conv, FLOPs = MACs and MAdd = 2 MACs - outputs; per BN on n elements 2n and 4n; per
    ReLU n and n; per max-pool FLOPs = inputs and MAdd = (window - 1) outputs; for the
    linear layer FLOPs = MACs and MAdd = 2 MACs - outputs; zero for the rest.
    """
    config.validate()
    sizes = config.feature_sizes(input_size)  # ValueError when a pool would collapse
    b = config.bottleneck
    first, second = config.stem
    stem_area = ((input_size - 1) // 2 + 1) ** 2
    # Stem: CBR(3 -> first, 3x3, s2), CBR(first -> second, 3x3), max-pool 3x3 s2.
    params = 27 * first + 9 * first * second + 2 * (first + second)
    macs = stem_area * (27 * first + 9 * first * second)
    conv_out = bn_relu = stem_area * (first + second)
    pool_in = stem_area * second
    pool_out = second * sizes[0] ** 2
    pool_madd = 8 * pool_out
    channels = second
    for index, (stage, size) in enumerate(zip(config.stages, sizes, strict=True)):
        area = size * size
        depth, growth = stage.depth, stage.growth
        if config.is_dense(index):
            # Unit u reads c_u = channels + u * growth: BN-ReLU(c_u), 1x1 conv (c_u -> b),
            # BN-ReLU(b), 3x3 conv (b -> growth). Sum of c_u over the units:
            inputs = depth * channels + growth * depth * (depth - 1) // 2
            params += (2 + b) * inputs + depth * (2 * b + 9 * b * growth)
            macs += area * (b * inputs + 9 * depth * b * growth)
            conv_out += area * depth * (b + growth)
            bn_relu += area * (inputs + depth * b)
            block_out = channels + depth * growth
        else:
            # Layer L: CBR(layer_inputs[L] -> widths[L], 3x3).
            layout = harmonic_layout(channels, depth, growth, stage.multiplier)
            widths = layout.widths[1:]
            products = sum(i * w for i, w in zip(layout.layer_inputs, widths, strict=True))
            params += 9 * products + 2 * sum(widths)
            macs += area * 9 * products
            conv_out += area * sum(widths)
            bn_relu += area * sum(widths)
            block_out = layout.out_channels
        # Transition CBR(block_out -> transition, 1x1), then an optional 2x2 max-pool.
        transition = stage.transition
        params += block_out * transition + 2 * transition
        macs += area * block_out * transition
        conv_out += area * transition
        bn_relu += area * transition
        if stage.downsample:
            pool_in += area * transition
            pooled = transition * (size // 2) ** 2
            pool_out += pooled
            pool_madd += 3 * pooled
        channels = transition
    # Head: adaptive average pool and flatten (channels each), linear (num_classes).
    classes = config.num_classes
    params += channels * classes + classes
    macs += channels * classes
    return _ClosedForm(
        params=params,
        macs=macs,
        output_elements=conv_out + 2 * bn_relu + pool_out + 2 * channels + classes,
        torchstat_flops=macs + 3 * bn_relu + pool_in,
        torchstat_madd=2 * macs - conv_out - classes + 5 * bn_relu + pool_madd,
    )


def architecture_costs(config: ThreshNetConfig, input_size: int = 32) -> ArchitectureCosts:
    """Parameters and MACs (conv and linear layers, batch 1) of ``config`` at
    ``input_size``, by the closed forms of the family (no network is built: microseconds).

    Equal to :func:`static_costs`'s ``params`` and ``macs``.
    """
    closed = _closed_form(config, input_size)
    return ArchitectureCosts(params=closed.params, macs=closed.macs)


def static_costs(config: ThreshNetConfig, input_size: int = 32) -> StaticCosts:
    """Parameters, MACs, FLOPs, activation memory and torchstat's figures of ``config`` at
    ``input_size`` (batch 1, float32), by closed forms of the config: no network is built
    and nothing runs (microseconds). Exactly what :func:`module_costs` measures on the
    built network (tests check every field).
    """
    closed = _closed_form(config, input_size)
    return StaticCosts(
        input_size=input_size,
        params=closed.params,
        macs=closed.macs,
        flops=2 * closed.macs,
        activation_mb=closed.output_elements * FLOAT32_BYTES / BYTES_PER_MIB,
        torchstat_flops=closed.torchstat_flops,
        torchstat_madd=closed.torchstat_madd,
    )

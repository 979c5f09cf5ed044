"""HarDNet's harmonic link and width rule, as pure functions (no torch).

Layer 0 is the block input; layers 1..n are 3x3 convs. Layer L reads every
``L - 2**i`` for which ``2**i`` divides L, nearest first. Its width is
``k * m**(links - 1)`` rounded to an even integer the way HarDNet rounds it. The block
output concatenates the odd layers and the last layer; the block input is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass


def harmonic_links(layer: int) -> list[int]:
    """Source layers of ``layer`` (>= 1), nearest first."""
    if layer < 1:
        raise ValueError(f"layer must be >= 1, got {layer}")
    links = []
    step = 1
    while step <= layer:
        if layer % step == 0:
            links.append(layer - step)
        step *= 2
    return links


def harmonic_width(layer: int, growth: int, multiplier: float) -> int:
    """Output width of ``layer``: growth times multiplier per extra link, made even."""
    width = float(growth)
    for _ in harmonic_links(layer)[1:]:
        width *= multiplier  # repeated products, as the reference computes them
    return int(int(width + 1) / 2) * 2


@dataclass(frozen=True)
class HarmonicLayout:
    """Links and widths of every layer of one harmonic block."""

    in_channels: int
    links: tuple[tuple[int, ...], ...]  # links[L - 1] for layer L
    widths: tuple[int, ...]  # widths[L]; widths[0] is the block input
    kept: tuple[int, ...]  # layers concatenated into the block output

    @property
    def layer_inputs(self) -> tuple[int, ...]:
        """Input channels of layers 1..n."""
        return tuple(sum(self.widths[source] for source in links) for links in self.links)

    @property
    def out_channels(self) -> int:
        return sum(self.widths[layer] for layer in self.kept)


def harmonic_layout(in_channels: int, depth: int, growth: int, multiplier: float) -> HarmonicLayout:
    """Compute the full layout of a harmonic block with ``depth`` conv layers."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    links = tuple(tuple(harmonic_links(layer)) for layer in range(1, depth + 1))
    widths = (
        in_channels,
        *(harmonic_width(layer, growth, multiplier) for layer in range(1, depth + 1)),
    )
    kept = tuple(layer for layer in range(1, depth + 1) if layer % 2 == 1 or layer == depth)
    return HarmonicLayout(in_channels=in_channels, links=links, widths=widths, kept=kept)

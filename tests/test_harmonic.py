"""The harmonic link and width rule against the spec's worked examples (section 4)."""

from __future__ import annotations

import pytest
import torch

from threshnet.harmonic import harmonic_layout, harmonic_links, harmonic_width
from threshnet.layers import HarmonicBlock


@pytest.mark.parametrize(
    ("layer", "links"),
    [
        (1, [0]),
        (2, [1, 0]),
        (3, [2]),
        (4, [3, 2, 0]),
        (8, [7, 6, 4, 0]),
        (12, [11, 10, 8]),
        (16, [15, 14, 12, 8, 0]),
    ],
)
def test_links_nearest_first(layer: int, links: list[int]) -> None:
    assert harmonic_links(layer) == links


@pytest.mark.parametrize(
    ("layer", "growth", "width"),
    [
        (1, 40, 40),
        (2, 40, 68),
        (4, 40, 116),
        (8, 40, 196),
        (16, 40, 334),
        (1, 160, 160),
        (2, 160, 272),
        (4, 160, 462),
    ],
)
def test_width_is_even_rounded(layer: int, growth: int, width: int) -> None:
    assert harmonic_width(layer, growth, 1.7) == width


def test_threshnet79_stage4_table() -> None:
    layout = harmonic_layout(288, 16, 40, 1.7)
    assert layout.widths[1:] == (40, 68, 40, 116, 40, 68, 40, 196, 40, 68, 40, 116, 40, 68, 40, 334)
    assert layout.layer_inputs == (
        288,
        328,
        68,
        396,
        116,
        156,
        68,
        512,
        196,
        236,
        68,
        304,
        116,
        156,
        68,
        708,
    )
    assert layout.out_channels == 654


def test_threshnet95_stage4_changes_only_layers_fed_by_the_input() -> None:
    inputs_79 = harmonic_layout(288, 16, 40, 1.7).layer_inputs
    inputs_95 = harmonic_layout(384, 16, 40, 1.7).layer_inputs
    changed = {
        layer + 1: width for layer, width in enumerate(inputs_95) if width != inputs_79[layer]
    }
    assert changed == {1: 384, 2: 424, 4: 492, 8: 608, 16: 804}


def test_threshnet79_stage5_output() -> None:
    layout = harmonic_layout(480, 4, 160, 1.7)
    assert layout.kept == (1, 3, 4)
    assert layout.out_channels == 160 + 160 + 462 == 782


def test_block_convs_follow_layout_and_drop_the_input() -> None:
    block = HarmonicBlock(24, 6, 8, 1.7).eval()
    convs = [layer[0] for layer in block.layers]
    assert [conv.in_channels for conv in convs] == list(block.layout.layer_inputs)
    assert [conv.out_channels for conv in convs] == list(block.layout.widths[1:])
    x = torch.randn(2, 24, 5, 5)
    with torch.no_grad():
        out = block(x)
    assert out.shape == (2, block.out_channels, 5, 5)
    # keepBase=False: the input is not part of the output.
    assert block.out_channels == sum(block.layout.widths[i] for i in (1, 3, 5, 6))

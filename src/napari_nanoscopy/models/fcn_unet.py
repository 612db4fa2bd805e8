"""The U-Net of Lavoie-Cardinal et al. 2020 (STEDActinFCN), keyed exactly like the authors' state dicts.

``2**number_filter`` filters in the first level, doubling at each of ``depth - 1`` max-pool
steps; every level is two 3x3 convolutions (padding 1) each followed by BatchNorm and ReLU; the
expanding path up-samples with a 2x2 transposed convolution of stride 2, concatenates the
centre-cropped skip (up-sampled features first) and applies two more; a 1x1 convolution gives
the class scores. The network returns raw scores: how they become probabilities (sigmoid for
the dendrite network, softmax for the axon one) is the model card's ``segmenter`` section.
"""

from __future__ import annotations

import torch
from torch import nn

from ..limits import check_int


class DoubleConv(nn.Module):
    """Two 3x3 convolutions (padding 1), each followed by BatchNorm and ReLU (keys ``conv.{0,1,3,4}``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Contract(nn.Module):
    """A 2x2 max-pool, then a :class:`DoubleConv` (keys ``conv.1.conv.*``)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(nn.MaxPool2d(kernel_size=2), DoubleConv(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Expand(nn.Module):
    """Up-sampling by a 2x2 transposed convolution, concatenation with the skip, a :class:`DoubleConv`."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.expand = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.expand(x)
        height, width = x.shape[-2:]
        top, left = (skip.shape[-2] - height) // 2, (skip.shape[-1] - width) // 2
        return self.conv(torch.cat([x, skip[..., top:top + height, left:left + width]], dim=1))


class FCNUNet(nn.Module):
    """The authors' U-Net; see the module docstring. Input sides must be multiples of ``2**(depth-1)``."""

    output_activation = "linear"  # raw class scores; the card says how they become probabilities
    dropout = 0.0
    global_context = False

    def __init__(self, in_channels: int = 1, out_channels: int = 2, number_filter: int = 4, depth: int = 4):
        super().__init__()
        # a card's numbers: refused with a sentence before any layer is made (2**12 filters is far beyond 16)
        in_channels, out_channels = check_int("in_channels", in_channels, 1, 64), check_int("out_channels", out_channels, 1, 64)
        number_filter, depth = check_int("number_filter", number_filter, 0, 12), check_int("depth", depth, 1, 8)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.number_filter, self.depth = number_filter, depth
        self.size_multiple = 2 ** (depth - 1)
        # Two 3x3 convolutions per level, at a scale that doubles with each pool, down and up again.
        self.receptive_radius = 2 * sum(2**level for level in range(depth)) + 2 * sum(2**level for level in range(depth - 1))
        self.input_conv = DoubleConv(in_channels, 2**number_filter)
        self.contracting_path = nn.ModuleList(
            Contract(2 ** (number_filter + i), 2 ** (number_filter + i + 1)) for i in range(depth - 1)
        )
        self.expanding_path = nn.ModuleList(
            Expand(2 ** (number_filter + i + 1), 2 ** (number_filter + i)) for i in reversed(range(depth - 1))
        )
        self.output_conv = nn.Conv2d(2**number_filter, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_conv(x)
        skips = [x]
        for contract in self.contracting_path:
            x = contract(x)
            skips.append(x)
        skips.pop()  # the deepest level feeds the expanding path directly
        for expand in self.expanding_path:
            x = expand(x, skips.pop())
        return self.output_conv(x)

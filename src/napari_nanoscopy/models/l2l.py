"""The CARE U-Net (CSBDeep ``common_unet`` with its ``Config`` defaults) that label2label
(Kölln et al., J. Cell Sci.) trains.

Layer for layer as CSBDeep builds it, so that Keras weights map one to one: each conv
module is keyed by the name CSBDeep gives the Keras layer (``down_level_0_no_0`` …
``middle_0``, ``middle_2`` … ``up_level_0_no_2``); the 1x1 output conv is ``final``.
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NanoscopyError
from ..limits import check_int
from .blocks import MAX_KERNEL, MAX_LEVELS, MAX_REPEATS, MAX_WIDTH, check_dropout


class CAREConv(nn.Module):
    """CSBDeep's conv_block2 without batch norm: 'same' conv, ReLU, dropout."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.conv(x)))


class CAREUNet(nn.Module):
    """CSBDeep U-Net: ``depth`` levels of ``convs_per_level`` convs (``base_filters * 2**n``
    filters), 2x2 max pooling, a middle of ``convs_per_level`` convs, nearest upsampling
    concatenated before the skip, a linear 1x1 output conv and, when ``residual``, the
    input added to it. ``residual=None`` means CSBDeep's default: residual when the input
    and output channel counts match.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_filters: int = 32,
        depth: int = 2,
        kernel_size: int = 5,
        convs_per_level: int = 2,
        residual: bool | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        self.out_channels = check_int("out_channels", out_channels, high=MAX_WIDTH)
        base_filters = check_int("base_filters", base_filters, high=MAX_WIDTH)
        depth = check_int("depth", depth, high=MAX_LEVELS)
        kernel_size = check_int("kernel_size", kernel_size, high=MAX_KERNEL)
        convs_per_level = check_int("convs_per_level", convs_per_level, high=MAX_REPEATS)
        self.dropout = check_dropout(dropout)
        if kernel_size % 2 == 0:
            raise NanoscopyError(f"kernel_size must be odd, as CSBDeep requires, not {kernel_size}.")
        if residual is None:
            residual = in_channels == out_channels
        if residual not in (True, False):
            raise NanoscopyError(f"residual must be True, False or None (automatic), not {residual!r}.")
        if residual and in_channels != out_channels:
            raise NanoscopyError(
                f"A residual CARE U-Net adds its input to its output, so in_channels ({in_channels}) "
                f"and out_channels ({out_channels}) must match; pass residual=False otherwise."
            )
        self.residual = bool(residual)

        self.convs = nn.ModuleDict()
        channels = in_channels

        def add(name: str, filters: int) -> str:
            nonlocal channels
            self.convs[name] = CAREConv(channels, filters, kernel_size, self.dropout)
            channels = filters
            return name

        self.down_levels = [
            [add(f"down_level_{n}_no_{i}", base_filters * 2**n) for i in range(convs_per_level)]
            for n in range(depth)
        ]
        skip_channels = [base_filters * 2**n for n in range(depth)]
        # CSBDeep numbers the last middle conv with convs_per_level, skipping one index.
        self.middle = [add(f"middle_{i}", base_filters * 2**depth) for i in range(convs_per_level - 1)]
        self.middle.append(add(f"middle_{convs_per_level}", base_filters * 2 ** max(0, depth - 1)))
        self.up_levels = []
        for n in reversed(range(depth)):
            channels += skip_channels[n]
            names = [add(f"up_level_{n}_no_{i}", base_filters * 2**n) for i in range(convs_per_level - 1)]
            names.append(add(f"up_level_{n}_no_{convs_per_level}", base_filters * 2 ** max(0, n - 1)))
            self.up_levels.append(names)
        self.final = nn.Conv2d(channels, out_channels, kernel_size=1)

        self.size_multiple = 2**depth
        # Convs of radius k//2 at stride s: per level convs_per_level down and up, the middle
        # ones at stride 2**depth; pooling and upsampling reach s each.
        conv_reach = (kernel_size // 2) * convs_per_level * (3 * 2**depth - 2)
        self.receptive_radius = conv_reach + 2**depth - 1
        self.output_activation = "linear"
        self.global_context = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = x
        skips = []
        for names in self.down_levels:
            for name in names:
                features = self.convs[name](features)
            skips.append(features)
            features = F.max_pool2d(features, 2)
        for name in self.middle:
            features = self.convs[name](features)
        for names, skip in zip(self.up_levels, reversed(skips)):
            features = torch.cat([F.interpolate(features, scale_factor=2, mode="nearest"), skip], dim=1)
            for name in names:
                features = self.convs[name](features)
        out = self.final(features)
        return out + x if self.residual else out

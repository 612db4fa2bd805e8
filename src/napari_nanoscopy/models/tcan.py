"""TCAN generator (Huang et al. 2023, PhotoniX): a residual U-Net branch and a DFCAN
branch (Qiao et al. 2021) fed by one conv block, summed, then another conv block.

The Fourier channel attention rescales channels by image-wide statistics (FFT + global
average pooling), so every output pixel depends a little on the whole input:
``global_context`` is True and ``receptive_radius`` bounds only the local (convolutional)
reach, i.e. the reach with the attention weights held fixed.
"""

import torch
from torch import nn

from ..limits import check_int
from .blocks import LEAKY_SLOPE, MAX_REPEATS, MAX_WIDTH, check_dropout, conv3x3, conv_lrelu
from .wang import ResidualUNet

# DFCAN: exponent on the spectrum magnitude (boosts high frequencies) and channel reduction.
SPECTRUM_GAMMA = 0.8
ATTENTION_REDUCTION = 16


class FourierChannelAttention(nn.Module):
    """x * sigmoid(conv1x1(ReLU(conv1x1(GAP(ReLU(conv3x3(fftshift(|FFT2(x)| ** 0.8))))))))."""

    def __init__(self, channels: int):
        super().__init__()
        reduced = max(1, channels // ATTENTION_REDUCTION)
        self.gate = nn.Sequential(
            conv3x3(channels, channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(reduced, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # At least float32: half-precision FFTs only accept power-of-two sizes.
        magnitude = torch.fft.fft2(x.to(torch.promote_types(x.dtype, torch.float32))).abs()
        spectrum = torch.fft.fftshift(torch.pow(magnitude + 1e-8, SPECTRUM_GAMMA), dim=(-2, -1))
        return x * self.gate(spectrum.to(x.dtype))


class FCAB(nn.Module):
    """Fourier channel attention block: y + attention(GELU(conv(GELU(conv(y)))))."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels),
            nn.GELU(),
            conv3x3(channels, channels),
            nn.GELU(),
            FourierChannelAttention(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """RG(y) = y + FCAB(...FCAB(y)); optional dropout ends the branch before the skip."""

    def __init__(self, channels: int, n_fcab: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(*(FCAB(channels) for _ in range(n_fcab)), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DFCAN(nn.Module):
    """DFCAN branch as TCAN uses it: conv + GELU, residual groups, conv + GELU.

    DFCAN's final upsampling to the target size is the identity here, because the input
    and target images share one pixel size (the Restorer resamples beforehand).
    """

    def __init__(
        self, in_channels: int, out_channels: int, filters: int, n_groups: int, n_fcab: int, dropout: float
    ):
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(in_channels, filters),
            nn.GELU(),
            *(ResidualGroup(filters, n_fcab, dropout) for _ in range(n_groups)),
            conv3x3(filters, out_channels),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TCANGenerator(nn.Module):
    """G(x) = LReLU[Conv(U-Net(f) + DFCAN(f))] with f = LReLU[Conv(x)] (TCAN Fig. 1a, eq. 1).

    The first conv block maps the input to ``base_filters`` channels, which both branches
    take; each branch ends in ``out_channels`` channels (the U-Net's last conv maps its
    ``base_filters`` channels to the image), and the last conv block maps their sum to the
    output.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_filters: int = 32,
        depth: int = 4,
        dfcan_filters: int = 64,
        n_groups: int = 5,
        n_fcab: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        self.out_channels = check_int("out_channels", out_channels, high=MAX_WIDTH)
        base_filters = check_int("base_filters", base_filters, high=MAX_WIDTH)
        dfcan_filters = check_int("dfcan_filters", dfcan_filters, high=MAX_WIDTH)
        n_groups = check_int("n_groups", n_groups, high=MAX_REPEATS)
        n_fcab = check_int("n_fcab", n_fcab, high=MAX_REPEATS)
        self.dropout = check_dropout(dropout)

        self.stem = nn.Sequential(*conv_lrelu(in_channels, base_filters))
        self.unet = ResidualUNet(base_filters, out_channels, base_filters, depth, self.dropout)
        self.dfcan = DFCAN(base_filters, out_channels, dfcan_filters, n_groups, n_fcab, self.dropout)
        self.head = nn.Sequential(conv3x3(out_channels, out_channels), nn.LeakyReLU(LEAKY_SLOPE))

        self.size_multiple = self.unet.size_multiple
        # DFCAN: first and last conv reach 1 each, every FCAB two 3x3 convs; stem and head 1 each.
        dfcan_radius = 2 + 2 * n_groups * n_fcab
        self.receptive_radius = 2 + max(self.unet.receptive_radius, dfcan_radius)
        self.output_activation = "linear"
        self.global_context = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stem(x)
        return self.head(self.unet(features) + self.dfcan(features))

"""Networks of Wang et al. 2019 (Nat. Methods, confocal-to-STED): the residual U-Net
generator (also the U-Net branch of TCAN) and the image-level classifier discriminator
(also TCAN's, with three fully connected layers instead of two)."""

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NanoscopyError
from ..limits import check_int
from .blocks import LEAKY_SLOPE, MAX_LEVELS, MAX_REPEATS, MAX_WIDTH, check_dropout, conv3x3, conv_lrelu


class ResidualDownBlock(nn.Module):
    """d_k = d_{k-1} + LReLU[Conv(LReLU[Conv(LReLU[Conv(d_{k-1})])])].

    The input is zero-padded along channels so it can be added to the wider output.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.convs = nn.Sequential(
            *conv_lrelu(in_channels, out_channels),
            *conv_lrelu(out_channels, out_channels),
            *conv_lrelu(out_channels, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x) + F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class ResidualUNet(nn.Module):
    """Residual U-Net of Wang et al. 2019 (Nat. Methods), the U-Net branch of TCAN.

    ``depth`` residual down blocks (three conv blocks each, channels ``base_filters * 2**k``)
    each followed by 2x2 average pooling; one conv block at the bottom doubling the width;
    ``depth`` up blocks, each nearest-neighbour upsampling its input, concatenating the
    matching down-block output first and applying three conv blocks; a last conv maps the
    ``base_filters`` channels to the output (linear). Dropout, when asked for, ends every up
    block (the decoder), where pix2pix also puts it.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        base_filters: int = 32,
        depth: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        self.out_channels = check_int("out_channels", out_channels, high=MAX_WIDTH)
        base_filters = check_int("base_filters", base_filters, high=MAX_WIDTH)
        depth = check_int("depth", depth, high=MAX_LEVELS)
        self.dropout = check_dropout(dropout)
        if base_filters < in_channels:
            raise NanoscopyError(
                f"base_filters ({base_filters}) must be at least in_channels ({in_channels}), "
                "because each residual block zero-pads its input to its own width."
            )
        widths = [base_filters * 2**level for level in range(depth)]

        self.down = nn.ModuleList(
            ResidualDownBlock(prev, width) for prev, width in zip([in_channels, *widths], widths)
        )
        self.bottom = nn.Sequential(*conv_lrelu(widths[-1], 2 * widths[-1]))
        self.up = nn.ModuleList(
            nn.Sequential(
                *conv_lrelu(3 * width, width),  # skip (width) + upsampled coarser level (2 * width)
                *conv_lrelu(width, width),
                *conv_lrelu(width, width),
                nn.Dropout(self.dropout),
            )
            for width in reversed(widths)
        )
        self.head = conv3x3(base_filters, out_channels)

        self.size_multiple = 2**depth
        # Per level of stride s: 3 + 3 convs of radius s, pooling and upsampling s each;
        # the bottom conv reaches 2**depth and the head conv 1.
        self.receptive_radius = 8 * 2**depth - 6
        self.output_activation = "linear"
        self.global_context = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottom(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = block(torch.cat([skip, F.interpolate(x, scale_factor=2, mode="nearest")], dim=1))
        return self.head(x)


class ClassifierDiscriminator(nn.Module):
    """Image-level discriminator of Wang et al. 2019 and TCAN; returns one logit per image.

    A first conv block, ``n_blocks`` blocks z_k = LReLU[Conv(LReLU[Conv(z_{k-1})])] (the
    first conv of each doubles the width) with 2x2 average pooling between blocks, global
    average pooling, and ``n_fc`` fully connected layers halving the width down to one
    logit. The sigmoid of the papers is left to the loss (BCE with logits).
    """

    def __init__(self, in_channels: int = 1, ndf: int = 32, n_blocks: int = 5, n_fc: int = 2):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        ndf = check_int("ndf", ndf, high=MAX_WIDTH)
        n_blocks = check_int("n_blocks", n_blocks, high=MAX_REPEATS)
        n_fc = check_int("n_fc", n_fc, high=MAX_LEVELS)

        layers = conv_lrelu(in_channels, ndf)
        width = ndf
        for block in range(n_blocks):
            if block > 0:
                layers.append(nn.AvgPool2d(2))
            layers += [*conv_lrelu(width, 2 * width), *conv_lrelu(2 * width, 2 * width)]
            width *= 2
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)

        if width < 2 ** (n_fc - 1):
            raise NanoscopyError(
                f"n_fc={n_fc} fully connected layers halve the {width} features below one; "
                "use fewer layers or a wider discriminator (ndf, n_blocks)."
            )
        fc = []
        for _ in range(n_fc - 1):
            fc += [nn.Linear(width, width // 2), nn.LeakyReLU(LEAKY_SLOPE)]
            width //= 2
        fc.append(nn.Linear(width, 1))
        self.classifier = nn.Sequential(*fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))

"""TA-GAN networks (Bouchard et al. 2023, Nat. Mach. Intell.), laid out like the public
pix2pix-based code so that its checkpoints (plain state dicts) load with strict=True.

- ``ResnetGenerator``: the generator of every TA-GAN model, and with 6 blocks the
  fixed-cell task network (ResNet-6).
- ``UnetGenerator``: the recursive pix2pix U-Net; with 7 downsamplings the U-Net-128 task
  network of TA-GAN-Live (U-Net-Live).
- ``PatchDiscriminator``: the conditional 70x70 PatchGAN.
"""

import torch
from torch import nn

from ..errors import NanoscopyError
from ..limits import check_int
from .blocks import MAX_LEVELS, MAX_REPEATS, MAX_WIDTH, check_dropout


class ResnetBlock(nn.Module):
    """[reflpad 1, conv 3x3, BN, ReLU, Dropout, reflpad 1, conv 3x3, BN] + identity.

    The Dropout slot exists even at p=0 so that checkpoint indices (conv_block.6/.7) stay put.
    """

    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """pix2pix ResNet generator with BatchNorm, two stride-2 stages and a tanh output.

    Layout of ``model`` (indices are the checkpoint's): 0 reflpad 3, 1 conv 7x7, 2 BN, 3 ReLU,
    4-9 two stride-2 convs with BN+ReLU, 10.. the residual blocks, then two transposed convs
    with BN+ReLU, reflpad 3, conv 7x7 (with bias) and tanh.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_blocks: int = 9,
        dropout: float = 0.5,
    ):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        self.out_channels = check_int("out_channels", out_channels, high=MAX_WIDTH)
        ngf = check_int("ngf", ngf, high=MAX_WIDTH)
        n_blocks = check_int("n_blocks", n_blocks, low=0, high=MAX_REPEATS)
        self.dropout = check_dropout(dropout)

        layers = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
        ]
        for width in (ngf, 2 * ngf):
            layers += [
                nn.Conv2d(width, 2 * width, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(2 * width),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(4 * ngf, self.dropout) for _ in range(n_blocks)]
        for width in (4 * ngf, 2 * ngf):
            layers += [
                nn.ConvTranspose2d(
                    width, width // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=False
                ),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, kernel_size=7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

        self.size_multiple = 4
        # 7x7 convs reach 3 each; the stride-2 convs and transposed convs reach 1 and 2;
        # each residual block has two 3x3 convs at stride 4.
        self.receptive_radius = 12 + 8 * n_blocks
        self.output_activation = "tanh"
        self.global_context = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetLevel(nn.Module):
    """One level of the recursive pix2pix U-Net: down conv, the deeper levels, up conv.

    Non-outermost levels return cat([skip, up]) where the skip is the leaky-ReLU'd input:
    pix2pix applies that LeakyReLU in place, so its checkpoints were trained with it.
    """

    def __init__(
        self,
        outer_channels: int,
        inner_channels: int,
        input_channels: int | None = None,
        inner: "UnetLevel | None" = None,
        outermost: bool = False,
        dropout: float | None = None,
    ):
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(
            input_channels or outer_channels, inner_channels, kernel_size=4, stride=2, padding=1, bias=False
        )
        if outermost:
            up = nn.ConvTranspose2d(2 * inner_channels, outer_channels, kernel_size=4, stride=2, padding=1)
            layers = [down, inner, nn.ReLU(), up, nn.Tanh()]
        elif inner is None:
            up = nn.ConvTranspose2d(
                inner_channels, outer_channels, kernel_size=4, stride=2, padding=1, bias=False
            )
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), up, nn.BatchNorm2d(outer_channels)]
        else:
            up = nn.ConvTranspose2d(
                2 * inner_channels, outer_channels, kernel_size=4, stride=2, padding=1, bias=False
            )
            layers = [
                nn.LeakyReLU(0.2),
                down,
                nn.BatchNorm2d(inner_channels),
                inner,
                nn.ReLU(),
                up,
                nn.BatchNorm2d(outer_channels),
            ]
            if dropout is not None:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        skip = self.model[0](x)
        return torch.cat([skip, self.model[1:](skip)], dim=1)


class UnetGenerator(nn.Module):
    """pix2pix U-Net with ``n_down`` stride-2 4x4 convs (LeakyReLU 0.2 down, ReLU up,
    BatchNorm, tanh output). Widths ngf, 2ngf, 4ngf, then 8ngf for all deeper levels.

    As in pix2pix, dropout sits only in the 8ngf levels between the 4th and the innermost
    (n_down - 5 of them), so it needs n_down >= 6.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        ngf: int = 64,
        n_down: int = 7,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        self.out_channels = check_int("out_channels", out_channels, high=MAX_WIDTH)
        ngf = check_int("ngf", ngf, high=MAX_WIDTH)
        n_down = check_int("n_down", n_down, low=2, high=MAX_LEVELS)
        self.dropout = check_dropout(dropout)
        if self.dropout > 0 and n_down < 6:
            raise NanoscopyError(
                f"The pix2pix U-Net only has dropout in its middle levels, which exist from "
                f"n_down=6 on; with n_down={n_down} use dropout=0 or a deeper U-Net."
            )

        widths = [ngf * 2 ** min(level, 3) for level in range(n_down)]
        level = UnetLevel(widths[-2], widths[-1])
        for depth in range(n_down - 2, 0, -1):
            level = UnetLevel(
                widths[depth - 1],
                widths[depth],
                inner=level,
                dropout=self.dropout if depth >= 4 else None,
            )
        self.model = UnetLevel(
            out_channels, widths[0], input_channels=in_channels, inner=level, outermost=True
        )

        self.size_multiple = 2**n_down
        # At a level of input stride s the 4x4 stride-2 conv reaches [-s, 2s] and the
        # transposed conv [-2s, s]: 3s either way, summed over all levels.
        self.receptive_radius = 3 * (2**n_down - 1)
        self.output_activation = "tanh"
        self.global_context = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """pix2pix 70x70 PatchGAN (for n_layers 3): conv 4x4 stride 2 + LeakyReLU 0.2, then
    stride-2 convs with BN doubling the width (at most 8ndf), one stride-1 conv with BN and a
    stride-1 conv to one logit per patch. Conditional in TA-GAN: its input is the channel
    concatenation of the generator input and the real or generated image."""

    def __init__(self, in_channels: int = 2, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        ndf = check_int("ndf", ndf, high=MAX_WIDTH)
        n_layers = check_int("n_layers", n_layers, high=MAX_LEVELS)

        layers = [nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        width = ndf
        for layer in range(1, n_layers + 1):
            next_width = ndf * min(2**layer, 8)
            stride = 2 if layer < n_layers else 1
            layers += [
                nn.Conv2d(width, next_width, kernel_size=4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(next_width),
                nn.LeakyReLU(0.2, True),
            ]
            width = next_width
        layers.append(nn.Conv2d(width, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

"""CAREamics' U-Net (``careamics.models.unet.UNet``), 2D, for the state dicts CAREamics exports.

CAREamics (the PyTorch successor of CSBDeep; CARE, Noise2Void, N2V2) saves
``model.state_dict()`` of its UNet in the bioimage.io packages it exports, and names the
architecture by its keyword arguments (``conv_dims``, ``num_classes``, ``in_channels``,
``depth``, ``num_channels_init``, ``use_batch_norm``, ``residual``, ``final_activation``,
``n2v2``, ``independent_channels``...). This module rebuilds that network from the arguments
alone, with the same module names, so the state dict loads one to one without CAREamics:

- ``encoder.encoder_blocks``: per level a conv block (index ``2n``) then a pooling
  (``2n + 1``, no weights); level ``n`` has ``num_channels_init * 2**n * groups`` channels.
- ``decoder.bottleneck``: a conv block at the lowest level with twice the channels in between.
- ``decoder.decoder_blocks``: per level a bilinear upsampling (no weights) then a conv block
  fed with the upsampled features interleaved with the skip, group by group (N2V2: no skip at
  the last level, and max-blur pooling instead of max pooling).
- ``final_conv``: 1x1 conv to ``num_classes``; the input is added when ``residual``, then the
  final activation.

A conv block is ``conv1``/``batch_norm1``/ReLU/``conv2``/``batch_norm2``/ReLU with 3x3 'same'
convs; both batch norms exist (and are saved) even when ``use_batch_norm`` is off.
``independent_channels`` makes every conv grouped by input channel (``groups = in_channels``).
Dropout acts only in training, so prediction (this module) leaves it out, as CAREamics'
prediction does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import NanoscopyError
from ..limits import check_int
from .blocks import MAX_LEVELS, MAX_WIDTH, check_dropout

ACTIVATIONS = {"None": nn.Identity, "Sigmoid": nn.Sigmoid, "Softmax": lambda: nn.Softmax(dim=1),
               "Tanh": nn.Tanh, "ReLU": nn.ReLU, "LeakyReLU": nn.LeakyReLU, "ELU": nn.ELU}


class ConvBlock(nn.Module):
    """Two 3x3 convs (``conv1`` to ``out * multiplier`` channels, ``conv2`` to ``out``), each
    followed by its batch norm (when used) and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, multiplier: int, groups: int, use_batch_norm: bool):
        super().__init__()
        middle = out_channels * multiplier
        self.use_batch_norm = use_batch_norm
        self.conv1 = nn.Conv2d(in_channels, middle, 3, padding=1, groups=groups)
        self.conv2 = nn.Conv2d(middle, out_channels, 3, padding=1, groups=groups)
        self.batch_norm1 = nn.BatchNorm2d(middle)
        self.batch_norm2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = F.relu(self.batch_norm1(x) if self.use_batch_norm else x)
        x = self.conv2(x)
        return F.relu(self.batch_norm2(x) if self.use_batch_norm else x)


class MaxBlurPool(nn.Module):
    """N2V2's pooling: 2x2 max pooling at stride 1, then a [1 2 1] x [1 2 1] / 16 blur at stride 2."""

    def __init__(self):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", torch.outer(taps, taps) / 16, persistent=False)  # not in CAREamics' state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, kernel_size=2, stride=1)
        kernel = self.kernel.to(x.dtype).expand(x.shape[1], 1, 3, 3)
        return F.conv2d(x, kernel, padding=1, stride=2, groups=x.shape[1])


class Upsample(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Encoder(nn.Module):
    def __init__(self, in_channels: int, depth: int, width: int, groups: int, use_batch_norm: bool, n2v2: bool):
        super().__init__()
        blocks: list[nn.Module] = []
        for n in range(depth):
            out = width * 2**n * groups
            blocks.append(ConvBlock(in_channels if n == 0 else out // 2, out, 1, groups, use_batch_norm))
            blocks.append(MaxBlurPool() if n2v2 else nn.MaxPool2d(2))
        self.encoder_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for module in self.encoder_blocks:
            x = module(x)
            if isinstance(module, ConvBlock):
                skips.append(x)
        return x, skips


class Decoder(nn.Module):
    def __init__(self, depth: int, width: int, groups: int, use_batch_norm: bool, n2v2: bool):
        super().__init__()
        self.groups, self.n2v2 = groups, n2v2
        lowest = width * groups * 2 ** (depth - 1)
        self.bottleneck = ConvBlock(lowest, lowest, 2, groups, use_batch_norm)
        blocks: list[nn.Module] = []
        for n in range(depth):
            channels = width * 2 ** (depth - n - 1) * groups
            last = n == depth - 1
            skipped = n2v2 and last  # N2V2 drops the skip of the full-resolution level
            blocks.append(Upsample())
            blocks.append(ConvBlock(channels if skipped else 2 * channels, channels if last else channels // 2,
                                    1 if last else 2, groups, use_batch_norm))
        self.decoder_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.bottleneck(x)
        for index, module in enumerate(self.decoder_blocks):
            x = module(x)
            level = index // 2
            if isinstance(module, Upsample) and not (self.n2v2 and level == len(skips) - 1):
                x = self.interleave(x, skips[-1 - level])
        return x

    def interleave(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Channels of ``a`` and ``b`` concatenated group by group (a's group 0, b's group 0, ...)."""
        parts = [t for pair in zip(a.chunk(self.groups, dim=1), b.chunk(self.groups, dim=1)) for t in pair]
        return torch.cat(parts, dim=1)


class CAREamicsUNet(nn.Module):
    """CAREamics' UNet with its keyword arguments and defaults (2D only)."""

    def __init__(self, conv_dims: int = 2, num_classes: int = 1, in_channels: int = 1, depth: int = 3,
                 num_channels_init: int = 64, use_batch_norm: bool = True, dropout: float = 0.0,
                 pool_kernel: int = 2, residual: bool = False, final_activation: str = "None",
                 n2v2: bool = False, independent_channels: bool = True):
        super().__init__()
        if conv_dims != 2:
            raise NanoscopyError(f"conv_dims is {conv_dims!r}; napari-nanoscopy restores 2D images, so only 2D "
                                 "CAREamics U-Nets (conv_dims 2) load.")
        if pool_kernel != 2:
            raise NanoscopyError(f"pool_kernel must be 2, as CAREamics' upsampling assumes, not {pool_kernel!r}.")
        if final_activation not in ACTIVATIONS:
            raise NanoscopyError(f"final_activation {final_activation!r} is not one of CAREamics' "
                                 f"({', '.join(ACTIVATIONS)}).")
        for name, flag in (("use_batch_norm", use_batch_norm), ("residual", residual), ("n2v2", n2v2),
                           ("independent_channels", independent_channels)):
            if not isinstance(flag, bool):
                raise NanoscopyError(f"{name} must be true or false, not {flag!r}.")
        self.in_channels = in_channels = check_int("in_channels", in_channels, high=MAX_WIDTH)
        self.out_channels = num_classes = check_int("num_classes", num_classes, high=MAX_WIDTH)
        depth = check_int("depth", depth, high=MAX_LEVELS)
        width = check_int("num_channels_init", num_channels_init, high=MAX_WIDTH)
        check_dropout(dropout)
        groups = in_channels if independent_channels else 1
        if num_classes % groups:
            raise NanoscopyError(f"With independent_channels, num_classes ({num_classes}) must be a multiple of "
                                 f"in_channels ({in_channels}).")
        if residual and num_classes != in_channels:
            raise NanoscopyError(f"A residual U-Net adds its input to its output, so num_classes ({num_classes}) "
                                 f"and in_channels ({in_channels}) must match.")
        self.residual = residual
        self.encoder = Encoder(in_channels, depth, width, groups, use_batch_norm, n2v2)
        self.decoder = Decoder(depth, width, groups, use_batch_norm, n2v2)
        self.final_conv = nn.Conv2d(width * groups, num_classes, kernel_size=1, groups=groups)
        self.final_activation = ACTIVATIONS[final_activation]()

        self.size_multiple = 2**depth
        # 3x3 convs, two per block, at each level's stride down and up (2 * 2**n each) and in the
        # bottleneck (2 * 2**depth); each pooling (blur included) and upsampling adds at most 2 * 2**n.
        scale = 2**depth
        self.receptive_radius = 2 * (scale - 1) * 2 + 2 * scale + 2 * (scale - 1) * 2
        self.output_activation = "linear"
        self.dropout = 0.0
        self.global_context = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, skips = self.encoder(x)
        out = self.final_conv(self.decoder(features, skips))
        if self.residual:
            out = out + x
        return self.final_activation(out)

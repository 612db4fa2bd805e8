"""Pieces shared by the model families: size bounds, the dropout check and the papers' conv block."""

from numbers import Real

from torch import nn

from ..errors import NanoscopyError

# Wang et al. 2019 and TCAN: leaky ReLU slope of every convolutional block.
LEAKY_SLOPE = 0.1

# Upper bounds of the size arguments, far above the papers' (ngf 64, 9 blocks, depth 4, 7 levels),
# so that a malformed model card cannot make building a network loop or allocate gigabytes; the
# total size is bounded too (models.MAX_PARAMETERS).
MAX_WIDTH = 1024  # channels in or out, and of the first level (ngf, base_filters, ...)
MAX_REPEATS = 64  # residual blocks, groups, convolutions per level
MAX_LEVELS = 10  # down-sampling levels of a U-Net or a discriminator
MAX_KERNEL = 15


def check_dropout(value) -> float:
    """Return ``value`` as a float, or raise NanoscopyError if it is not a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value < 1.0:
        raise NanoscopyError(
            f"dropout must be a probability of at least 0 and below 1 (0 disables it), not {value!r}."
        )
    return float(value)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 conv with bias and zero padding that keeps the image size."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def conv_lrelu(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Wang et al.'s and TCAN's convolutional block: x_o = LReLU[Conv(x_i)], slope 0.1."""
    return [conv3x3(in_channels, out_channels), nn.LeakyReLU(LEAKY_SLOPE)]

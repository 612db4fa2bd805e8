"""Pieces shared by the model families: argument checks and the papers' conv block."""

from numbers import Integral, Real

from torch import nn

from ..errors import NanoscopyError

# Wang et al. 2019 and TCAN: leaky ReLU slope of every convolutional block.
LEAKY_SLOPE = 0.1


def check_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise NanoscopyError if it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise NanoscopyError(f"{name} must be an integer of at least {minimum}, not {value!r}.")
    return int(value)


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

"""PyTorch model definitions of the supported families, built by name.

Every generator and task network carries plain attributes the Restorer relies on:
``in_channels``, ``out_channels``, ``size_multiple`` (height and width must be divisible by
it), ``receptive_radius`` (in eval mode an output pixel depends only on input pixels within
this distance; with ``global_context`` True this holds for the local computation only,
image-wide attention statistics aside), ``output_activation`` ("tanh" or "linear"),
``dropout`` (probability, 0 = none; always in ``nn.Dropout`` modules) and ``global_context``.

Width and depth are keyword arguments, so tiny bundled variants and paper-size models come
from one definition; omitted arguments take the paper's values (``paper_defaults``).
"""

import inspect

import torch
from torch import nn

from ..errors import NanoscopyError
from .fcn_unet import FCNUNet
from .l2l import CAREUNet
from .tagan import PatchDiscriminator, ResnetGenerator, UnetGenerator
from .tcan import TCANGenerator
from .wang import ClassifierDiscriminator, ResidualUNet

FAMILIES = ("tagan", "tagan-live", "tcan", "wang", "l2l")
# The largest network built (1 GB of float32 weights; the papers' largest, U-Net-128, has 54
# million): beyond it a model card or checkpoint is malformed, not a model to run on a laptop.
MAX_PARAMETERS = 250_000_000
TASK_NETWORKS = ("resnet6", "unet128")
# Families of networks that only segment (no restoration, not trained here): the generator slot
# of their card holds the segmenting network, and their card has a ``segmenter`` section.
SEGMENTER_FAMILIES = ("fcn-unet",)

_GENERATORS = {
    "tagan": (ResnetGenerator, dict(in_channels=1, out_channels=1, ngf=64, n_blocks=9, dropout=0.5)),
    # Live input: confocal, STED patch (-1 elsewhere), patch mask (+-1).
    "tagan-live": (ResnetGenerator, dict(in_channels=3, out_channels=1, ngf=64, n_blocks=9, dropout=0.5)),
    "tcan": (
        TCANGenerator,
        dict(
            in_channels=1,
            out_channels=1,
            base_filters=32,
            depth=4,
            dfcan_filters=64,
            n_groups=5,
            n_fcab=2,
            dropout=0.0,
        ),
    ),
    "wang": (ResidualUNet, dict(in_channels=1, out_channels=1, base_filters=32, depth=4, dropout=0.0)),
    "l2l": (
        CAREUNet,
        dict(
            in_channels=1,
            out_channels=1,
            base_filters=32,
            depth=2,
            kernel_size=5,
            convs_per_level=2,
            dropout=0.0,
        ),
    ),
}

_SEGMENTERS = {
    # Lavoie-Cardinal et al. 2020: 2**4 = 16 filters, depth 4, two output channels.
    "fcn-unet": (FCNUNet, dict(in_channels=1, out_channels=2, number_filter=4, depth=4)),
}

# TA-GAN's discriminator is conditional: it sees (generator input, image) stacked on channels.
_DISCRIMINATORS = {
    "tagan": (PatchDiscriminator, dict(in_channels=1 + 1, ndf=64, n_layers=3)),
    "tagan-live": (PatchDiscriminator, dict(in_channels=3 + 1, ndf=64, n_layers=3)),
    "tcan": (ClassifierDiscriminator, dict(in_channels=1, ndf=32, n_blocks=5, n_fc=3)),
    "wang": (ClassifierDiscriminator, dict(in_channels=1, ndf=32, n_blocks=5, n_fc=2)),
}

_TASK_NETWORKS = {
    "resnet6": (ResnetGenerator, dict(in_channels=1, out_channels=2, ngf=64, n_blocks=6, dropout=0.0)),
    "unet128": (UnetGenerator, dict(in_channels=1, out_channels=2, ngf=64, n_down=7, dropout=0.0)),
}


def paper_defaults(family: str) -> dict:
    """Generator keyword arguments of ``family`` at the size its paper uses."""
    _, defaults = _lookup(_GENERATORS, family, "model family", FAMILIES)
    return dict(defaults)


def task_network_defaults(kind: str) -> dict:
    """Keyword arguments of the task network ``kind`` at the size its paper uses."""
    _, defaults = _lookup(_TASK_NETWORKS, kind, "task network", TASK_NETWORKS)
    return dict(defaults)


def build_generator(family: str, **kwargs) -> nn.Module:
    """The generator of ``family``; ``kwargs`` override the paper defaults."""
    cls, defaults = _lookup(_GENERATORS, family, "model family", FAMILIES)
    return _build(cls, defaults, kwargs, f"The {family} generator")


def build_segmenter(family: str, **kwargs) -> nn.Module:
    """The network of a segmenter-only ``family``; ``kwargs`` override the published defaults."""
    cls, defaults = _lookup(_SEGMENTERS, family, "segmenter family", SEGMENTER_FAMILIES)
    return _build(cls, defaults, kwargs, f"The {family} segmenter")


def build_discriminator(family: str, **kwargs) -> nn.Module:
    """The discriminator ``family`` trains against; ``kwargs`` override the paper defaults."""
    if family == "l2l":
        raise NanoscopyError(
            "The l2l family trains without a discriminator (a CARE U-Net with an L1 or "
            "MS-SSIM loss); only tagan, tagan-live, tcan and wang have one."
        )
    cls, defaults = _lookup(_DISCRIMINATORS, family, "model family", FAMILIES)
    return _build(cls, defaults, kwargs, f"The {family} discriminator")


def build_task_network(kind: str, **kwargs) -> nn.Module:
    """A TA-GAN task network: "resnet6" (fixed cells) or "unet128" (U-Net-Live)."""
    cls, defaults = _lookup(_TASK_NETWORKS, kind, "task network", TASK_NETWORKS)
    return _build(cls, defaults, kwargs, f"The {kind} task network")


def _lookup(table: dict, name: str, what: str, choices: tuple) -> tuple:
    if not isinstance(name, str) or name not in table:
        raise NanoscopyError(f"Unknown {what} {name!r}; choose one of: {', '.join(choices)}.")
    return table[name]


def check_arguments(family: str, generator=None, discriminator=None) -> None:
    """Refuse, before any work, arguments that ``family``'s generator or discriminator does not take,
    values its builder refuses, or sizes beyond :data:`MAX_PARAMETERS` (nothing is allocated)."""
    if generator:
        _checked(*_lookup(_GENERATORS, family, "model family", FAMILIES), dict(generator), f"The {family} generator")
    if discriminator and family in _DISCRIMINATORS:
        _checked(*_DISCRIMINATORS[family], dict(discriminator), f"The {family} discriminator")


def _build(cls: type, defaults: dict, kwargs: dict, what: str) -> nn.Module:
    return cls(**_checked(cls, defaults, kwargs, what))


def _checked(cls: type, defaults: dict, kwargs: dict, what: str) -> dict:
    """The builder's arguments: ``kwargs`` over ``defaults``, checked by building on the meta device."""
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise NanoscopyError(
            f"{what} has no argument {', '.join(map(repr, unknown))}; "
            f"its arguments are: {', '.join(accepted)}."
        )
    arguments = {**defaults, **kwargs}
    with torch.device("meta"):  # the architecture alone, without allocating or initialising weights
        size = sum(p.numel() for p in cls(**arguments).parameters())
    if size > MAX_PARAMETERS:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise NanoscopyError(
            f"{what} ({given}) would have {size / 1e6:,.0f} million parameters, more than the "
            f"{MAX_PARAMETERS / 1e6:,.0f} million this builds; give it smaller sizes."
        )
    return arguments

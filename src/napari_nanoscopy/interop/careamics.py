"""Architectures of bioimage.io ``pytorch_state_dict`` weights that napari-nanoscopy rebuilds itself.

A ``pytorch_state_dict`` weights entry names its architecture as a Python callable and its
keyword arguments. Running that callable would run the package's (or a library's) code, so
napari-nanoscopy reads the name and the arguments as data only: an architecture it knows is
rebuilt from the project's own implementation and the state dict is loaded into it; any other
is refused with the list of those that load. Known now: CAREamics' U-Net
(``careamics.models.unet`` ``UNet``, which CAREamics' ``export_to_bmz`` writes with its
``UNetConfig`` as kwargs), rebuilt by :class:`~napari_nanoscopy.models.careamics_unet.CAREamicsUNet`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from ..errors import NanoscopyError
from ..models import MAX_PARAMETERS
from ..models.careamics_unet import CAREamicsUNet
from ..packages import load_state

# The modules CAREamics' UNet is imported from (export_to_bmz names the first).
_CAREAMICS_MODULES = ("careamics.models.unet", "careamics.models.unet.unet")
KNOWN_ARCHITECTURES = "CAREamics' U-Net (careamics.models.unet UNet)"
# CAREamics' UNetConfig dumps its discriminator field with the kwargs; it is no argument.
_CONFIG_ONLY_KWARGS = {"architecture": "UNet"}


def architecture_name(entry: Any) -> str:
    """The architecture of a pytorch_state_dict weights entry, as 'module callable' or 'file:callable'."""
    architecture = entry.get("architecture") if isinstance(entry, dict) else None
    if not isinstance(architecture, dict):
        return repr(architecture)[:80]
    if architecture.get("import_from"):
        return f"{architecture['import_from']} {architecture.get('callable')}"[:120]
    return f"{architecture.get('source')}:{architecture.get('callable')}"[:120]


def is_known_architecture(entry: Any) -> bool:
    """True when napari-nanoscopy rebuilds the architecture of this pytorch_state_dict entry."""
    architecture = entry.get("architecture") if isinstance(entry, dict) else None
    return (isinstance(architecture, dict) and architecture.get("import_from") in _CAREAMICS_MODULES
            and architecture.get("callable") == "UNet")


def rebuild(entry: dict, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """The known architecture of ``entry`` built from its kwargs, with ``state`` loaded, in eval mode."""
    kwargs = entry["architecture"].get("kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise NanoscopyError(f"The architecture kwargs of {source} are not a mapping of names to values; "
                             "the package is malformed, export it again with CAREamics.")
    kwargs = dict(kwargs)
    for name, expected in _CONFIG_ONLY_KWARGS.items():
        value = kwargs.pop(name, expected)
        if value != expected:
            raise NanoscopyError(f"The architecture kwargs of {source} name {name} {repr(value)[:40]}, not "
                                 f"{expected!r}; the package is not a CAREamics U-Net, export it again with CAREamics.")
    accepted = list(inspect.signature(CAREamicsUNet).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise NanoscopyError(
            f"The architecture kwargs of {source} include {', '.join(unknown)}, which CAREamics' U-Net as "
            f"napari-nanoscopy knows it does not take ({', '.join(accepted)}); a newer CAREamics may have "
            "changed the network, so the package is not loaded."
        )
    try:
        with torch.device("meta"):  # sizes first: a malformed package must not allocate gigabytes
            size = sum(p.numel() for p in CAREamicsUNet(**kwargs).parameters())
        if size > MAX_PARAMETERS:
            raise NanoscopyError(f"it would have {size / 1e6:,.0f} million parameters, more than the "
                                 f"{MAX_PARAMETERS / 1e6:,.0f} million napari-nanoscopy builds")
        network = CAREamicsUNet(**kwargs)
    except (NanoscopyError, TypeError) as error:
        raise NanoscopyError(f"The CAREamics U-Net of {source} cannot be built ({str(error).rstrip('.')}); "
                             "its architecture kwargs are malformed, export it again with CAREamics.") from None
    load_state(network, state, "CAREamics U-Net", source, described_by="its rdf.yaml (architecture kwargs)",
               remedy="the package is damaged or its kwargs do not describe its weights, export it again with CAREamics")
    return network.eval()

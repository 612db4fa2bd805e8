"""Foreign model formats, each read into a :class:`~napari_nanoscopy.packages.ModelPackage`
(and bioimage.io also written). :mod:`napari_nanoscopy.formats` recognises them and calls these.

- :func:`load_tagan_pth` reads a TA-GAN generator checkpoint (``*_net_G.pth``) from the public code.
- :func:`load_csbdeep` / :func:`import_csbdeep` read a CSBDeep model folder (``config.json`` +
  ``weights_best.h5``) into the ``l2l`` family with h5py; no TensorFlow is needed.
- :func:`export_bmz` writes a model as a bioimage.io model (``rdf.yaml``) and :func:`load_bmz`
  reads one back.

Everything here works offline; ``bioimageio.core`` (the ``bmz`` extra) is needed only to test an
exported package, not to write or read one.
"""

from __future__ import annotations

from .bmz import is_bmz_package, load_bmz
from .csbdeep import import_csbdeep, is_csbdeep_folder, load_csbdeep
from .tagan import load_tagan_pth

__all__ = ["import_csbdeep", "is_csbdeep_folder", "load_csbdeep", "export_bmz", "load_bmz", "is_bmz_package",
           "load_tagan_pth"]


def __getattr__(name):
    # export_bmz takes any model source, so it needs napari_nanoscopy.formats, which needs this
    # package's readers: it is imported when asked for, after them.
    if name == "export_bmz":
        from .bmz_export import export_bmz

        return export_bmz
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

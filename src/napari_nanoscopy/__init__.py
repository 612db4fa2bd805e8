"""napari-nanoscopy: deep-learning restoration and model-assisted live STED for fluorescence nanoscopy.

The public Python API is ``load_model``, ``save_model``, ``restore``, ``Restorer``, ``segment``,
``Segmenter``, ``translate`` and ``NanoscopyError``. They are imported lazily so that napari can read this plugin's manifest
without loading PyTorch.
"""

__version__ = "0.1.0"

_LAZY = {
    "load_model": "formats",
    "save_model": "packages",
    "list_models": "formats",
    "ModelCard": "packages",
    "ModelPackage": "packages",
    "restore": "restore_job",
    "Restorer": "inference",
    "RestorationResult": "inference",
    "segment": "segmentation",
    "Segmenter": "segmentation",
    "SegmentationResult": "segmentation",
    "translate": "translation",
    "NanoscopyError": "errors",
    "Cancelled": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""npe2 sample data, driven by ``sample_data/samples.json``.

Each key of samples.json is served by ``sample_<key>`` (hyphens become underscores), which
this module provides on attribute access, so the manifest only needs one entry per key::

    sample_data:
      - key: twolabel
        display_name: Two labels of one filament network (label2label)
        command: napari-nanoscopy.sample_twolabel

with the command ``napari-nanoscopy.sample_twolabel`` ->
``napari_nanoscopy._widgets._sample_data:sample_twolabel``. ``tests/test_widgets.py``
checks that samples.json and the manifest list the same keys.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import NanoscopyError
from ..io import read_image, read_json_object
from ..samples import SAMPLE_DIR

SAMPLES_FILE = SAMPLE_DIR / "samples.json"
LABEL_ROLES = ("labels", "mask", "segmentation", "task")


def sample_descriptions() -> dict[str, dict[str, Any]]:
    return read_json_object(SAMPLES_FILE, "The sample list samples.json", "fix the file")


def function_name(key: str) -> str:
    return "sample_" + key.replace("-", "_")


def load_sample(key: str) -> list[tuple]:
    """napari layer data for sample ``key``: every layer named, at the sample's pixel size."""
    samples = sample_descriptions()
    if key not in samples:
        raise NanoscopyError(f"There is no sample called {key!r}; known samples: {', '.join(samples)}.")
    sample = samples[key]
    layers = []
    for entry in sample["layers"]:
        image = read_image(SAMPLE_DIR / entry["file"])
        pixel = image.pixel_size_nm or sample.get("pixel_size_nm")
        role = entry.get("role", "")
        layer_type = entry.get("layer_type") or ("labels" if role in LABEL_ROLES else "image")
        data = image.data
        stack_dims = data.ndim - 2 - ("C" in image.axes)
        kwargs: dict[str, Any] = {
            "name": entry.get("name", entry["file"]),
            "metadata": {
                "sample": key,
                "role": role,
                "model": sample.get("model"),
                "pixel_size_nm": pixel,
                "axes": image.axes,
                "source_file": entry["file"],
            },
        }
        if pixel:
            kwargs["scale"] = (1.0,) * stack_dims + (float(pixel), float(pixel))
            kwargs["units"] = ("pixel",) * stack_dims + ("nm", "nm")
        if layer_type == "image":
            kwargs["visible"] = role == "input"
            kwargs["colormap"] = entry.get("colormap", "gray")
            if "C" in image.axes:
                kwargs["channel_axis"] = image.axes.index("C")
                kwargs["name"] = list(image.channel_names or [f"{kwargs['name']} {i}" for i in range(data.shape[image.axes.index('C')])])
        else:
            data = data.astype("int32")
            classes = {int(k): str(v) for k, v in (entry.get("classes") or {}).items()}
            if classes:  # class names show in the status bar, colours as in Restore's segmentation
                from ._results import class_colormap

                top = max(max(classes), int(data.max()))
                kwargs["features"] = {"index": list(range(top + 1)),
                                      "class": ["background"] + [classes.get(k, f"label {k}") for k in range(1, top + 1)]}
                kwargs["colormap"] = class_colormap(top)
                kwargs["metadata"]["classes"] = kwargs["features"]["class"]
            kwargs["opacity"] = 0.6
            kwargs["visible"] = False
        layers.append((data, kwargs, layer_type))
    # the input on top, where it is seen first
    layers.sort(key=lambda layer: layer[1]["metadata"]["role"] == "input")
    return layers


def __getattr__(name: str):
    if name.startswith("sample_"):
        for key in sample_descriptions():
            if function_name(key) == name:
                loader = functools.partial(load_sample, key)
                functools.update_wrapper(loader, load_sample)
                loader.__name__ = name
                return loader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

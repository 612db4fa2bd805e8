"""Result layers of the Restore and Segment widgets: named by role, at the input's geometry, updated on a rerun.

A result layer carries its provenance in ``metadata`` and its role ("restored", "uncertainty",
"segmentation", ...) under :data:`ROLE_KEY`; a rerun of the same input with the same model
updates that layer in place instead of adding another.
"""

from __future__ import annotations

import threading

import napari
import numpy as np

UNCERTAINTY_COLORMAP = "inferno"
# Labels colours per task class (1, 2, ...): distinct on dark and grey backgrounds.
CLASS_COLORS = ("#ff3df2", "#30e0ff", "#ffd400", "#7dff4a", "#ff7a1a", "#b58cff")
ROLE_KEY = "nanoscopy_role"  # metadata key that marks our result layers


def result_name(input_name: str, role: str, model: str | None = None) -> str:
    """The role first: napari's layer list elides long names in the middle, so the results of
    one input must differ in their first word. The model is named only when it is needed to
    tell two models' results of the same input apart (it is always in the metadata)."""
    return f"{role}: {input_name}" + (f" [{model}]" if model else "")


def result_geometry(layer, channel_axis: int | None = None):
    """A function giving a result array the input ``layer``'s scale, translate and units.

    ``channel_axis``: the input's channel axis, which the results do not have. A result with
    more axes than the input (a model with several output channels, class probabilities) gets
    unit-scaled axes before Y, X.
    """
    scale, translate, units = list(layer.scale), list(layer.translate), list(getattr(layer, "units", []) or [])
    if channel_axis is not None:
        for values in (scale, translate, units):
            if values:
                del values[channel_axis]

    def geometry(data) -> dict:
        extra = data.ndim - len(scale)
        return {
            "scale": scale[:-2] + [1.0] * extra + scale[-2:],
            "translate": translate[:-2] + [0.0] * extra + translate[-2:],
            **({"units": units[:-2] + ["pixel"] * extra + units[-2:]} if units else {}),
        }

    return geometry


def find_result(viewer, role: str, source, model: str):
    """The layer an earlier run made for ``role`` of the input layer ``source`` with ``model``, or None."""
    for candidate in viewer.layers:
        meta = candidate.metadata or {}
        if meta.get(ROLE_KEY) == role and meta.get("source_layer") == source.name and meta.get("model") == model:
            return candidate
    return None


def put_result(viewer, kind: str, source, role: str, model: str, data, provenance, geometry, colormap=None,
               visible: bool = True, classes=None, contrast_limits=None, blending: str = "translucent"):
    """Add the result layer (``kind`` "image" or "labels"), or update the one an earlier run made for this input and model.

    An image's ``contrast_limits`` (fixed, e.g. (0, 1) for probabilities) default to its data's range.
    """
    metadata = {**provenance, ROLE_KEY: role}
    existing = find_result(viewer, role, source, model)
    expected_type = napari.layers.Labels if kind == "labels" else napari.layers.Image
    if existing is not None and (not isinstance(existing, expected_type) or existing.ndim != data.ndim):
        index = list(viewer.layers).index(existing)
        viewer.layers.remove(existing)
        existing = None
    else:
        index = None
    if existing is not None:
        existing.data = data
        existing.scale = geometry["scale"]
        existing.translate = geometry["translate"]
        if "units" in geometry:
            existing.units = geometry["units"]
        existing.metadata = metadata
        if kind == "labels":
            existing.features = class_features(classes)
        elif contrast_limits is not None:
            existing.contrast_limits = contrast_limits
        else:
            existing.reset_contrast_limits()
        existing.refresh()
        return existing
    name = result_name(source.name, role)
    if name in viewer.layers:  # another model's result of this input: name the model
        name = result_name(source.name, role, model)
    if kind == "labels":
        new = viewer.add_labels(
            data, name=name, metadata=metadata, opacity=0.55, features=class_features(classes),
            colormap=class_colormap(len(classes) - 1), **geometry,
        )
    else:
        new = viewer.add_image(
            data, name=name, metadata=metadata, colormap=colormap, visible=visible, blending=blending,
            **({"contrast_limits": contrast_limits} if contrast_limits is not None else {}), **geometry,
        )
    if index is not None:
        viewer.layers.move(list(viewer.layers).index(new), index)
    return new


_label_colours_warm = threading.Event()


def warm_up_label_colours() -> None:
    """Map a few pixels through a class colormap once, in a background thread.

    With numba installed (live assist needs it), napari compiles its label-colouring loop on
    first use, per label dtype: over a second on two cores, which would otherwise freeze the
    viewer the first time a segmentation layer appears.
    """
    if _label_colours_warm.is_set():
        return
    _label_colours_warm.set()

    def warm() -> None:
        colormap = class_colormap(2)
        for dtype in (np.uint8, np.int32):  # our segmentations, and Labels layers read from files
            colormap.map(np.zeros((2, 2), dtype))

    threading.Thread(target=warm, name="nanoscopy-label-colours", daemon=True).start()


def class_features(classes: list[str]) -> dict[str, list]:
    return {"index": list(range(len(classes))), "class": list(classes)}


def class_colormap(n_classes: int):
    from napari.utils.colormaps import DirectLabelColormap

    colors = {None: "transparent", 0: "transparent"}
    for k in range(1, n_classes + 1):
        colors[k] = CLASS_COLORS[(k - 1) % len(CLASS_COLORS)]
    return DirectLabelColormap(color_dict=colors)

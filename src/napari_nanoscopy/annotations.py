"""Polygon annotations in the ``*.polys.txt`` format of Lavoie-Cardinal et al. (STEDActinFCN).

Each line is one polygon: its integer label first, then its vertices as ``(x, y)`` pairs in
pixels (x = column, y = row), e.g. ``1 (53.48, 1.4), (22.4, 46.2), (44.8, 58.8)``. The file is
parsed as numbers only (it comes from elsewhere: nothing in it is evaluated) and its size is
bounded. :func:`polygons_to_mask` fills the polygons as the authors' code does (coordinates cut
to whole pixels, then scikit-image ``draw.polygon`` with rows = y and columns = x).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.draw import polygon as fill_polygon

from .errors import NanoscopyError

MAX_POLYGON_FILE_BYTES = 16 << 20  # far above any hand-drawn annotation file (the authors' are a few KB)
MAX_VERTICES = 1 << 20
MAX_COORDINATE = 1 << 20  # pixels: beyond this a coordinate is not a position in an image
# Axon files: labels 0 (uncertain) and 1 (clear rings) both mean rings. Dendrite files: 0 and 1
# rings, 3 fibres (2 is not used by the authors' code).
AXON_CLASSES: dict[int, int] = {0: 1, 1: 1}
DENDRITE_CLASSES: dict[int, int] = {0: 1, 1: 1, 3: 2}
# The same conventions by class name, for per-class masks: scheme -> {label: class}. Axon files
# annotate rings only; what they leave out is unannotated, not background of another class.
LABEL_SCHEMES: dict[str, dict[int, str]] = {
    "axon": {0: "rings", 1: "rings"},
    "dendrite": {0: "rings", 1: "rings", 3: "fibres"},
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LINE = re.compile(rf"\s*([-+]?\d+)\s+(.*)")
_VERTEX = re.compile(rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)")


@dataclass(frozen=True)
class Polygon:
    """One annotated polygon: its ``label`` and its ``vertices`` as (row, column) pairs, shape (n, 2)."""

    label: int
    vertices: np.ndarray


def read_polygons(path: str | os.PathLike) -> list[Polygon]:
    """The polygons of a ``*.polys.txt`` file (an empty file has none)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise NanoscopyError(f"The annotation file {path} cannot be read ({error.strerror}); check the path.") from None
    if size > MAX_POLYGON_FILE_BYTES:
        raise NanoscopyError(
            f"The annotation file {path} is {size} bytes, more than the {MAX_POLYGON_FILE_BYTES} a polygon file "
            "may have; give the *.polys.txt file of one image."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise NanoscopyError(f"The annotation file {path} cannot be read as text ({error}); give a *.polys.txt file.") from None
    return parse_polygons(text, str(path))


def parse_polygons(text: str, source: str = "the annotation text") -> list[Polygon]:
    """The polygons of the text of a ``*.polys.txt`` file; ``source`` names it in messages."""
    polygons, total = [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        polygon = _parse_line(line, number, source)
        total += len(polygon.vertices)
        if total > MAX_VERTICES:
            raise NanoscopyError(f"{source} holds more than {MAX_VERTICES} vertices; give the polygons of one image.")
        polygons.append(polygon)
    return polygons


def _parse_line(line: str, number: int, source: str) -> Polygon:
    def refuse(problem: str):
        raise NanoscopyError(
            f"Line {number} of {source} {problem}; each line must be a label and (x, y) vertices, "
            "like '1 (10.5, 3.0), (12.0, 8.5), (4.0, 9.0)'."
        )

    match = _LINE.fullmatch(line)
    if match is None:
        refuse("does not start with a whole-number label")
    label, rest = int(match.group(1)), match.group(2)
    pairs = _VERTEX.findall(rest)
    leftover = _VERTEX.sub("", rest).replace(",", "").strip()
    if leftover:
        refuse(f"holds something other than (x, y) pairs ({leftover[:30]!r})")
    if len(pairs) < 3:
        refuse(f"has {len(pairs)} vertices, fewer than the 3 of a polygon")
    xy = np.array([(float(x), float(y)) for x, y in pairs], dtype=np.float64)
    if not np.all(np.isfinite(xy)) or np.abs(xy).max() > MAX_COORDINATE:
        refuse(f"has a coordinate that is not a finite number of pixels below {MAX_COORDINATE}")
    return Polygon(label=label, vertices=xy[:, ::-1].copy())  # (x, y) -> (row, column)


def polygons_to_mask(polygons: Iterable[Polygon], shape: tuple[int, int],
                     labels: Mapping[int, int] | Iterable[int] | None = None) -> np.ndarray:
    """A uint8 mask of ``shape`` (Y, X) with the polygons filled in.

    ``labels`` maps a polygon's label to the mask value it paints (``DENDRITE_CLASSES``: rings 1,
    fibres 2); given as a list, those labels paint 1; None paints every polygon 1. Polygons of
    other labels are left out; where polygons overlap, the later one wins.
    """
    if len(shape) != 2 or not all(isinstance(side, (int, np.integer)) and 0 < side <= MAX_COORDINATE for side in shape):
        raise NanoscopyError(f"The mask shape must be two positive sizes (Y, X), not {shape!r}.")
    if labels is not None and not isinstance(labels, Mapping):
        labels = {int(label): 1 for label in labels}
    mask = np.zeros(tuple(int(side) for side in shape), dtype=np.uint8)
    for item in polygons:
        value = 1 if labels is None else labels.get(item.label)
        if not value:
            continue
        vertices = np.trunc(item.vertices)  # the authors' masks cut coordinates to whole pixels (int())
        rows, cols = fill_polygon(vertices[:, 0], vertices[:, 1], shape=mask.shape)
        mask[rows, cols] = value
    return mask



def class_masks(polygons: Iterable[Polygon], shape: tuple[int, int], scheme: str) -> tuple[list[str], np.ndarray]:
    """The classes of the label ``scheme`` (a key of :data:`LABEL_SCHEMES`) and one uint8 mask per
    class, (C, Y, X): 1 inside that class's polygons (overlaps between classes are kept in both)."""
    if scheme not in LABEL_SCHEMES:
        raise NanoscopyError(f"Unknown label scheme {scheme!r}; use one of {', '.join(LABEL_SCHEMES)}.")
    labels = LABEL_SCHEMES[scheme]
    classes = list(dict.fromkeys(labels.values()))
    polygons = list(polygons)
    masks = [polygons_to_mask(polygons, shape, [label for label, name in labels.items() if name == wanted])
             for wanted in classes]
    return classes, np.stack(masks)

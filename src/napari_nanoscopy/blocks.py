"""Block planning for chunked restoration: cores and their margins, block sizes, seeds and output shapes.

A plane is cut into blocks of ``block`` pixels (the core, which is written), each read with a
margin of the Restorer's halo. Block origins and margins are multiples of the network's size
multiple, so every block sits on the same stride grid as a whole-image pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .limits import MAX_TILE, check_int

DEFAULT_BLOCK = 1024  # pixels: the side of a block (its core), at the model's pixel size


@dataclass(frozen=True)
class Block:
    """One block of one plane: ``core`` is written, ``region`` (core plus margin, clipped) is read."""

    plane: tuple[int, ...]  # index into the leading (stack) axes
    index: int  # position of the block in the plane's block grid (for its seed)
    core: tuple[slice, slice]
    region: tuple[slice, slice]

    @property
    def crop(self) -> tuple[slice, slice]:
        """The core, in the region's coordinates."""
        return tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(self.core, self.region))


def plan_blocks(height: int, width: int, block: int, margin: int) -> list[tuple[tuple[slice, slice], tuple[slice, slice]]]:
    """(core, region) pairs covering a ``height`` x ``width`` plane."""
    pairs = []
    for y0 in range(0, height, block):
        for x0 in range(0, width, block):
            core = (slice(y0, min(y0 + block, height)), slice(x0, min(x0 + block, width)))
            region = (slice(max(0, y0 - margin), min(height, y0 + block + margin)),
                      slice(max(0, x0 - margin), min(width, x0 + block + margin)))
            pairs.append((core, region))
    return pairs


def output_shape(package, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape of the restored image for a source of ``shape``."""
    generator = package.generator
    lead = tuple(shape[:-3]) if generator.in_channels > 1 else tuple(shape[:-2])
    channels = (generator.out_channels,) if generator.out_channels > 1 else ()
    return lead + channels + tuple(shape[-2:])


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``value``."""
    return int(math.ceil(value / multiple) * multiple)


def choose_block(block: int | None, source, multiple: int) -> int:
    """The side of a block's core: ``block`` if given, else about 1024 pixels in whole source chunks, on the
    network's ``multiple``."""
    if block is not None:
        return round_up(check_int("The block size", block, 64, MAX_TILE, "leave it out for an automatic choice"), multiple)
    chunks = getattr(source, "chunks", None)
    if chunks and not isinstance(chunks[0], tuple):  # zarr: one chunk shape; dask gives tuples of sizes
        side = max(int(chunks[-2]), int(chunks[-1]))
        side = side * max(1, DEFAULT_BLOCK // side)
        return round_up(side, multiple)
    return round_up(DEFAULT_BLOCK, multiple)


def block_seed(seed: int | None, block: Block) -> int | None:
    """The seed of one block, from the run's ``seed`` and the block's position (not where or when it runs)."""
    if seed is None:
        return None
    plane = 0
    for i in block.plane:
        plane = plane * 1_000_003 + i
    return (int(seed) * 1_000_003 + plane * 65_537 + block.index) % (2**63)

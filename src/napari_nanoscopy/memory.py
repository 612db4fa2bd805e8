"""Memory of a restoration: the budget rule, the probe that measures a network's activation
bytes, and handing freed heap pages back to the operating system between batches."""

from __future__ import annotations

import ctypes
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Memory of a restoration on the host: at most max(PEAK_FACTOR x its input, SMALL_JOB_BYTES) in all
# (input, outputs, network activations), so large images stay near 3x their size (the 0.5 margin
# is for the allocator and the window copies) while small ones may use big, cheap-to-tile windows.
PEAK_FACTOR = 2.5
SMALL_JOB_BYTES = 640 << 20  # = PEAK_FACTOR x an 8192x8192 float32 image
MIN_ACTIVATION_BYTES = 64 << 20  # the activations always get this much, whatever the rule gives
AVAILABLE_FRACTION = 0.5  # of the memory available now (host RAM, or the GPU's free memory)
# Memory frugality may cost at most this many computed pixels per image pixel (wide-halo models
# in small windows would otherwise recompute halos several times over); beyond it the windows
# grow, within AVAILABLE_FRACTION of the available memory.
MAX_MEMORY_OVERHEAD = 2.0
PROBE_SIZE = 64  # pixels: side of the window whose forward pass measures activation bytes per pixel


class PeakTensorBytes(TorchDispatchMode):
    """The peak bytes of live tensor storages created by the operations run under it."""

    def __init__(self):
        super().__init__()
        self.created: list[weakref.ref] = []
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in torch.utils._pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self.created.append(weakref.ref(tensor))
        self.created = [ref for ref in self.created if ref() is not None]
        storages = {}  # views share a storage: count each once
        for ref in self.created:
            storage = ref().untyped_storage()
            storages[storage._cdata] = storage.nbytes()
        self.peak = max(self.peak, sum(storages.values()))
        return out


def _load_malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc (Linux); elsewhere there is nothing to do
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def release_freed_memory() -> None:
    """Return freed heap pages to the OS between batches.

    glibc keeps freed blocks below its (growing) mmap threshold in the heap, and windows of
    changing shapes fragment it, so without this the resident memory of a long tiled run grows
    well past its live arrays (measured: 4.1x instead of about 2.75x the input at 8192x8192).
    """
    if _malloc_trim is not None:
        _malloc_trim(0)

"""A few Restorers kept ready per process, for work that arrives piece by piece.

A dask worker (or this process, block after block) restores many blocks of one model; building a
Restorer for each would load and fold the network every time. The cache keeps the most recently
used few, each with the lock that lets one restoration at a time run on it (the threads of one
worker share it). Entries are found by what the restoration depends on, the model's weights
(their sha256, or the package itself when it was never saved) and the engine settings, and an
entry is used only for the package it was built for or one with the same card, so two models can
never share a Restorer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

SIZE = 4  # Restorers kept ready per process


@dataclass
class ReadyRestorer:
    """A cached Restorer and the lock held while it restores."""

    restorer: object  # napari_nanoscopy.inference.Restorer
    lock: threading.Lock

    def serves(self, package) -> bool:
        built_for = self.restorer.package
        return built_for is package or (bool(package.card.weights_sha256) and built_for.card == package.card)


class RestorerCache:
    """The ``size`` most recently used Restorers, keyed by weights and engine settings."""

    def __init__(self, size: int = SIZE):
        self.size = size
        self._entries: OrderedDict[tuple, ReadyRestorer] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, package, device: str, mc_mode: str, precision: str = "fp32", compile: bool = False) -> ReadyRestorer:
        """The ready Restorer of ``package`` on ``device`` with these settings, built on first use."""
        from .inference import Restorer

        card = package.card
        key = (card.weights_sha256 or card.name, str(device), mc_mode, precision, bool(compile))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.serves(package):
                restorer = Restorer(package, device=device, mc_mode=mc_mode, precision=precision, compile=compile)
                entry = self._entries[key] = ReadyRestorer(restorer, threading.Lock())
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)  # the least recently used
            return entry

    def __len__(self) -> int:
        return len(self._entries)


restorers = RestorerCache()  # this process's; what dask workers restore with

"""An adapter that injects faults into another one, to test what the pipeline does with them.

``FaultInjectingAdapter(inner, faults={3: "raise", 5: "hang", 8: "disconnect"})`` behaves as
``inner`` except on the numbered acquisitions (counted from 0 over the adapter's life):

- ``"raise"``: the acquisition raises (a device error) after the sample was exposed;
- ``"hang"``: the acquisition blocks until :meth:`FaultInjectingAdapter.release` (or
  ``hang_s``), so the watchdog times out;
- ``"disconnect"``: the acquisition raises ``ConnectionError`` and so does every later one
  until :meth:`FaultInjectingAdapter.reconnect`.

Faults happen inside ``_acquire``, under the base class's watchdog and safe-state handling,
exactly where a real microscope's would. Safe-state calls are counted.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live.adapters import MicroscopeAdapter, Region

FAULT_KINDS = ("raise", "hang", "disconnect")


class InjectedFault(RuntimeError):
    """The error a "raise" fault throws (what a device driver's exception would be)."""


class FaultInjectingAdapter(MicroscopeAdapter):
    def __init__(self, inner: MicroscopeAdapter, faults: Mapping[int, str] | None = None, *,
                 hang_s: float = 30.0, timeout_s: float | None = None):
        faults = {int(k): str(v) for k, v in (faults or {}).items()}
        bad = sorted({v for v in faults.values()} - set(FAULT_KINDS))
        if bad:
            raise NanoscopyError(f"Unknown fault kind(s) {', '.join(bad)}; use {', '.join(FAULT_KINDS)}.")
        self.inner = inner
        self.name = f"faulty-{inner.name}"
        self.faults = faults
        self.hang_s = float(hang_s)
        self.calls = 0
        self.safe_state_calls = 0
        self.disconnected = False
        self.exposed_dose = 0.0  # photons the inner adapter actually sent (faulty calls included)
        self._release = threading.Event()
        super().__init__(inner.capabilities(), inner.settings, inner.timeout_s if timeout_s is None else timeout_s)
        self._armed = inner.armed

    def arm(self) -> None:
        self.inner.arm()
        super().arm()

    def begin_frame(self, index: int) -> None:
        self.inner.begin_frame(index)

    def release(self) -> None:
        """Let a hanging acquisition return."""
        self._release.set()

    def reconnect(self) -> None:
        self.disconnected = False

    def __getattr__(self, name: str) -> Any:
        # ground_truth, remodelling_onsets, series... of a simulator inside
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _acquire(self, modality: str, region: Region) -> tuple[np.ndarray, dict[str, Any]]:
        call = self.calls
        self.calls += 1
        if self.disconnected:
            raise ConnectionError("the microscope is disconnected")
        kind = self.faults.get(call)
        if kind == "disconnect":
            self.disconnected = True
            raise ConnectionError("the microscope disconnected")
        self.exposed_dose += self.inner.estimate_dose(modality, region)
        result = self.inner._acquire(modality, region)
        if kind == "raise":
            raise InjectedFault(f"injected device error on acquisition {call}")
        if kind == "hang":
            self._release.wait(self.hang_s)
            self._release.clear()
        return result

    def _safe_state(self) -> None:
        self.safe_state_calls += 1
        self.inner.safe_state()

"""Any microscope pymmcore-plus drives: a configuration group selects the modality.

``PymmcoreAdapter(core, group="Modality", presets={"confocal": ..., "sted": ...})`` sets the
preset of the modality, sets the camera (or scanner) ROI for a sub-region, snaps one image
and reads it; the ROI is cleared after every acquisition. The safe state closes the
shutter (when the core has one) and applies ``safe_preset`` of the group (when given).

:class:`SimulatedCamera` is a pure-Python camera device for pymmcore-plus's ``UniMMCore``
that renders the frames of a :class:`~napari_nanoscopy.live.simulator.SimulatorAdapter`:
:func:`simulated_core` builds a core with it and a ``Modality`` group, to try a
pymmcore-plus setup (and this adapter) without hardware.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live.adapters import (
    CONFOCAL,
    STED,
    AcquisitionSettings,
    Capabilities,
    MicroscopeAdapter,
    Region,
)

DEFAULT_PRESETS = {CONFOCAL: "Confocal", STED: "STED"}


class PymmcoreAdapter(MicroscopeAdapter):
    """A pymmcore-plus ``CMMCorePlus`` (or ``UniMMCore``) with a modality configuration group.

    ``settings`` gives the powers and dwell time behind each preset (for the caps and the
    dose estimate: Micro-Manager does not know them). ``pixel_size_nm`` defaults to the
    core's pixel size configuration.
    """

    name = "pymmcore"
    default_timeout_s = 120.0

    def __init__(
        self,
        core,
        *,
        settings: Mapping[str, AcquisitionSettings],
        group: str = "Modality",
        presets: Mapping[str, str] = DEFAULT_PRESETS,
        pixel_size_nm: float | None = None,
        safe_preset: str | None = None,
        max_power_w: Mapping[str, float] | None = None,
        wavelengths_m: Mapping[str, float] | None = None,
        dwell_time_s: tuple[float, float] = (1e-7, 1e-3),
        min_patch: int = 16,
        arm: bool = False,
        timeout_s: float | None = None,
    ):
        self.core = core
        self.group = str(group)
        self.presets = {m: str(p) for m, p in presets.items() if m in (CONFOCAL, STED)}
        self.safe_preset = safe_preset
        if not core.isGroupDefined(self.group):
            raise NanoscopyError(
                f"The Micro-Manager configuration has no group {self.group!r}; define one whose presets select "
                "the confocal and STED modalities, or name the right group."
            )
        available = set(core.getAvailableConfigs(self.group))
        missing = [p for p in (*self.presets.values(), *([safe_preset] if safe_preset else [])) if p not in available]
        if missing:
            raise NanoscopyError(
                f"The group {self.group!r} has no preset {', '.join(map(repr, missing))} (it has "
                f"{', '.join(sorted(available)) or 'none'}); name existing presets."
            )
        if not core.getCameraDevice():
            raise NanoscopyError("The Micro-Manager core has no camera device set; set the core's Camera first.")
        core.clearROI()
        if pixel_size_nm is None:
            try:
                pixel_size_nm = float(core.getPixelSizeUm()) * 1000.0
            except Exception:  # noqa: BLE001 - no pixel size configuration
                pixel_size_nm = 0.0
        if not pixel_size_nm or pixel_size_nm <= 0:
            raise NanoscopyError(
                "The Micro-Manager core has no pixel size calibration; define one, or give pixel_size_nm."
            )
        capabilities = Capabilities(
            modalities=tuple(m for m in (CONFOCAL, STED) if m in self.presets),
            pixel_size_nm=float(pixel_size_nm),
            field_shape=(int(core.getImageHeight()), int(core.getImageWidth())),
            min_patch=int(min_patch),
            max_power_w=dict(max_power_w or {"excitation": 1e-4, "depletion": 0.5}),
            dwell_time_s=(float(dwell_time_s[0]), float(dwell_time_s[1])),
            wavelengths_m=dict(wavelengths_m or {"excitation": 640e-9, "depletion": 775e-9}),
            requires_arming=True,
            description=f"pymmcore-plus core, camera {core.getCameraDevice()!r}, group {self.group!r}",
        )
        super().__init__(capabilities, dict(settings), timeout_s)
        if arm:
            self.arm()

    def _acquire(self, modality: str, region: Region) -> tuple[np.ndarray, dict[str, Any]]:
        core = self.core
        preset = self.presets[modality]
        core.setConfig(self.group, preset)
        core.waitForConfig(self.group, preset)
        y0, x0, height, width = region
        full = (height, width) == self._capabilities.field_shape
        try:
            if not full:
                core.setROI(x0, y0, width, height)
            core.snapImage()
            image = np.asarray(core.getImage(), dtype=np.float32)
        finally:
            if not full:
                core.clearROI()
        return image, {"group": self.group, "preset": preset}

    def _safe_state(self) -> None:
        core = self.core
        try:
            if core.getShutterDevice():
                core.setShutterOpen(False)
        finally:
            if self.safe_preset:
                core.setConfig(self.group, self.safe_preset)


def _unicore():
    try:
        from pymmcore_plus.experimental.unicore import SimpleCameraDevice, UniMMCore, pymm_property
    except ImportError:
        raise NanoscopyError(
            "The pymmcore adapter needs pymmcore-plus (pip install 'napari-nanoscopy[pymmcore]')."
        ) from None
    return SimpleCameraDevice, UniMMCore, pymm_property


def _camera_class():
    SimpleCameraDevice, _, pymm_property = _unicore()

    class SimulatedCamera(SimpleCameraDevice):
        """A pure-Python camera rendering a SimulatorAdapter's frames; its Modality property picks the scan."""

        def __init__(self, simulator):
            super().__init__()
            self.simulator = simulator
            self._modality = CONFOCAL
            self._exposure = 10.0

        def sensor_shape(self) -> tuple[int, int]:
            return tuple(self.simulator.capabilities().field_shape)

        def dtype(self):
            return np.float32

        def get_exposure(self) -> float:
            return self._exposure

        def set_exposure(self, exposure: float) -> None:
            self._exposure = float(exposure)

        @pymm_property(allowed_values=[CONFOCAL, STED])
        def modality(self) -> str:
            return self._modality

        @modality.setter
        def modality(self, value: str) -> None:
            self._modality = str(value)

        def snap(self, buffer: np.ndarray) -> Mapping:
            # Only the ROI is scanned (and bleached); the rest of the full-frame buffer is dark.
            height, width = self.sensor_shape()
            x0, y0, w, h = self._roi if self._roi is not None else (0, 0, width, height)
            image, parameters = self.simulator._acquire(self._modality, (y0, x0, h, w))
            buffer[...] = 0
            buffer[y0:y0 + h, x0:x0 + w] = image
            return {"modality": self._modality, **{k: str(v) for k, v in parameters.items()}}

    return SimulatedCamera


def simulated_core(simulator, group: str = "Modality", presets: Mapping[str, str] = DEFAULT_PRESETS):
    """A pymmcore-plus ``UniMMCore`` whose camera renders ``simulator``'s frames.

    The camera device is labelled ``Camera``; ``group`` has one preset per modality that sets
    the camera's ``modality`` property.
    """
    _, UniMMCore, _ = _unicore()
    core = UniMMCore()
    core.loadPyDevice("Camera", _camera_class()(simulator))
    core.initializeDevice("Camera")
    core.setCameraDevice("Camera")
    for modality, preset in presets.items():
        core.defineConfig(group, preset, "Camera", "modality", modality)
    return core

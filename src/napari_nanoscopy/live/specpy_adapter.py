"""Abberior Imspector through SpecPy: named configurations, sub-region geometry, stacks.

The documented SpecPy calls used (Imspector must run with its SpecPy server enabled)::

    imspector = specpy.get_application()
    measurement = imspector.active_measurement()
    configuration = measurement.configuration(name)
    measurement.activate(configuration)
    configuration.set_parameters("ExpControl/scan/range/x/off", metres)   # also len, psz, y
    imspector.run(measurement)                                             # blocking
    data = measurement.stack(index).data()

Offsets are the region's centre relative to the field's centre, in metres, as Imspector's
scan range takes them. The adapter never acquires before :meth:`arm`; its safe state stops
any running measurement and writes ``safe_parameters`` (for example the STED laser power
to 0). Sub-regions below 50 px are impractical on these microscopes (the default
``min_patch``); the first scan line, which Imspector often discards, is dropped when the
returned stack has one row more than asked.
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

SCAN = "ExpControl/scan/range/{axis}/{key}"


def _import_specpy():
    try:
        import specpy
    except ImportError:
        raise NanoscopyError(
            "The specpy adapter needs Abberior's SpecPy (pip install specpy, matching your Imspector version) "
            "on the microscope computer; install it there, or use the simulator adapter."
        ) from None
    return specpy


class SpecPyAdapter(MicroscopeAdapter):
    """An Abberior STED microscope driven through Imspector's SpecPy interface.

    ``configurations`` maps modality -> Imspector configuration name; ``settings`` the
    powers and dwell time each configuration uses (for the dose estimate and the caps);
    ``field_shape`` and ``pixel_size_nm`` the field of view the pipeline works in,
    centred on ``centre_m`` (scan offsets of the field centre, metres). ``specpy`` may be
    given (a module or object with ``get_application``); otherwise it is imported.
    """

    name = "specpy"
    default_timeout_s = 120.0

    def __init__(
        self,
        *,
        configurations: Mapping[str, str],
        settings: Mapping[str, AcquisitionSettings],
        field_shape: tuple[int, int] = (500, 500),
        pixel_size_nm: float = 20.0,
        centre_m: tuple[float, float] = (0.0, 0.0),
        max_power_w: Mapping[str, float] | None = None,
        wavelengths_m: Mapping[str, float] | None = None,
        dwell_time_s: tuple[float, float] = (1e-6, 1e-4),
        min_patch: int = 50,
        stack_index: int = 0,
        safe_parameters: Mapping[str, Any] | None = None,
        specpy=None,
        arm: bool = False,
        timeout_s: float | None = None,
    ):
        unknown = sorted(set(configurations) - {CONFOCAL, STED})
        if unknown or not configurations:
            raise NanoscopyError(
                f"configurations maps 'confocal' and/or 'sted' to Imspector configuration names; got {dict(configurations)!r}."
            )
        capabilities = Capabilities(
            modalities=tuple(m for m in (CONFOCAL, STED) if m in configurations),
            pixel_size_nm=float(pixel_size_nm),
            field_shape=(int(field_shape[0]), int(field_shape[1])),
            min_patch=int(min_patch),
            max_power_w=dict(max_power_w or {"excitation": 1e-4, "depletion": 0.5}),
            dwell_time_s=(float(dwell_time_s[0]), float(dwell_time_s[1])),
            wavelengths_m=dict(wavelengths_m or {"excitation": 640e-9, "depletion": 775e-9}),
            requires_arming=True,
            description="Abberior Imspector through SpecPy",
        )
        super().__init__(capabilities, dict(settings), timeout_s)
        self.configurations = dict(configurations)
        self.centre_m = (float(centre_m[0]), float(centre_m[1]))
        self.stack_index = int(stack_index)
        self.safe_parameters = dict(safe_parameters or {})
        self._specpy = specpy if specpy is not None else _import_specpy()
        try:
            self._imspector = self._specpy.get_application()
        except Exception as error:  # noqa: BLE001 - any connection failure
            raise NanoscopyError(
                f"Could not reach Imspector through SpecPy ({error}); start Imspector, enable its SpecPy server "
                "(File > Preferences), and try again."
            ) from error
        self._running = None
        if arm:
            self.arm()

    def _acquire(self, modality: str, region: Region) -> tuple[np.ndarray, dict[str, Any]]:
        measurement = self._imspector.active_measurement()
        configuration = measurement.configuration(self.configurations[modality])
        measurement.activate(configuration)
        y0, x0, height, width = region
        field_h, field_w = self._capabilities.field_shape
        pixel_m = self._capabilities.pixel_size_nm * 1e-9
        # region centre relative to the field centre, in metres
        offset_x = self.centre_m[1] + ((x0 + width / 2) - field_w / 2) * pixel_m
        offset_y = self.centre_m[0] + ((y0 + height / 2) - field_h / 2) * pixel_m
        geometry = {
            SCAN.format(axis="x", key="psz"): pixel_m,
            SCAN.format(axis="y", key="psz"): pixel_m,
            SCAN.format(axis="x", key="len"): width * pixel_m,
            SCAN.format(axis="y", key="len"): height * pixel_m,
            SCAN.format(axis="x", key="off"): offset_x,
            SCAN.format(axis="y", key="off"): offset_y,
        }
        for path, value in geometry.items():
            configuration.set_parameters(path, value)
        self._running = measurement
        try:
            self._imspector.run(measurement)
        finally:
            self._running = None
        data = np.asarray(measurement.stack(self.stack_index).data(), dtype=np.float32)
        data = np.squeeze(data)
        if data.ndim != 2:
            raise NanoscopyError(
                f"Imspector's stack {self.stack_index} holds data of shape {data.shape}, not one 2D image; "
                "pick the stack index of the detector channel to use."
            )
        if data.shape == (height + 1, width):
            data = data[1:]  # the discarded first line
        return data, {"configuration": self.configurations[modality], "scan": geometry}

    def _safe_state(self) -> None:
        stop = getattr(self._imspector, "stop", None)
        if self._running is not None and callable(stop):
            stop(self._running)
        if self.safe_parameters:
            measurement = self._imspector.active_measurement()
            for path, value in self.safe_parameters.items():
                measurement.set_parameters(path, value)

"""The microscope adapter protocol: capabilities, frames, arming, watchdog and safe state.

An adapter turns ``acquire(modality, region)`` into one image from a microscope (or the
simulator). The base class does everything that must hold for every microscope, so that a
new adapter only implements ``_acquire`` (and ``_safe_state``):

- the modality, region, powers and dwell time are checked against the capabilities before
  anything reaches the hardware;
- hardware adapters refuse to acquire until :meth:`MicroscopeAdapter.arm` was called;
- every acquisition runs under a watchdog: past its timeout the adapter goes to its safe
  state and :class:`AcquisitionTimeout` is raised; an acquisition that never returns makes
  every later call fail fast (:class:`AdapterUnresponsive`) instead of queueing behind it;
- any error during an acquisition sends the adapter to its safe state before it propagates,
  as an :class:`AdapterFault` with the original error chained;
- every :class:`Frame` carries its timestamps, region, acquisition parameters and an
  estimate of the photons it sent into the sample.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError

CONFOCAL = "confocal"
STED = "sted"
MODALITIES = (CONFOCAL, STED)

PLANCK = 6.62607015e-34  # J s
LIGHT_SPEED = 299_792_458.0  # m / s
MAX_TIMEOUT_S = 86_400.0  # the longest acquisition watchdog

Region = tuple[int, int, int, int]  # (y0, x0, height, width) in field pixels


class AdapterFault(NanoscopyError):
    """An acquisition failed (the microscope raised, disconnected or did not answer).

    The adapter was sent to its safe state before this was raised.
    """


class AcquisitionTimeout(AdapterFault):
    """An acquisition did not finish within its watchdog timeout."""


class AdapterUnresponsive(AdapterFault):
    """An earlier acquisition never returned, so the adapter cannot take new ones."""


class NotArmed(NanoscopyError):
    """A hardware adapter was asked to acquire before it was armed."""


def photon_rate(power_w: float, wavelength_m: float) -> float:
    """Photons per second in a beam of ``power_w`` watts at ``wavelength_m``."""
    return float(power_w) * float(wavelength_m) / (PLANCK * LIGHT_SPEED)


@dataclass(frozen=True)
class Capabilities:
    """What an adapter can do and the limits every acquisition is checked against."""

    modalities: tuple[str, ...]
    pixel_size_nm: float
    field_shape: tuple[int, int]  # (height, width) pixels of the full field of view
    min_patch: int  # smallest sub-region side (pixels) the microscope can scan usefully
    max_power_w: dict[str, float]  # per beam ("excitation", "depletion"): the cap never exceeded
    dwell_time_s: tuple[float, float]  # (min, max) pixel dwell time
    wavelengths_m: dict[str, float]  # per beam, for the photon-dose estimate
    requires_arming: bool
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "pixel_size_nm": self.pixel_size_nm,
            "field_shape": list(self.field_shape),
            "min_patch": self.min_patch,
            "max_power_w": dict(self.max_power_w),
            "dwell_time_s": list(self.dwell_time_s),
            "wavelengths_m": dict(self.wavelengths_m),
            "requires_arming": self.requires_arming,
            "description": self.description,
        }


@dataclass(frozen=True)
class AcquisitionSettings:
    """Beam powers (W) and pixel dwell time (s) of one modality."""

    excitation_w: float
    depletion_w: float
    dwell_time_s: float

    def to_dict(self) -> dict[str, float]:
        return {"excitation_w": self.excitation_w, "depletion_w": self.depletion_w, "dwell_time_s": self.dwell_time_s}


@dataclass
class Frame:
    """One acquired image and everything needed to trust and reproduce it."""

    data: np.ndarray  # (height, width) float32 of the region (the whole field when region is None)
    modality: str
    region: Region  # where in the field the data lies
    pixel_size_nm: float
    started: float  # time.time() when the acquisition started
    finished: float
    parameters: dict[str, Any] = field(default_factory=dict)  # powers, dwell time, adapter specifics
    dose_photons: float = 0.0  # photons sent into the sample by this acquisition (estimate)
    index: int = -1  # the recorder's frame number, set when the frame is written

    def metadata(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "region": list(self.region),
            "pixel_size_nm": self.pixel_size_nm,
            "started": self.started,
            "finished": self.finished,
            "parameters": self.parameters,
            "dose_photons": self.dose_photons,
            "index": self.index,
        }


class MicroscopeAdapter:
    """Base class of every adapter; subclasses implement ``_acquire`` and ``_safe_state``.

    ``settings`` maps each modality to its :class:`AcquisitionSettings`; they are checked
    against the capabilities' power caps and dwell-time range when the adapter is made.
    """

    name = "adapter"
    default_timeout_s = 60.0

    def __init__(self, capabilities: Capabilities, settings: dict[str, AcquisitionSettings],
                 timeout_s: float | None = None):
        self._capabilities = capabilities
        self.settings = dict(settings)
        self.timeout_s = self.default_timeout_s if timeout_s is None else _positive("timeout_s", timeout_s)
        self._armed = not capabilities.requires_arming
        self._closed = False
        self._busy = threading.Lock()  # held while an acquisition (even an abandoned one) runs
        for modality in capabilities.modalities:
            if modality not in self.settings:
                raise NanoscopyError(f"The {self.name} adapter has no acquisition settings for {modality!r}; give them.")
            self._check_settings(modality, self.settings[modality])

    # -- protocol ---------------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def armed(self) -> bool:
        return self._armed

    @property
    def busy(self) -> bool:
        """True while an acquisition runs (including one the watchdog gave up on)."""
        return self._busy.locked()

    def arm(self) -> None:
        """Allow acquisitions (hardware adapters start disarmed)."""
        self._check_open()
        self._armed = True

    def disarm(self) -> None:
        self._armed = not self._capabilities.requires_arming

    def begin_frame(self, index: int) -> None:
        """Called by the pipeline at the start of time point ``index``; a no-op by default."""

    def estimate_dose(self, modality: str, region: Region | None = None) -> float:
        """Photons an acquisition of ``modality`` over ``region`` sends into the sample.

        Excitation and depletion photon rates from the powers and wavelengths, times the
        pixel dwell time, times the number of pixels scanned.
        """
        region = self._checked_region(region)
        settings = self.settings[self._checked_modality(modality)]
        waves = self._capabilities.wavelengths_m
        rate = photon_rate(settings.excitation_w, waves.get("excitation", 0.0))
        rate += photon_rate(settings.depletion_w, waves.get("depletion", 0.0))
        return rate * settings.dwell_time_s * region[2] * region[3]

    def acquire(self, modality: str, region: Region | None = None, *, timeout_s: float | None = None) -> Frame:
        """Acquire one image of ``modality`` over ``region`` (None: the whole field).

        Runs under the watchdog; on any failure the adapter goes to its safe state and an
        :class:`AdapterFault` is raised.
        """
        self._check_open()
        modality = self._checked_modality(modality)
        region = self._checked_region(region)
        if not self._armed:
            raise NotArmed(
                f"The {self.name} adapter is not armed, so it does not acquire; arm it (arm=True, the Arm "
                "button, or --arm) once the microscope is ready and it is safe to illuminate the sample."
            )
        timeout = self.timeout_s if timeout_s is None else _positive("timeout_s", timeout_s)
        if not self._busy.acquire(blocking=False):
            self._enter_safe_state()
            raise AdapterUnresponsive(
                f"An earlier acquisition on the {self.name} adapter never returned; the adapter was sent to its "
                "safe state. Check the microscope, then reconnect (close and reopen the adapter)."
            )
        dose = self.estimate_dose(modality, region)
        outcome: dict[str, Any] = {}
        started = time.time()

        def work() -> None:
            try:
                outcome["result"] = self._acquire(modality, region)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                outcome["error"] = error
            finally:
                self._busy.release()

        worker = threading.Thread(target=work, name=f"{self.name}-acquisition", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self._enter_safe_state()
            raise AcquisitionTimeout(
                f"The {self.name} adapter did not finish a {modality} acquisition within {timeout:g} s; it was sent "
                "to its safe state. Check the microscope, or raise the timeout if acquisitions are this slow."
            )
        if "error" in outcome:
            error = outcome["error"]
            self._enter_safe_state()
            if isinstance(error, AdapterFault):
                raise error
            raise AdapterFault(
                f"The {self.name} adapter failed during a {modality} acquisition ({type(error).__name__}: {error}); "
                "it was sent to its safe state. Fix the cause and resume."
            ) from error
        data, parameters = outcome["result"]
        data = np.asarray(data, dtype=np.float32)
        if data.shape != (region[2], region[3]):
            self._enter_safe_state()
            raise AdapterFault(
                f"The {self.name} adapter returned an image of shape {data.shape} for a region of "
                f"{region[2]}x{region[3]} pixels; it was sent to its safe state. Check the adapter's configuration."
            )
        return Frame(
            data=data, modality=modality, region=region, pixel_size_nm=self._capabilities.pixel_size_nm,
            started=started, finished=time.time(),
            parameters={**self.settings[modality].to_dict(), **(parameters or {})}, dose_photons=dose,
        )

    def safe_state(self) -> None:
        """Put the microscope in a state where it cannot harm the sample (beams off/blanked)."""
        self._safe_state()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._enter_safe_state()
        finally:
            self._closed = True
            self._armed = False
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- for subclasses -----------------------------------------------------------------------

    def _acquire(self, modality: str, region: Region) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def _safe_state(self) -> None:
        """Turn beams off; must be idempotent and must not raise for a microscope already safe."""

    def _close(self) -> None:
        pass

    # -- helpers ------------------------------------------------------------------------------

    def _enter_safe_state(self) -> None:
        try:
            self._safe_state()
        except Exception:  # noqa: BLE001 - the fault being handled is the one to report
            pass

    def _check_open(self) -> None:
        if self._closed:
            raise NanoscopyError(f"The {self.name} adapter is closed; open a new one.")

    def _checked_modality(self, modality: str) -> str:
        if modality not in self._capabilities.modalities:
            raise NanoscopyError(
                f"The {self.name} adapter acquires {', '.join(self._capabilities.modalities)}, not {modality!r}."
            )
        return modality

    def _checked_region(self, region: Region | None) -> Region:
        height, width = self._capabilities.field_shape
        if region is None:
            return (0, 0, height, width)
        try:
            y0, x0, h, w = (int(v) for v in region)
        except (TypeError, ValueError):
            raise NanoscopyError(f"A region is (y0, x0, height, width) in pixels; got {region!r}.") from None
        if h < 1 or w < 1 or y0 < 0 or x0 < 0 or y0 + h > height or x0 + w > width:
            raise NanoscopyError(
                f"The region {region!r} does not lie inside the {height}x{width} pixel field; give "
                "(y0, x0, height, width) inside it."
            )
        smallest = self._capabilities.min_patch
        if (h, w) != (height, width) and min(h, w) < smallest:
            raise NanoscopyError(
                f"The {self.name} adapter scans sub-regions of at least {smallest}x{smallest} pixels; "
                f"the region {region!r} is smaller. Use a larger patch."
            )
        return (y0, x0, h, w)

    def _check_settings(self, modality: str, settings: AcquisitionSettings) -> None:
        caps = self._capabilities
        for beam, power in (("excitation", settings.excitation_w), ("depletion", settings.depletion_w)):
            cap = caps.max_power_w.get(beam, 0.0)
            if not 0 <= power <= cap:
                raise NanoscopyError(
                    f"The {modality} {beam} power {power:g} W is outside 0 to {cap:g} W, the cap of the {self.name} "
                    "adapter; lower it (or raise the cap in the adapter's configuration, if the microscope allows)."
                )
        low, high = caps.dwell_time_s
        if not low <= settings.dwell_time_s <= high:
            raise NanoscopyError(
                f"The {modality} pixel dwell time {settings.dwell_time_s:g} s is outside {low:g} to {high:g} s; "
                "choose one inside the range."
            )


def _positive(name: str, value) -> float:
    # finite and at most a day: an infinite watchdog overflows the clock and guards nothing
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_S:
        raise NanoscopyError(f"{name} must be a positive number of seconds up to {MAX_TIMEOUT_S:g} (a day); got {value!r}.")
    return float(value)

"""Connecting a microscope: :class:`AdapterSettings` and the one :func:`make_adapter` that the
``live`` command and the Live assist widget build their adapter with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live.adapters import CONFOCAL, STED, AcquisitionSettings, MicroscopeAdapter

ADAPTERS = ("simulator", "pymmcore", "specpy")


@dataclass(frozen=True)
class AdapterSettings:
    """Which microscope to drive and how to reach it; hardware acquires only when ``arm`` is set
    (or once armed later, as the widget does)."""

    kind: str = "simulator"
    frames: int = 15  # simulator: the time points it simulates
    stimulus_frame: int | None = None  # simulator: where remodelling starts (None: 5, or frames if fewer)
    size: int = 500  # simulator and specpy: field of view in pixels
    seed: int = 0  # simulator
    arm: bool = False
    mm_config: str | None = None  # pymmcore: the Micro-Manager configuration file
    mm_group: str = "Modality"  # pymmcore: the configuration group selecting the modality
    pixel_size_nm: float | None = None  # pymmcore without calibration; specpy (default 20 nm)
    confocal_config: str = "Confocal"  # specpy: Imspector configurations
    sted_config: str = "STED"
    timeout_s: float | None = None  # watchdog per acquisition (None: the adapter's default)
    conditions: str | None = None  # simulator: a condition file or shipped set's name (None: the standard set)

    def __post_init__(self):
        if self.kind not in ADAPTERS:
            raise NanoscopyError(f"The adapter must be one of {', '.join(ADAPTERS)}; got {self.kind!r}.")


def hardware_settings() -> dict[str, AcquisitionSettings]:
    """The confocal and STED acquisition settings of the standard conditions, for hardware adapters."""
    from napari_nanoscopy.simulation import STANDARD_CONDITIONS as c

    return {CONFOCAL: AcquisitionSettings(c["p_ex"], 0.0, c["pdt"]), STED: AcquisitionSettings(c["p_ex"], c["p_sted"], c["pdt"])}


def make_adapter(settings: AdapterSettings) -> MicroscopeAdapter:
    """Connect the adapter ``settings`` describe."""
    if settings.kind == "simulator":
        from napari_nanoscopy.live.simulator import SimulatorAdapter
        from napari_nanoscopy.simulation import conditions_or_standard

        stimulus = min(5, settings.frames) if settings.stimulus_frame is None else settings.stimulus_frame
        return SimulatorAdapter(settings.frames, stimulus, size=settings.size, seed=settings.seed,
                                conditions=conditions_or_standard(settings.conditions), timeout_s=settings.timeout_s)
    if settings.kind == "pymmcore":
        from napari_nanoscopy.live.pymmcore_adapter import PymmcoreAdapter

        return PymmcoreAdapter(_micro_manager_core(settings.mm_config), settings=hardware_settings(),
                               group=settings.mm_group, pixel_size_nm=settings.pixel_size_nm, arm=settings.arm,
                               timeout_s=settings.timeout_s)
    from napari_nanoscopy.live.specpy_adapter import SpecPyAdapter

    return SpecPyAdapter(configurations={"confocal": settings.confocal_config, "sted": settings.sted_config},
                         settings=hardware_settings(), field_shape=(settings.size, settings.size),
                         pixel_size_nm=settings.pixel_size_nm or 20.0, arm=settings.arm, timeout_s=settings.timeout_s)


def _micro_manager_core(config: str | None):
    if not config:
        raise NanoscopyError("Give the Micro-Manager configuration file to load for the pymmcore adapter.")
    try:
        from pymmcore_plus import CMMCorePlus
    except ImportError:
        raise NanoscopyError("The pymmcore adapter needs pymmcore-plus (pip install 'napari-nanoscopy[pymmcore]').") from None
    core = CMMCorePlus()
    try:
        core.loadSystemConfiguration(str(Path(config).expanduser()))
    except (OSError, RuntimeError) as error:  # pymmcore raises RuntimeError for a bad file or device
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise NanoscopyError(f"Micro-Manager could not load {config} ({detail}); check the configuration "
                             "file in Micro-Manager.") from None
    return core

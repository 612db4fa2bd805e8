"""The default adapter: pySTED imaging an F-actin time series, with bleaching and ground truth.

The sample is :func:`~napari_nanoscopy.simulation.factin_series`: a dendrite whose F-actin
rings remodel into fibres from a stimulus time point on. Every acquisition, whole field or
sub-region, confocal or STED, goes through pySTED with bleaching on, so the molecules a
STED scan bleaches are missing from every later image; when the time point advances,
molecules of unchanged structures keep their bleached state and new structures arrive
fresh (as :func:`~napari_nanoscopy.simulation.acquire_series` does). The ground truth (ring
and fibre masks per time point, the stimulus onset) is exposed for evaluation, never used
by the pipeline.
"""

from __future__ import annotations

import copy
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
from napari_nanoscopy.simulation import PIXEL_SIZE_NM, STANDARD_CONDITIONS, FactinSeries, acquire, factin_series
from napari_nanoscopy.simulation.series import follow_structure

# Power caps of the simulated microscope: a few times the standard conditions (raised to a
# condition file's own powers where they are higher).
MAX_EXCITATION_W = 20e-6
MAX_DEPLETION_W = 300e-3


class SimulatorAdapter(MicroscopeAdapter):
    """pySTED over an F-actin time series; needs no arming (nothing real is illuminated).

    ``n_frames`` time points with the stimulus at ``stimulus_frame`` (``n_frames``: an
    unstimulated control), a ``size`` x ``size`` field of ``conditions["pixelsize"]``
    pixels, seeded by ``seed`` (structure, noise and bleaching). ``series`` replaces the
    generated sample. ``min_patch`` is the smallest sub-region side accepted.
    """

    name = "simulator"
    default_timeout_s = 600.0  # pySTED takes seconds per field on a CPU

    def __init__(
        self,
        n_frames: int = 15,
        stimulus_frame: int = 5,
        *,
        size: int = 500,
        seed: int | None = 0,
        conditions: Mapping[str, Any] = STANDARD_CONDITIONS,
        series: FactinSeries | None = None,
        min_patch: int = 16,
        timeout_s: float | None = None,
    ):
        self.conditions = copy.deepcopy(dict(conditions))
        pixel_size_nm = float(self.conditions["pixelsize"]) * 1e9
        if round(pixel_size_nm, 6) != PIXEL_SIZE_NM:
            raise NanoscopyError(
                f"The simulated F-actin is drawn on {PIXEL_SIZE_NM:g} nm pixels, but the conditions' pixel size is "
                f"{pixel_size_nm:g} nm; use a condition set with pixelsize {PIXEL_SIZE_NM * 1e-9:g} m for the simulator."
            )
        rng = np.random.default_rng(seed)
        if series is None:
            series = factin_series(n_frames, stimulus_frame, seed=rng, size=size)
        elif not isinstance(series, FactinSeries):
            raise NanoscopyError("series must be a FactinSeries (from simulation.factin_series).")
        self.series = series
        p_ex, p_sted, pdt = (float(self.conditions[key]) for key in ("p_ex", "p_sted", "pdt"))
        field_shape = tuple(int(n) for n in series.datamaps.shape[1:])
        capabilities = Capabilities(
            modalities=(CONFOCAL, STED),
            pixel_size_nm=round(pixel_size_nm, 6),
            field_shape=field_shape,
            min_patch=int(min_patch),
            max_power_w={"excitation": max(MAX_EXCITATION_W, p_ex), "depletion": max(MAX_DEPLETION_W, p_sted)},
            dwell_time_s=(1e-7, 1e-3),
            wavelengths_m={
                "excitation": float(self.conditions["excitation"]["lambda_"]),
                "depletion": float(self.conditions["sted"]["lambda_"]),
            },
            requires_arming=False,
            description=(
                f"pySTED simulator, F-actin series of {series.datamaps.shape[0]} time points "
                f"(stimulus at {series.stimulus_frame}), {field_shape[0]}x{field_shape[1]} px"
            ),
        )
        settings = {
            CONFOCAL: AcquisitionSettings(p_ex, 0.0, pdt),
            STED: AcquisitionSettings(p_ex, p_sted, pdt),
        }
        super().__init__(capabilities, settings, timeout_s)
        self._rng = rng
        self.timepoint = 0
        self._fluorescent = series.datamaps[0].astype(np.int32).copy()

    # -- the sample ---------------------------------------------------------------------------

    @property
    def n_timepoints(self) -> int:
        return int(self.series.datamaps.shape[0])

    def begin_frame(self, index: int) -> None:
        """Move the sample to time point ``index`` (clamped to the series), carrying bleaching over."""
        target = int(np.clip(index, 0, self.n_timepoints - 1))
        while self.timepoint < target:
            before, after = self.series.datamaps[self.timepoint], self.series.datamaps[self.timepoint + 1]
            self._fluorescent = follow_structure(self._fluorescent, before, after, self._rng)
            self.timepoint += 1

    @property
    def fluorescent(self) -> np.ndarray:
        """Molecules still fluorescent now (a copy), for evaluation."""
        return self._fluorescent.copy()

    def ground_truth(self, timepoint: int | None = None) -> dict[str, Any]:
        """Masks (rings, fibres) and molecules of a time point (default: the current one)."""
        t = self.timepoint if timepoint is None else int(timepoint)
        return {
            "timepoint": t,
            "rings": self.series.masks[t, 0].astype(bool),
            "fibres": self.series.masks[t, 1].astype(bool),
            "datamap": self.series.datamaps[t],
            "stimulus_frame": self.series.stimulus_frame,
        }

    @property
    def remodelling_onsets(self) -> list[int]:
        """Time points where remodelling starts (the stimulus), empty for a control series."""
        onset = int(self.series.stimulus_frame)
        return [onset] if onset < self.n_timepoints else []

    # -- acquisition --------------------------------------------------------------------------

    def _acquire(self, modality: str, region: Region) -> tuple[np.ndarray, dict[str, Any]]:
        y0, x0, height, width = region
        window = (slice(y0, y0 + height), slice(x0, x0 + width))
        molecules = self._fluorescent[window].copy()
        # Without excitation bleaching (k0 = 0, the standard fluorophore) a confocal scan bleaches
        # nothing: pySTED's non-bleaching path gives the same image in half the time.
        bleach = modality == STED or float(self.conditions["fluo"].get("k0", 0)) > 0
        image = acquire(molecules, self.conditions, sted=modality == STED, rng=self._rng, bleach=bleach)
        self._fluorescent[window] = molecules
        return image, {"timepoint": self.timepoint, "simulator": "pysted"}

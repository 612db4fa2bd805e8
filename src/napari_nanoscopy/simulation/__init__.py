"""pySTED-based simulation: structures, standard acquisitions, time series and datasets.

pySTED is imported only when an image is acquired (importing it takes seconds).
"""

from napari_nanoscopy.simulation.conditions import (
    PIXEL_SIZE_NM,
    STANDARD_CONDITIONS,
    acquire,
    acquire_pair,
    build_microscope,
    condition_set_names,
    conditions_or_standard,
    load_conditions,
    save_conditions,
)
from napari_nanoscopy.simulation.dataset import KINDS, SimulatedSample, simulate_dataset, simulate_sample
from napari_nanoscopy.simulation.series import SeriesAcquisition, acquire_series
from napari_nanoscopy.simulation.structures import (
    LOCALISATION_MAPS,
    FactinSeries,
    Structure,
    TwoLabelStructure,
    beads,
    factin,
    factin_series,
    filaments,
    localisation_map,
    nanodomains,
    twolabel,
)

__all__ = [
    "KINDS",
    "LOCALISATION_MAPS",
    "PIXEL_SIZE_NM",
    "STANDARD_CONDITIONS",
    "FactinSeries",
    "SeriesAcquisition",
    "SimulatedSample",
    "Structure",
    "TwoLabelStructure",
    "acquire",
    "acquire_pair",
    "acquire_series",
    "beads",
    "build_microscope",
    "condition_set_names",
    "conditions_or_standard",
    "factin",
    "factin_series",
    "filaments",
    "load_conditions",
    "localisation_map",
    "nanodomains",
    "save_conditions",
    "simulate_dataset",
    "simulate_sample",
    "twolabel",
]

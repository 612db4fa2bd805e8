"""Model-assisted live STED: adapters, policies, the live runner, its TA-GAN Live engine and its recorder.

Nothing here imports Qt or napari; pySTED, PyTorch, SpecPy and pymmcore-plus are imported
only by the parts that need them. See docs/live.md.
"""

from napari_nanoscopy.live.adapters import (
    CONFOCAL,
    MODALITIES,
    STED,
    AcquisitionSettings,
    AcquisitionTimeout,
    AdapterFault,
    AdapterUnresponsive,
    Capabilities,
    Frame,
    MicroscopeAdapter,
    NotArmed,
    photon_rate,
)
from napari_nanoscopy.live.budget import BudgetExceeded, DoseBudget
from napari_nanoscopy.live.faults import FaultInjectingAdapter
from napari_nanoscopy.live.policies import POLICIES, DicePolicy, VariabilityPolicy, calibrated_threshold, make_policy
from napari_nanoscopy.live.recorder import Recorder, read_session, session_layers, session_summary

_LAZY = {
    "LivePipeline": "pipeline",
    "open_session": "pipeline",
    "LiveSettings": "settings",
    "LiveRunner": "runner",
    "RunState": "runner",
    "FinishReason": "runner",
    "RunStatus": "runner",
    "FrameResult": "runner",
    "DecisionEngine": "engine",
    "TaganLiveEngine": "engine",
    "AdapterSettings": "connection",
    "make_adapter": "connection",
    "SimulatorAdapter": "simulator",
    "SpecPyAdapter": "specpy_adapter",
    "PymmcoreAdapter": "pymmcore_adapter",
    "simulated_core": "pymmcore_adapter",
}

__all__ = [
    "CONFOCAL", "MODALITIES", "POLICIES", "STED", "AcquisitionSettings", "AcquisitionTimeout", "AdapterFault",
    "AdapterUnresponsive", "BudgetExceeded", "Capabilities", "DicePolicy", "DoseBudget", "FaultInjectingAdapter",
    "Frame", "MicroscopeAdapter", "NotArmed", "Recorder", "VariabilityPolicy", "calibrated_threshold", "make_policy",
    "photon_rate",
    "read_session", "session_layers", "session_summary", *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

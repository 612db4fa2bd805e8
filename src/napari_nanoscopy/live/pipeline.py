"""Opening a TA-GAN Live session: check the settings against the adapter, load the models, open the
session folder, and hand back the :class:`~napari_nanoscopy.live.runner.LiveRunner` that runs it.

``LivePipeline(adapter, out, settings)`` (the name of this step before the runner and its engine
were separate classes) is :func:`open_session`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_nanoscopy.analysis.variability import best_patch, central_roi
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import read_json_object
from napari_nanoscopy.live.adapters import MicroscopeAdapter
from napari_nanoscopy.live.budget import DoseBudget
from napari_nanoscopy.live.engine import TaganLiveEngine
from napari_nanoscopy.live.policies import DEFAULT_THRESHOLDS
from napari_nanoscopy.live.recorder import SESSION_FILE, Recorder
from napari_nanoscopy.live.runner import FrameResult, LiveRunner
from napari_nanoscopy.live.settings import LiveSettings


def open_session(
    adapter: MicroscopeAdapter,
    out,
    settings: LiveSettings | None = None,
    *,
    budget: DoseBudget | None = None,
    generator=None,
    segmenter=None,
    resume: bool = False,
    on_frame: Callable[[FrameResult], None] | None = None,
) -> LiveRunner:
    """A runner of the live loop on ``adapter``, recording in ``out`` (a new session folder, or with
    ``resume=True`` the session already in it, picked up where its log ends).

    ``generator`` / ``segmenter`` override the settings' model names with a loaded
    :class:`~napari_nanoscopy.packages.ModelPackage` (or a path). ``on_frame`` is called
    with a :class:`~napari_nanoscopy.live.runner.FrameResult` after every frame. Every check
    (settings, patch and ROI against the field, models) runs before the folder is written.
    """
    settings = settings or LiveSettings()
    settings.check()
    budget = budget or DoseBudget()
    caps = adapter.capabilities()
    roi = central_roi(caps.field_shape, settings.roi)
    if settings.patch < caps.min_patch:
        raise NanoscopyError(
            f"The STED patch of {settings.patch} px is smaller than the {caps.min_patch} px the "
            f"{adapter.name} adapter can scan; use a larger patch."
        )
    best_patch(np.zeros(caps.field_shape), settings.patch, exclude=roi)  # a patch fits outside the ROI
    engine = TaganLiveEngine.load(settings, generator, segmenter)
    session = {
        "settings": settings.to_dict(),
        "budget": budget.to_dict(),
        "adapter": {"name": adapter.name, "capabilities": caps.to_dict()},
        "models": engine.models,
        "roi": list(roi),
    }
    if resume:
        _refuse_a_changed_recording(Path(out).expanduser(), session)
    recorder = Recorder(out, session=session, keep_extras=settings.keep_extras, resume=resume)
    runner = LiveRunner(adapter, engine, recorder, settings, budget, roi)
    runner.finished.connect(lambda status, summary: recorder.write_summary(summary))
    runner.on_frame = on_frame
    if resume:
        runner.load_progress()
    else:
        recorder.log({"type": "start", "settings": settings.to_dict()})
    return runner


LivePipeline = open_session


def _recording_meaning(session: dict[str, Any]) -> dict[str, Any]:
    """The settings of a session.json that fix what its frames and decisions mean, by display name.

    Speed settings (device, precision, compile, threads), the seed and the dose budget may change
    when a session is resumed (a larger budget is how an exhausted session continues); these may not.
    """
    settings = session.get("settings", {})
    adapter = session.get("adapter", {})
    capabilities = adapter.get("capabilities", {})
    models = session.get("models", {})
    policy = settings.get("policy")
    threshold = settings.get("threshold")
    y0, x0, height, width = session.get("roi") or (None,) * 4
    return {
        "adapter": adapter.get("name"),
        "field size": "x".join(map(str, capabilities.get("field_shape") or [])) or None,
        "pixel size (nm)": capabilities.get("pixel_size_nm"),
        "ROI": f"{height}x{width} px at y {y0}, x {x0}" if height is not None else None,
        "policy": policy,
        "threshold": threshold if threshold is not None else DEFAULT_THRESHOLDS.get(policy),
        "reference": settings.get("reference"),
        "segment class": settings.get("segment_class"),
        "samples": settings.get("samples"),
        "disparity": settings.get("disparity"),
        "patch": settings.get("patch"),
        "generator weights (sha256)": models.get("generator", {}).get("weights_sha256"),
        "segmenter weights (sha256)": models.get("segmenter", {}).get("weights_sha256"),
    }


def _refuse_a_changed_recording(folder: Path, session: dict[str, Any]) -> None:
    """Refuse to resume the session in ``folder`` with settings that would change what it records."""
    if not (folder / SESSION_FILE).is_file():
        return  # not a session: the recorder says so
    recorded = _recording_meaning(read_json_object(folder / SESSION_FILE, "live session", "record it again"))
    now = _recording_meaning(session)
    changed = [f"{name} {recorded[name]} (now {now[name]})" for name in now
               if recorded[name] is not None and recorded[name] != now[name]]
    if changed:
        raise NanoscopyError(
            f"The session in {folder} was recorded with {'; '.join(changed)}; resume it with the settings it was "
            "recorded with, or record a new session in another folder."
        )

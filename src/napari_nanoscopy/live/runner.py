"""The live runner: the TA-GAN live-assist loop, one method per step of the paper's Table 1.

At every time point (frame):

1. acquire a confocal image of the field;
2. generate N Monte-Carlo samples of the STED image with TA-GAN Live (no STED patch yet);
3. measure the disparity between the samples (Horn–Schunck flow or std), average it over
   superpixels outside the central ROI and pick the superpixel with the largest disparity;
4. acquire that STED patch;
5. regenerate N samples with the patch as input (confocal, STED patch, patch mask);
6. segment the ROI of every sample with U-Net-Live;
7. decide with the policy (``dice``, ``variability`` or ``area``) against the reference (the
   segmentation of the last real STED, or with ``reference="synthetic"`` the synthetic
   segmentation of the frame that STED was acquired at); a trigger acquires a full STED image
   of the ROI, which becomes the new reference.

An initial reference STED of the ROI is acquired before the first frame and a final one
after the last, as in the paper. The runner owns the microscope side (acquisitions, the dose
budget, the recorder, the references) and the run's state; the models' side of steps 2, 3, 5,
6 and 7 is its :class:`~napari_nanoscopy.live.engine.DecisionEngine`. Every acquisition is
charged to the dose budget before it reaches the microscope and written to disk (with its log
record) before it is used; any adapter fault sends the microscope to its safe state, is logged,
and leaves the session resumable (:meth:`LiveRunner.resume`, or ``resume=True`` on the same
folder). :meth:`LiveRunner.pause` and :meth:`LiveRunner.stop` take effect at the next step
boundary. :attr:`LiveRunner.status` is a frozen :class:`RunStatus` snapshot; subscribers of
:attr:`LiveRunner.frame_finished`, :attr:`LiveRunner.state_changed` and :attr:`LiveRunner.finished`
(plain callbacks, called in the runner's thread) follow the run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live.adapters import CONFOCAL, STED, AdapterFault, Frame, MicroscopeAdapter, Region
from napari_nanoscopy.live.budget import BudgetExceeded, DoseBudget
from napari_nanoscopy.live.engine import DecisionEngine, Predictor
from napari_nanoscopy.live.policies import Decision, Policy
from napari_nanoscopy.live.recorder import Recorder, read_session
from napari_nanoscopy.live.settings import SEED_STRIDE, LiveSettings

# What each kind of acquisition is charged as by the dose budget.
BUDGET_KIND = {"confocal": "confocal", "after_sted_confocal": "confocal", "patch": "patch", "sted": "sted",
               "reference": "sted"}
STEPS = ("1_confocal", "2_generate", "3_disparity", "4_sted_patch", "5_regenerate", "6_segment", "7_decide")
DECISION_STEPS = ("2_generate", "3_disparity", "5_regenerate", "6_segment", "7_decide")


class RunState(str, Enum):
    """Where a session stands; a run ends in one of the last five (the ``state`` of summary.json)."""

    READY = "ready"
    RUNNING = "running"
    DONE = "done"  # every frame and the final reference
    STOPPED = "stopped"  # paused or stopped at a step boundary; resumable
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM; resumable from disk
    FAULTED = "faulted"  # the microscope failed and is in its safe state; resumable
    BUDGET_EXHAUSTED = "budget exhausted"  # resumable with a larger budget


class FinishReason(str, Enum):
    """Why a run returned."""

    COMPLETED = "completed"
    PAUSED = "paused"  # pause(): the session continues with resume()
    STOPPED = "stopped"  # stop(): the session is over
    INTERRUPTED = "interrupted"
    FAULT = "fault"
    BUDGET = "budget"


@dataclass(frozen=True)
class RunStatus:
    """A snapshot of a runner, safe to read from another thread."""

    state: RunState
    finish_reason: FinishReason | None  # None until a run ends
    folder: Path
    next_frame: int  # the frame the next run starts at
    frames_requested: int | None
    step: str  # the step running, or the last one run
    acquisitions: int
    sted_acquisitions: int  # full STED images triggered by decisions
    dose_photons: float
    faults: int


class Signal:
    """Plain callbacks called in order with the emitted values (no Qt: the widget hops threads itself)."""

    def __init__(self):
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._callbacks.remove(callback)

    def emit(self, *values) -> None:
        for callback in list(self._callbacks):
            callback(*values)


@dataclass
class FrameResult:
    """What one frame produced (for display and tests); arrays are on the field's grid."""

    frame: int
    confocal: np.ndarray
    synthetic: np.ndarray  # mean of the step-5 samples
    disparity: np.ndarray
    patch: Region | None
    segmentation: np.ndarray  # mean segmentation of the ROI (bool)
    decision: Decision
    sted: np.ndarray | None  # the full STED of the ROI when one was acquired
    timings_s: dict[str, float]
    dose_photons: float
    roi: Region
    declined: str | None = None


class _Halt(Exception):
    """A pause or stop reached a step boundary."""


class LiveRunner:
    """Runs the live loop of ``engine`` on ``adapter``, recording it with ``recorder``.

    :func:`napari_nanoscopy.live.pipeline.open_session` (``LivePipeline``) builds one from
    settings: it checks them, loads the models and opens the session folder.
    """

    def __init__(self, adapter: MicroscopeAdapter, engine: DecisionEngine, recorder: Recorder, settings: LiveSettings,
                 budget: DoseBudget, roi: Region):
        self.adapter, self.engine, self.recorder, self.settings, self.budget = adapter, engine, recorder, settings, budget
        self.roi = roi
        self.folder = recorder.folder
        self.frame_finished = Signal()  # FrameResult, after every frame
        self.state_changed = Signal()  # RunStatus, when a run starts and ends
        self.finished = Signal()  # (RunStatus, summary) when a run ends, before it returns or raises
        self.reference_mask: np.ndarray | None = None  # segmentation of the last real STED of the ROI
        self.reference_image: np.ndarray | None = None
        self.reference_frame: int | None = None  # the frame (time point) of the last real STED
        self.synthetic_reference: np.ndarray | None = None  # mean synthetic segmentation at reference_frame
        self.next_frame = 0
        self.initial_done = False
        self.final_done = False
        self.state = RunState.READY
        self.finish_reason: FinishReason | None = None
        self.frames_requested: int | None = None
        self.results: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.charges: list[dict[str, Any]] = []  # every charge, with its kind (confocal, patch, sted, reference)
        self.references: list[str] = []  # "initial", "trigger", "final" for each reference acquired
        self.final_reference_declined: str | None = None  # why the budget refused the final reference
        self._halt: FinishReason | None = None
        self._step = ""
        self._on_frame: Callable[[FrameResult], None] | None = None

    # -- control ------------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop at the next step boundary (the microscope is left in its safe state); :meth:`resume` continues."""
        self._halt = FinishReason.PAUSED

    request_stop = pause  # the name scripts used before the runner had pause() and stop()

    def stop(self) -> None:
        """Stop at the next step boundary and end the session (recorded as a pause: it stays resumable from disk)."""
        self._halt = FinishReason.STOPPED

    @property
    def on_frame(self) -> Callable[[FrameResult], None] | None:
        """One subscriber of :attr:`frame_finished`, replaced by assigning another."""
        return self._on_frame

    @on_frame.setter
    def on_frame(self, callback: Callable[[FrameResult], None] | None) -> None:
        if self._on_frame is not None:
            self.frame_finished.disconnect(self._on_frame)
        self._on_frame = callback
        if callback is not None:
            self.frame_finished.connect(callback)

    @property
    def status(self) -> RunStatus:
        return RunStatus(
            state=self.state, finish_reason=self.finish_reason, folder=self.folder, next_frame=self.next_frame,
            frames_requested=self.frames_requested, step=self._step, acquisitions=self.recorder.acquisitions,
            sted_acquisitions=sum(1 for r in self.results if r.get("sted_acquired")),
            dose_photons=self.budget.dose_photons, faults=len(self.faults),
        )

    def use_predictors(self, generator: Predictor, segmenter: Predictor) -> None:
        """Run the engine's networks on these predictors from the next step on (for example remote workers)."""
        self.engine = self.engine.with_predictors(generator, segmenter)

    def run(self, frames: int) -> dict[str, Any]:
        """Run (or continue) the session up to ``frames`` time points; returns the summary."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise NanoscopyError(f"The number of frames must be a whole number of at least 1; got {frames!r}.")
        self._halt, self.finish_reason, self.frames_requested = None, None, frames
        self._set_state(RunState.RUNNING)
        try:
            self._loop(frames)
            self._end(RunState.DONE, FinishReason.COMPLETED)
        except _Halt:
            self._safe()
            self.recorder.log({"type": "stop", "frame": self.next_frame})
            self._end(RunState.STOPPED, self._halt)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: say what is on disk, then stop the caller too
            self._safe()
            self.recorder.log({"type": "stop", "frame": self.next_frame, "step": self._step, "interrupted": True})
            self._end(RunState.INTERRUPTED, FinishReason.INTERRUPTED)
            self._finish(frames)
            raise
        except AdapterFault as fault:
            self._fault(fault)
        except BudgetExceeded as refusal:
            self._safe()
            self.recorder.log({"type": "budget", "frame": self.next_frame, "step": self._step, "message": str(refusal)})
            self._end(RunState.BUDGET_EXHAUSTED, FinishReason.BUDGET)
        except BaseException as error:
            self._fault(error)
            raise
        return self._finish(frames)

    def resume(self, frames: int) -> dict[str, Any]:
        """Continue after a fault or a stop (the adapter must be usable again)."""
        self.recorder.log({"type": "resume", "frame": self.next_frame})
        return self.run(frames)

    def close(self) -> None:
        self.recorder.close()

    # -- the steps ----------------------------------------------------------------------------

    def _loop(self, frames: int) -> None:
        if self.settings.initial_reference and not self.initial_done:
            self.adapter.begin_frame(0)
            self._reference("initial", 0)
            self.initial_done = True
        while self.next_frame < frames:
            self._check_halt()
            frame = self.next_frame
            self.adapter.begin_frame(frame)
            self._frame(frame)
            self.next_frame = frame + 1
        if self.settings.final_reference and not self.final_done:
            self._check_halt()
            self._final_reference(frames - 1)

    def _frame(self, t: int) -> FrameResult:
        engine, timings = self.engine, {}
        seed = self.settings.seed * SEED_STRIDE + 2 * t
        with self._timed("1_confocal", timings):
            confocal = self._acquire("confocal", CONFOCAL, None, t)
        with self._timed("2_generate", timings):
            samples = engine.generate(confocal, None, seed)
        with self._timed("3_disparity", timings):
            disparity, patch = engine.propose_patch(samples, self.roi)
        declined = None
        with self._timed("4_sted_patch", timings):
            reason = self.budget.refusal("patch", self.adapter.estimate_dose(STED, patch), t)
            if reason is None:
                patch_frame = self._acquire("patch", STED, patch, t)
            else:
                patch_frame, declined = None, f"STED patch skipped: {reason}"
        with self._timed("5_regenerate", timings):
            samples = engine.generate(confocal, patch_frame, seed + 1)
        with self._timed("6_segment", timings):
            outputs = self._segment(_crop(samples, self.roi))
        with self._timed("7_decide", timings):
            synthetic = self.settings.reference == "synthetic"
            if synthetic and self.synthetic_reference is None and self.reference_frame == t:
                # the real STED was acquired at this very time point (the initial reference)
                self._set_synthetic_reference(engine.mask(outputs), t)
            decision = engine.decide(outputs, self.synthetic_reference if synthetic else self.reference_mask)
        sted = None
        if decision.trigger:
            reason = self.budget.refusal("sted", self.adapter.estimate_dose(STED, self.roi), t)
            if reason is None:
                sted = self._reference("trigger", t)
                if synthetic:
                    self._set_synthetic_reference(self._synthetic_after_sted(patch_frame, seed + 1, t), t)
            else:
                declined = f"full STED declined: {reason}"
        timings["decision_total"] = sum(timings[step] for step in DECISION_STEPS)
        self._record_decision(t, decision, patch, patch_frame, sted, declined, timings,
                              {"samples": samples, "disparity": disparity, "segmentation_outputs": outputs})
        result = FrameResult(
            frame=t, confocal=confocal.data, synthetic=samples.mean(axis=0), disparity=disparity, patch=patch,
            segmentation=decision.maps.get("mean_segmentation"), decision=decision, sted=sted, timings_s=timings,
            dose_photons=self.budget.dose_photons, roi=self.roi, declined=declined,
        )
        self.frame_finished.emit(result)
        return result

    def _record_decision(self, t: int, decision: Decision, patch: Region, patch_frame: Frame | None,
                         sted: np.ndarray | None, declined: str | None, timings: dict[str, float],
                         arrays: dict[str, np.ndarray]) -> None:
        extras = {}
        for name, array in arrays.items():
            path = self.recorder.write_extra(name, t, array)
            if path:
                extras[name] = path
        record = {
            "type": "decision", "frame": t, **decision.to_dict(), "reference": self.settings.reference,
            "foreground_px": int(np.count_nonzero(decision.maps["mean_segmentation"])), "patch": list(patch),
            "patch_acquired": patch_frame is not None, "sted_acquired": sted is not None, "declined": declined,
            "disparity": self.settings.disparity, "latency_s": timings,
            "dose_photons_so_far": self.budget.dose_photons, "sted_frames_so_far": self.budget.sted_frames(),
            "models_sha256": {name: model["weights_sha256"] for name, model in self.engine.models.items()},
            "extras": extras,
        }
        self.recorder.log(record)
        self.results.append(record)

    def _acquire(self, kind: str, modality: str, region: Region | None, t: int) -> Frame:
        """Charge the budget, acquire, and put the frame on disk before anyone uses it."""
        self._check_halt()
        dose = self.adapter.estimate_dose(modality, region)
        self.budget.charge(BUDGET_KIND[kind], dose, t)
        charge = {"type": "charge", "kind": kind, "modality": modality, "frame": t, "dose_photons": dose,
                  "region": list(region) if region else None}
        self.charges.append(charge)
        self.recorder.log(charge)
        frame = self.adapter.acquire(modality, region)
        self.recorder.write_frame(frame, kind=kind, frame_number=t)
        return frame

    def _reference(self, when: str, t: int) -> np.ndarray:
        self._step = f"reference_{when}"
        frame = self._acquire("reference" if when != "trigger" else "sted", STED, self.roi, t)
        self._set_reference(frame.data)
        self.reference_frame = t
        self.synthetic_reference = None  # until this time point's synthetic segmentation is known
        self.references.append(when)
        self.recorder.log({"type": "reference", "when": when, "frame": t, "index": frame.index,
                           "foreground": int(np.count_nonzero(self.reference_mask))})
        return frame.data

    def _final_reference(self, t: int) -> None:
        """The final reference, unless the budget refuses it: every frame is done, so the session is too."""
        try:
            self._reference("final", t)
            self.final_done = True
        except BudgetExceeded as refusal:
            self.final_reference_declined = str(refusal)
            self.recorder.log({"type": "budget", "frame": t, "step": self._step, "message": str(refusal)})

    def _set_reference(self, image: np.ndarray) -> None:
        self.reference_image = image
        self.reference_mask = self.engine.mask(self._segment(image[np.newaxis]))

    def _synthetic_after_sted(self, patch: Frame | None, seed: int, t: int) -> np.ndarray:
        """Mean synthetic segmentation of a confocal taken right after a triggered STED.

        The STED bleached the ROI (about a fifth of its molecules in the simulator) and every
        later confocal sees it bleached; a reference from the confocal before it would make the
        next frames differ from it by the bleaching alone, trigger again and bleach again. Same
        time point, same patch and dropout seed as the decision: only the bleaching differs.
        """
        confocal = self._acquire("after_sted_confocal", CONFOCAL, None, t)
        return self.engine.mask(self._segment(_crop(self.engine.generate(confocal, patch, seed), self.roi)))

    def _set_synthetic_reference(self, mask: np.ndarray, t: int) -> None:
        self.synthetic_reference = np.asarray(mask, dtype=bool)
        self.recorder.write_reference_mask(self.synthetic_reference, t)

    def _segment(self, images: np.ndarray) -> np.ndarray:
        return self.engine.segment(images, self.adapter.capabilities().pixel_size_nm)

    # -- the engine's parts, read and set through the runner as before it had an engine --------

    @property
    def policy(self) -> Policy:
        return self.engine.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self.engine.policy = policy

    @property
    def binarisation(self) -> float:
        return self.engine.binarisation

    @binarisation.setter
    def binarisation(self, value: float) -> None:
        self.engine.binarisation = value

    @property
    def generator(self) -> Predictor:
        return self.engine.generator

    @property
    def segmenter(self) -> Predictor:
        return self.engine.segmenter

    @property
    def generator_card(self):
        return self.engine.generator_card

    # -- bookkeeping --------------------------------------------------------------------------

    @contextmanager
    def _timed(self, step: str, timings: dict[str, float]):
        self._step = step
        start = time.perf_counter()
        yield
        timings[step] = time.perf_counter() - start

    def _check_halt(self) -> None:
        if self._halt is not None:
            raise _Halt()

    def _set_state(self, state: RunState) -> None:
        self.state = state
        self.state_changed.emit(self.status)

    def _end(self, state: RunState, reason: FinishReason) -> None:
        self.finish_reason = reason
        self._set_state(state)

    def _finish(self, frames: int) -> dict[str, Any]:
        summary = self.summary(frames)
        self.finished.emit(self.status, summary)
        return summary

    def _safe(self) -> None:
        try:
            self.adapter.safe_state()
        except Exception:  # noqa: BLE001 - already in a fault; the log says what happened
            pass

    def _fault(self, error: BaseException) -> None:
        self._safe()
        record = {"type": "fault", "frame": self.next_frame, "step": self._step, "error": type(error).__name__,
                  "message": str(error), "safe_state": True}
        self.faults.append(record)
        self.recorder.log(record)
        self._end(RunState.FAULTED, FinishReason.FAULT)

    def load_progress(self) -> None:
        """Pick up the session recorded in the recorder's folder where its log ends (charges, decisions,
        faults, references) and log the resumption."""
        session = read_session(self.folder)
        for charge in session.records_of("charge"):
            kind = BUDGET_KIND[charge["kind"]]
            self.budget.charges.append({"kind": kind, "dose_photons": charge["dose_photons"], "frame": charge["frame"]})
            self.charges.append(charge)
        decisions = session.records_of("decision")
        self.results = decisions
        self.faults = session.records_of("fault")
        self.next_frame = 1 + max((r["frame"] for r in decisions), default=-1)
        references = session.records_of("reference")
        self.references = [r["when"] for r in references]
        self.initial_done = any(r["when"] == "initial" for r in references)
        self.final_done = any(r["when"] == "final" for r in references)
        if references:
            last = references[-1]
            acquisition = next(a for a in session.acquisitions if a["index"] == last["index"])
            self._set_reference(session.image(acquisition))
            self.reference_frame = last["frame"]
            self.synthetic_reference = session.reference_mask(last["frame"])
        self.recorder.log({"type": "resume", "frame": self.next_frame, "from_disk": True})

    def summary(self, frames: int | None = None) -> dict[str, Any]:
        triggered = [r["frame"] for r in self.results if r.get("sted_acquired")]
        n = len(self.results)
        sted_roi_dose = self.adapter.estimate_dose(STED, self.roi)
        # the frames' own light (confocal, patches, triggered STED), not the initial/final references
        loop_dose = sum(c["dose_photons"] for c in self.charges if c["kind"] != "reference")
        latency = {}
        for step in (*STEPS, "decision_total"):
            values = [r["latency_s"][step] for r in self.results if step in r.get("latency_s", {})]
            if values:
                latency[step] = {"median": statistics.median(values), "min": min(values)}
        summary = {
            "session": str(self.folder),
            "state": self.state.value,
            "policy": self.policy.name,
            "threshold": self.policy.threshold,
            "frames": n,
            "frames_requested": frames,
            "acquisitions": self.recorder.acquisitions,
            "sted_acquisitions": len(triggered),
            "sted_fraction": len(triggered) / n if n else 0.0,
            "triggered_frames": triggered,
            "declined": [r["frame"] for r in self.results if r.get("declined")],
            "references": sum(1 for when in self.references if when != "trigger"),
            "final_reference_declined": self.final_reference_declined,
            "dose_photons": self.budget.dose_photons,
            "dose_relative_to_sted_every_frame": (loop_dose / (n * sted_roi_dose)) if n and sted_roi_dose else None,
            "sted_dose_relative_to_sted_every_frame": len(triggered) / n if n else None,
            "faults": len(self.faults),
            "latency_s": latency,
        }
        onsets = getattr(self.adapter, "remodelling_onsets", None)
        if onsets is not None and not callable(onsets):
            detected = [o for o in onsets if any(o <= f <= o + 1 for f in triggered)]
            summary["remodelling"] = {"onsets": list(onsets), "detected": detected,
                                      "missed": [o for o in onsets if o not in detected]}
        return summary


def _crop(stack: np.ndarray, region: Region) -> np.ndarray:
    y0, x0, height, width = region
    return stack[..., y0:y0 + height, x0:x0 + width]

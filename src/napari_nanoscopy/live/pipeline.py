"""The TA-GAN live-assist loop: one method per step of the paper's Table 1.

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
after the last, as in the paper. Every acquisition is charged to the dose budget before it
reaches the microscope and written to disk (with its log record) before it is used; any
adapter fault sends the microscope to its safe state, is logged, and leaves the session
resumable (:meth:`LivePipeline.resume`, or ``resume=True`` on the same folder).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_nanoscopy.analysis.variability import DISPARITY_METHODS, best_patch, central_roi, disparity_map
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import read_json_object
from napari_nanoscopy.limits import MAX_SEED, check_int, check_samples
from napari_nanoscopy.live.adapters import CONFOCAL, STED, AdapterFault, Frame, MicroscopeAdapter, Region
from napari_nanoscopy.live.budget import BudgetExceeded, DoseBudget
from napari_nanoscopy.live.policies import DEFAULT_THRESHOLDS, POLICIES, Decision, make_policy
from napari_nanoscopy.live.recorder import SESSION_FILE, Recorder, read_session

DEFAULT_GENERATOR = "tagan-live-factin"
SEED_STRIDE = 100_003  # frame t draws its dropout masks from seed * SEED_STRIDE + 2 t (and + 1)
DEFAULT_SEGMENTER = "unet-live-factin"
# What the dice and area policies compare the synthetic segmentation with: the segmentation of the
# last real STED (the paper), or the synthetic segmentation of the frame that STED was acquired at
# (our option: the systematic bias of generator and segmenter is on both sides and cancels).
REFERENCES = ("sted", "synthetic")
# What each kind of acquisition is charged as by the dose budget.
BUDGET_KIND = {"confocal": "confocal", "after_sted_confocal": "confocal", "patch": "patch", "sted": "sted",
               "reference": "sted"}
STEPS = ("1_confocal", "2_generate", "3_disparity", "4_sted_patch", "5_regenerate", "6_segment", "7_decide")
DECISION_STEPS = ("2_generate", "3_disparity", "5_regenerate", "6_segment", "7_decide")


@dataclass
class LiveSettings:
    """Everything the loop is parameterised by (the defaults are the paper's)."""

    policy: str = "dice"
    threshold: float | None = None  # None: the policy's default (0.5)
    samples: int = 10
    disparity: str = "optical-flow"
    patch: int = 100  # superpixel / STED patch side, pixels
    roi: int = 300  # central ROI side, pixels (monitored, segmented, imaged by a triggered STED)
    generator: str = DEFAULT_GENERATOR  # TA-GAN Live model: bundled name, folder or .zip
    segmenter: str = DEFAULT_SEGMENTER  # U-Net-Live model
    segment_class: str = "fibres"
    reference: str = "sted"  # dice and area: "sted" (the paper) or "synthetic" (see REFERENCES)
    device: str = "auto"
    precision: str = "fp32"  # "bf16": both networks in bfloat16 (about 1.7x faster where the CPU has it)
    compile: bool = False  # torch.compile both networks: faster decisions, the first frame compiles
    seed: int = 0
    initial_reference: bool = True
    final_reference: bool = True
    keep_extras: bool = False
    flow_alpha: float = 1.0
    flow_iterations: int = 100
    threads: int | None = None

    def check(self) -> None:
        if self.policy not in POLICIES:
            raise NanoscopyError(f"The policy must be one of {', '.join(POLICIES)}; got {self.policy!r}.")
        make_policy(self.policy, self.threshold)
        if self.reference not in REFERENCES:
            raise NanoscopyError(f"The reference must be one of {', '.join(REFERENCES)}; got {self.reference!r}.")
        if self.policy == "variability" and self.reference != "sted":
            raise NanoscopyError(
                "The variability policy scores the spread of the segmentation samples and compares with no "
                f"reference, so reference {self.reference!r} would change nothing; use the dice or area policy "
                "with it, or leave the reference at 'sted' (the default)."
            )
        from napari_nanoscopy.inference import PRECISIONS  # imports torch: not at module import

        if self.precision not in PRECISIONS:
            raise NanoscopyError(f"The precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}.")
        if self.disparity not in DISPARITY_METHODS:
            raise NanoscopyError(f"The disparity must be one of {', '.join(DISPARITY_METHODS)}; got {self.disparity!r}.")
        for name, low in (("samples", 2), ("patch", 1), ("roi", 1), ("flow_iterations", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise NanoscopyError(f"The live setting {name} must be a whole number of at least {low}; got {value!r}.")
        check_samples(self.samples)
        # each frame's dropout seed is seed * SEED_STRIDE + 2 t (+ 1): it must stay a valid seed
        check_int("The live setting seed", self.seed, 0, MAX_SEED // SEED_STRIDE - 1, "pick a smaller seed")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


class _Stopped(Exception):
    pass


class LivePipeline:
    """Runs the live loop on an adapter and records it in ``out`` (a session folder).

    ``generator`` / ``segmenter`` override the settings' model names with a loaded
    :class:`~napari_nanoscopy.packages.ModelPackage` (or a path). ``on_frame`` is called
    with a :class:`FrameResult` after every frame.
    """

    def __init__(
        self,
        adapter: MicroscopeAdapter,
        out,
        settings: LiveSettings | None = None,
        *,
        budget: DoseBudget | None = None,
        generator=None,
        segmenter=None,
        resume: bool = False,
        on_frame: Callable[[FrameResult], None] | None = None,
    ):
        from napari_nanoscopy.inference import Restorer
        from napari_nanoscopy.packages import ModelPackage, load_model

        self.settings = settings or LiveSettings()
        self.settings.check()
        self.adapter = adapter
        self.budget = budget or DoseBudget()
        self.policy = make_policy(self.settings.policy, self.settings.threshold)
        self.on_frame = on_frame
        caps = adapter.capabilities()
        self.field_shape = caps.field_shape
        self.roi = central_roi(self.field_shape, self.settings.roi)
        if self.settings.patch < caps.min_patch:
            raise NanoscopyError(
                f"The STED patch of {self.settings.patch} px is smaller than the {caps.min_patch} px the "
                f"{adapter.name} adapter can scan; use a larger patch."
            )
        best_patch(np.zeros(self.field_shape), self.settings.patch, exclude=self.roi)  # a patch fits outside the ROI

        generator_package = _package(generator if generator is not None else self.settings.generator, load_model, ModelPackage)
        segmenter_package = _package(segmenter if segmenter is not None else self.settings.segmenter, load_model, ModelPackage)
        self.generator_card = generator_package.card
        self.segmenter_card = segmenter_package.card
        if len(self.generator_card.input_channels) != 3:
            raise NanoscopyError(
                f"The live generator must take 3 channels (confocal, STED patch, patch mask) like TA-GAN Live; "
                f"'{self.generator_card.name}' takes {len(self.generator_card.input_channels)}. Pick a tagan-live model."
            )
        if not self.segmenter_card.task:
            raise NanoscopyError(
                f"The segmenter '{self.segmenter_card.name}' has no segmentation outputs; pick a U-Net-Live model."
            )
        outputs = list(self.segmenter_card.task["outputs"])
        if self.settings.segment_class not in outputs:
            raise NanoscopyError(
                f"The segmenter '{self.segmenter_card.name}' segments {', '.join(outputs)}, not "
                f"{self.settings.segment_class!r}; set segment_class to one of them."
            )
        self.class_index = outputs.index(self.settings.segment_class)
        self.binarisation = float(self.segmenter_card.task["thresholds"][self.class_index])
        # The generator's own task network is not needed: U-Net-Live segments the samples.
        generator_only = ModelPackage(
            dataclasses.replace(self.generator_card, task=None, task_network=None),
            generator_package.generator, None, generator_package.source,
        )
        precision = self.settings.precision
        compiled = self.settings.compile
        self.generator = Restorer(generator_only, device=self.settings.device, precision=precision, compile=compiled)
        self.segmenter = Restorer(segmenter_package, device=self.settings.device, precision=precision, compile=compiled)
        normalization = self.generator_card.normalization
        self.patch_spec = dict(normalization.get("sted_patch") or self.generator_card.input_normalizations()[0])

        session = {
            "settings": self.settings.to_dict(),
            "budget": self.budget.to_dict(),
            "adapter": {"name": adapter.name, "capabilities": caps.to_dict()},
            "models": {
                "generator": {"name": self.generator_card.name, "weights_sha256": self.generator_card.weights_sha256,
                              "source": generator_package.source},
                "segmenter": {"name": self.segmenter_card.name, "weights_sha256": self.segmenter_card.weights_sha256,
                              "source": segmenter_package.source},
            },
            "roi": list(self.roi),
        }
        if resume:
            _refuse_a_changed_recording(Path(out).expanduser(), session)
        self.recorder = Recorder(out, session=session, keep_extras=self.settings.keep_extras, resume=resume)
        self.folder = self.recorder.folder
        self.reference_mask: np.ndarray | None = None  # segmentation of the last real STED of the ROI
        self.reference_image: np.ndarray | None = None
        self.reference_frame: int | None = None  # the frame (time point) of the last real STED
        self.synthetic_reference: np.ndarray | None = None  # mean synthetic segmentation at reference_frame
        self.next_frame = 0
        self.initial_done = False
        self.final_done = False
        self.state = "ready"
        self.results: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.charges: list[dict[str, Any]] = []  # every charge, with its kind (confocal, patch, sted, reference)
        self.references: list[str] = []  # "initial", "trigger", "final" for each reference acquired
        self.final_reference_declined: str | None = None  # why the budget refused the final reference
        self._stop = False
        self._step = ""
        if resume:
            self._restore_from_log()
        else:
            self.recorder.log({"type": "start", "settings": self.settings.to_dict()})

    # -- control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop at the next step boundary (the microscope is left in its safe state)."""
        self._stop = True

    def run(self, frames: int) -> dict[str, Any]:
        """Run (or continue) the session up to ``frames`` time points; returns the summary."""
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise NanoscopyError(f"The number of frames must be a whole number of at least 1; got {frames!r}.")
        self._stop = False
        self.state = "running"
        try:
            if self.settings.initial_reference and not self.initial_done:
                self.adapter.begin_frame(0)
                self._reference("initial", 0)
                self.initial_done = True
            while self.next_frame < frames:
                self._check_stop()
                frame = self.next_frame
                self.adapter.begin_frame(frame)
                self._frame(frame)
                self.next_frame = frame + 1
            if self.settings.final_reference and not self.final_done:
                self._check_stop()
                self._final_reference(frames - 1)
            self.state = "done"
        except _Stopped:
            self.state = "stopped"
            self._safe()
            self.recorder.log({"type": "stop", "frame": self.next_frame})
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: say what is on disk, then stop the caller too
            self.state = "interrupted"
            self._safe()
            self.recorder.log({"type": "stop", "frame": self.next_frame, "step": self._step, "interrupted": True})
            self.recorder.write_summary(self.summary(frames))
            raise
        except AdapterFault as fault:
            self._fault(fault)
        except BudgetExceeded as refusal:
            self.state = "budget exhausted"
            self._safe()
            self.recorder.log({"type": "budget", "frame": self.next_frame, "step": self._step, "message": str(refusal)})
        except BaseException as error:
            self._fault(error)
            raise
        summary = self.summary(frames)
        self.recorder.write_summary(summary)
        return summary

    def resume(self, frames: int) -> dict[str, Any]:
        """Continue after a fault or a stop (the adapter must be usable again)."""
        self.recorder.log({"type": "resume", "frame": self.next_frame})
        return self.run(frames)

    def close(self) -> None:
        self.recorder.close()

    # -- the steps ----------------------------------------------------------------------------

    def _frame(self, t: int) -> FrameResult:
        timings: dict[str, float] = {}
        seed = self.settings.seed * SEED_STRIDE + 2 * t
        with self._timed("1_confocal", timings):
            confocal = self._acquire("confocal", CONFOCAL, None, t)
        with self._timed("2_generate", timings):
            samples = self._generate(confocal, None, seed)
        with self._timed("3_disparity", timings):
            disparity = disparity_map(samples, self.settings.disparity, alpha=self.settings.flow_alpha,
                                      iterations=self.settings.flow_iterations, threads=self.settings.threads)
            patch = best_patch(disparity, self.settings.patch, exclude=self.roi)
        declined = None
        with self._timed("4_sted_patch", timings):
            reason = self.budget.refusal("patch", self.adapter.estimate_dose(STED, patch), t)
            if reason is None:
                patch_frame = self._acquire("patch", STED, patch, t)
            else:
                patch_frame, declined = None, f"STED patch skipped: {reason}"
        with self._timed("5_regenerate", timings):
            samples = self._generate(confocal, patch_frame, seed + 1)
        with self._timed("6_segment", timings):
            outputs = self._segment(_crop(samples, self.roi))
        with self._timed("7_decide", timings):
            synthetic = self.settings.reference == "synthetic"
            if synthetic and self.synthetic_reference is None and self.reference_frame == t:
                # the real STED was acquired at this very time point (the initial reference)
                self._set_synthetic_reference(outputs.mean(axis=0) > self.binarisation, t)
            reference = self.synthetic_reference if synthetic else self.reference_mask
            decision = self.policy.decide(outputs, self.binarisation, reference)
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
        extras = {}
        for name, array in (("samples", samples), ("disparity", disparity), ("segmentation_outputs", outputs)):
            path = self.recorder.write_extra(name, t, array)
            if path:
                extras[name] = path
        record = {
            "type": "decision", "frame": t, **decision.to_dict(), "reference": self.settings.reference,
            "foreground_px": int(np.count_nonzero(decision.maps["mean_segmentation"])), "patch": list(patch),
            "patch_acquired": patch_frame is not None, "sted_acquired": sted is not None, "declined": declined,
            "disparity": self.settings.disparity, "latency_s": timings,
            "dose_photons_so_far": self.budget.dose_photons, "sted_frames_so_far": self.budget.sted_frames(),
            "models_sha256": {"generator": self.generator_card.weights_sha256,
                              "segmenter": self.segmenter_card.weights_sha256},
            "extras": extras,
        }
        self.recorder.log(record)
        self.results.append(record)
        result = FrameResult(
            frame=t, confocal=confocal.data, synthetic=samples.mean(axis=0), disparity=disparity, patch=patch,
            segmentation=decision.maps.get("mean_segmentation"), decision=decision, sted=sted, timings_s=timings,
            dose_photons=self.budget.dose_photons, roi=self.roi, declined=declined,
        )
        if self.on_frame is not None:
            self.on_frame(result)
        return result

    def _acquire(self, kind: str, modality: str, region: Region | None, t: int) -> Frame:
        """Charge the budget, acquire, and put the frame on disk before anyone uses it."""
        self._check_stop()
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
        outputs = self._segment(image[np.newaxis])
        self.reference_image = image
        self.reference_mask = outputs[0] > self.binarisation

    def _synthetic_after_sted(self, patch: Frame | None, seed: int, t: int) -> np.ndarray:
        """Mean synthetic segmentation of a confocal taken right after a triggered STED.

        The STED bleached the ROI (about a fifth of its molecules in the simulator) and every
        later confocal sees it bleached; a reference from the confocal before it would make the
        next frames differ from it by the bleaching alone, trigger again and bleach again. Same
        time point, same patch and dropout seed as the decision: only the bleaching differs.
        """
        confocal = self._acquire("after_sted_confocal", CONFOCAL, None, t)
        outputs = self._segment(_crop(self._generate(confocal, patch, seed), self.roi))
        return outputs.mean(axis=0) > self.binarisation

    def _set_synthetic_reference(self, mask: np.ndarray, t: int) -> None:
        self.synthetic_reference = np.asarray(mask, dtype=bool)
        self.recorder.write_reference_mask(self.synthetic_reference, t)

    def _generate(self, confocal: Frame, patch: Frame | None, seed: int) -> np.ndarray:
        from napari_nanoscopy.training.datasets import sted_patch_channels

        height, width = confocal.data.shape
        canvas = np.zeros((height, width), np.float32)
        mask = np.zeros((height, width), bool)
        if patch is not None:
            y0, x0, h, w = patch.region
            canvas[y0:y0 + h, x0:x0 + w] = patch.data
            mask[y0:y0 + h, x0:x0 + w] = True
        channels = sted_patch_channels(canvas, mask, self.patch_spec)
        image = np.concatenate([confocal.data[np.newaxis].astype(np.float32), channels])
        result = self.generator.restore(image, pixel_size_nm=confocal.pixel_size_nm, samples=self.settings.samples,
                                        keep_samples=True, seed=seed)
        return result.samples

    def _segment(self, images: np.ndarray) -> np.ndarray:
        """Raw outputs of the monitored class for a (N, Y, X) stack: (N, Y, X)."""
        pixel = self.adapter.capabilities().pixel_size_nm
        result = self.segmenter.restore(images, pixel_size_nm=pixel, samples=1)
        return result.task[:, self.class_index]

    # -- bookkeeping --------------------------------------------------------------------------

    @contextmanager
    def _timed(self, step: str, timings: dict[str, float]):
        self._step = step
        start = time.perf_counter()
        yield
        timings[step] = time.perf_counter() - start

    def _check_stop(self) -> None:
        if self._stop:
            raise _Stopped()

    def _safe(self) -> None:
        try:
            self.adapter.safe_state()
        except Exception:  # noqa: BLE001 - already in a fault; the log says what happened
            pass

    def _fault(self, error: BaseException) -> None:
        self._safe()
        self.state = "faulted"
        record = {"type": "fault", "frame": self.next_frame, "step": self._step, "error": type(error).__name__,
                  "message": str(error), "safe_state": True}
        self.faults.append(record)
        self.recorder.log(record)

    def _restore_from_log(self) -> None:
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
            "state": self.state,
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


def _crop(stack: np.ndarray, region: Region) -> np.ndarray:
    y0, x0, height, width = region
    return stack[..., y0:y0 + height, x0:x0 + width]


def _package(model, load_model, package_type):
    if isinstance(model, package_type):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model)
    raise NanoscopyError(f"A live model is a bundled name, a package folder or .zip, or a loaded package; got {model!r}.")

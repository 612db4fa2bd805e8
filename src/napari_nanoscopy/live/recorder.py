"""The session recorder: every frame on disk before it is used, an append-only JSON-lines log.

A session folder holds::

    session.json          settings, adapter capabilities, models (with sha256), start time
    decisions.jsonl       one JSON object per line, appended and fsynced, never rewritten
    frames/000007_sted_patch.ome.tif   every acquired frame, OME-TIFF with pixel size and
                          its acquisition metadata (timestamps, region, powers, dwell, dose)
    extras/000003_samples.npy ...      MC samples, disparity and segmentations (optional)
    references/000005_synthetic_mask.npy   the synthetic reference segmentation of
                          ``reference="synthetic"`` (dice, area), needed to resume
    summary.json          written when a run ends (also after a fault or Ctrl-C)

A frame file is written to a temporary name, fsynced and renamed, then its ``acquisition``
record is appended to the log; only then does the pipeline use the frame. A crash at any
point leaves every earlier frame readable and the log valid up to its last full line.
:func:`read_session` reads a session back; :func:`session_layers` gives napari layer data
(no napari import).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.io import (
    OutputAppeared,
    StagedOutputs,
    atomic_output,
    read_image,
    read_json_object,
    write_image,
)
from napari_nanoscopy.live.adapters import Frame

SESSION_FILE = "session.json"
LOG_FILE = "decisions.jsonl"
SUMMARY_FILE = "summary.json"
FRAMES_DIR = "frames"
EXTRAS_DIR = "extras"
REFERENCES_DIR = "references"
FORMAT = "napari-nanoscopy live session 1"


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_json_atomic(path: Path, data: dict, *, replace: bool = True) -> None:
    """Write ``data`` as JSON at ``path`` all at once; ``replace=False`` refuses (OutputAppeared) an existing file."""
    with StagedOutputs(overwrite=replace) as staged:
        temporary = staged.stage(path)
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=_json_default)
            handle.flush()
            os.fsync(handle.fileno())


class Recorder:
    """Writes one session folder. ``keep_extras`` also keeps MC samples, disparity and segmentations.

    A new recorder needs an empty or missing folder, and claims it by creating session.json
    exclusively: of two recorders started on one folder, one records and the other is refused
    before it writes anything. ``resume=True`` reopens an existing session and appends to it.
    """

    def __init__(self, folder, *, session: dict[str, Any] | None = None, keep_extras: bool = False,
                 resume: bool = False):
        self.folder = Path(folder).expanduser()
        self.keep_extras = bool(keep_extras)
        log = self.folder / LOG_FILE
        if resume:
            if not log.is_file():
                raise NanoscopyError(f"{self.folder} holds no live session to resume (no {LOG_FILE}); start a new one.")
            logged = [r.get("index", -1) for r in _read_log(log) if r.get("type") == "acquisition"]
            # a frame written just before a crash may have no log record yet: never overwrite it
            on_disk = [int(p.name.split("_")[0]) for p in (self.folder / FRAMES_DIR).glob("[0-9]*_*.ome.tif")]
            self._next_index = 1 + max(logged + on_disk, default=-1)
        else:
            if self.folder.exists() and not self.folder.is_dir():
                raise NanoscopyError(f"{self.folder} is a file; give a new folder for the live session.")
            if self.folder.exists() and any(self.folder.iterdir()):
                raise NanoscopyError(
                    f"{self.folder} is not empty; give a new folder for the live session (or resume the session in it)."
                )
            if not self.folder.parent.is_dir():
                raise NanoscopyError(f"The folder {self.folder.parent} does not exist; create it first.")
            self.folder.mkdir(exist_ok=True)
            self._next_index = 0
            header = {"format": FORMAT, "created": time.time(), **(session or {})}
            try:
                _write_json_atomic(self.folder / SESSION_FILE, header, replace=False)
            except OutputAppeared:
                raise NanoscopyError(
                    f"Another live session started recording in {self.folder} at the same time; "
                    "give this one a new folder."
                ) from None
        (self.folder / FRAMES_DIR).mkdir(exist_ok=True)
        if self.keep_extras:
            (self.folder / EXTRAS_DIR).mkdir(exist_ok=True)
        self._log = open(log, "a", encoding="utf-8")

    # -- writing ------------------------------------------------------------------------------

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON object on one line) and fsync it."""
        line = json.dumps({"time": time.time(), **record}, default=_json_default, allow_nan=False)
        self._log.write(line + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())

    def write_frame(self, frame: Frame, *, kind: str, frame_number: int) -> Path:
        """Put ``frame`` on disk (OME-TIFF, fsynced) and log it; sets ``frame.index``."""
        frame.index = self._next_index
        self._next_index += 1
        name = f"{frame.index:06d}_{frame.modality}_{kind}.ome.tif"
        path = self.folder / FRAMES_DIR / name
        metadata = {**frame.metadata(), "kind": kind, "frame": frame_number}
        write_image(path, frame.data, pixel_size_nm=frame.pixel_size_nm, metadata=metadata)
        _fsync_path(path)
        self.log({"type": "acquisition", "index": frame.index, "file": f"{FRAMES_DIR}/{name}", **metadata})
        return path

    def write_extra(self, name: str, frame_number: int, array: np.ndarray) -> str | None:
        if not self.keep_extras:
            return None
        relative = f"{EXTRAS_DIR}/{frame_number:06d}_{name}.npy"
        np.save(self.folder / relative, np.asarray(array))
        return relative

    def write_reference_mask(self, mask: np.ndarray, frame_number: int) -> str:
        """Keep the synthetic reference segmentation of a frame (fsynced, then logged)."""
        (self.folder / REFERENCES_DIR).mkdir(exist_ok=True)
        relative = f"{REFERENCES_DIR}/{frame_number:06d}_synthetic_mask.npy"
        with atomic_output(self.folder / relative) as temporary:
            np.save(temporary, np.asarray(mask, dtype=bool))
            _fsync_path(temporary)
        self.log({"type": "synthetic_reference", "frame": frame_number, "file": relative,
                  "foreground": int(np.count_nonzero(mask))})
        return relative

    @property
    def acquisitions(self) -> int:
        """Frames on disk (acquisitions of this session, including those of earlier runs)."""
        return self._next_index

    def write_summary(self, summary: dict[str, Any]) -> None:
        _write_json_atomic(self.folder / SUMMARY_FILE, summary)

    def close(self) -> None:
        if not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- reading ----------------------------------------------------------------------------------


def _read_log(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # a line cut by a crash: everything before it is valid
            records.append(json.loads(line))
    return records


@dataclass
class Session:
    folder: Path
    session: dict[str, Any]
    records: list[dict[str, Any]]
    summary: dict[str, Any] | None
    acquisitions: list[dict[str, Any]] = field(default_factory=list)

    def records_of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == kind]

    def image(self, acquisition: dict[str, Any]) -> np.ndarray:
        return read_image(self.folder / acquisition["file"]).data

    def reference_mask(self, frame: int) -> np.ndarray | None:
        """The synthetic reference segmentation kept for ``frame``, or None."""
        records = [r for r in self.records_of("synthetic_reference") if r["frame"] == frame]
        return np.load(self.folder / records[-1]["file"]) if records else None


def read_session(folder) -> Session:
    """Read a recorded session: its settings, every log record and its acquisitions."""
    folder = Path(folder).expanduser()
    if not (folder / LOG_FILE).is_file() or not (folder / SESSION_FILE).is_file():
        raise NanoscopyError(f"{folder} is not a live session folder (it needs {SESSION_FILE} and {LOG_FILE}).")
    session = read_json_object(folder / SESSION_FILE, "live session", "record it again")
    summary = None
    if (folder / SUMMARY_FILE).is_file():
        summary = read_json_object(folder / SUMMARY_FILE, "live session summary", "run the session again")
    records = _read_log(folder / LOG_FILE)
    acquisitions = [r for r in records if r.get("type") == "acquisition"]
    return Session(folder, session, records, summary, acquisitions)


def session_summary(folder) -> dict[str, Any]:
    """What a recorded session did, from its log alone (also for a session that crashed)."""
    session = read_session(folder)
    decisions = session.records_of("decision")
    triggered = [r["frame"] for r in decisions if r.get("sted_acquired")]
    ends = [r["type"] for r in session.records if r.get("type") in ("fault", "stop", "budget", "resume")]
    frame_dose = sum(r["dose_photons"] for r in session.records_of("charge") if r.get("kind") != "reference")
    roi = session.session.get("roi")
    sted_roi = [a["dose_photons"] for a in session.acquisitions if a["kind"] in ("reference", "sted")]
    n = len(decisions)
    return {
        "session": str(session.folder),
        "state": session.summary["state"] if session.summary else "interrupted (no summary written)",
        "last_event": ends[-1] if ends else None,
        "frames": n,
        "acquisitions": len(session.acquisitions),
        "sted_acquisitions": len(triggered),
        "sted_fraction": len(triggered) / n if n else 0.0,
        "triggered_frames": triggered,
        "references": len(session.records_of("reference")) - len(triggered),
        "faults": len(session.records_of("fault")),
        "dose_photons": sum(r["dose_photons"] for r in session.records_of("charge")),
        "dose_relative_to_sted_every_frame": frame_dose / (n * sted_roi[0]) if n and sted_roi else None,
        "roi": roi,
        "scores": [r.get("score") for r in decisions],
    }


def session_layers(folder) -> list[tuple]:
    """napari layer data ``(data, kwargs, type)`` of a session: confocal frames, full STED images
    (placed at their region) and the decision scores in the layers' metadata.

    Both stacks have one plane per frame number, so that scrolling the frame axis shows each
    frame's confocal with the STED acquired at that frame; frames without a STED are NaN
    (empty) planes, and the metadata's ``sted_frames`` lists those with one.
    """
    session = read_session(folder)
    confocal = [a for a in session.acquisitions if a["kind"] == "confocal"]
    steds = [a for a in session.acquisitions if a["kind"] in ("sted", "reference")]
    layers = []
    decisions = [{k: r.get(k) for k in ("frame", "score", "threshold", "trigger", "reason")}
                 for r in session.records_of("decision")]
    n_frames = 1 + max((a["frame"] for a in confocal + steds), default=-1)
    if confocal:
        pixel = confocal[0]["pixel_size_nm"]
        data, _ = _frame_stack(session, confocal, n_frames)
        layers.append((data, {"name": "confocal", "scale": (1.0, pixel, pixel), "units": ("pixel", "nm", "nm"),
                              "metadata": {"frames": list(range(n_frames)), "decisions": decisions}}, "image"))
    if steds:
        pixel = steds[0]["pixel_size_nm"]
        shapes = {tuple(a["region"][2:]) for a in steds}
        if len(shapes) == 1:
            y0, x0 = steds[0]["region"][:2]
            data, shown = _frame_stack(session, steds, n_frames)
            layers.append((data, {"name": "STED", "scale": (1.0, pixel, pixel), "units": ("pixel", "nm", "nm"),
                                  "translate": (0.0, y0 * pixel, x0 * pixel), "colormap": "magma",
                                  "metadata": {"frames": list(range(n_frames)),
                                               "sted_frames": [a["frame"] for a in shown],
                                               "acquisitions": [{k: a[k] for k in ("frame", "kind", "index", "file")}
                                                                for a in shown]}}, "image"))
    return layers


def _frame_stack(session: Session, acquisitions: list[dict[str, Any]], n_frames: int) -> tuple[np.ndarray, list]:
    """A float32 stack with plane ``t`` holding the acquisition of frame ``t`` (NaN where there is
    none) and the acquisitions shown. Of several at one frame the last is shown: the confocal a
    resumed frame was decided on, the final reference after that frame's triggered STED."""
    last = {a["frame"]: a for a in acquisitions}
    images = {frame: session.image(a) for frame, a in last.items()}
    shape = next(iter(images.values())).shape
    stack = np.full((n_frames, *shape), np.nan, dtype=np.float32)
    for frame, image in images.items():
        stack[frame] = image
    return stack, [last[frame] for frame in sorted(last)]


def get_session_reader(path):
    """npe2 reader hook: a folder holding a live session."""
    if isinstance(path, list):
        return None
    folder = Path(path)
    if folder.is_dir() and (folder / SESSION_FILE).is_file() and (folder / LOG_FILE).is_file():
        return session_layers
    return None

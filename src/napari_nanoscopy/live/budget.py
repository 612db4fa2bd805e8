"""The light-dose budget: a cap on full STED images per time window and on total photons.

The budget is charged *before* an acquisition reaches the microscope, with the adapter's
dose estimate, and a charge is never refunded (a failed or timed-out acquisition may have
illuminated the sample all the same). An acquisition the budget cannot afford is refused
before anything is sent, so the caps hold whatever happens afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from napari_nanoscopy.errors import NanoscopyError

KINDS = ("confocal", "patch", "sted")  # full-field confocal, STED patch, full STED of the ROI


class BudgetExceeded(NanoscopyError):
    """An acquisition was refused because it would exceed the dose budget."""


@dataclass
class DoseBudget:
    """At most ``max_sted_frames`` full STED images and ``max_dose_photons`` photons in any
    ``window_frames`` consecutive frames (None: in the whole session); None: no cap."""

    max_sted_frames: int | None = None
    window_frames: int | None = None
    max_dose_photons: float | None = None
    charges: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("max_sted_frames", "window_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_sted_frames" else 1)):
                raise NanoscopyError(f"The dose budget's {name} must be a whole number (or None); got {value!r}.")
        if self.max_dose_photons is not None and not self.max_dose_photons >= 0:
            raise NanoscopyError(f"The dose budget's max_dose_photons must be non-negative (or None); got {self.max_dose_photons!r}.")

    @property
    def dose_photons(self) -> float:
        """Photons charged in the whole session."""
        return float(sum(charge["dose_photons"] for charge in self.charges))

    def dose_in_window(self, frame: int | None = None) -> float:
        """Photons charged in the window ending at ``frame`` (None, or no window: all)."""
        if frame is None or self.window_frames is None:
            return self.dose_photons
        return float(sum(c["dose_photons"] for c in self.charges if frame - self.window_frames < c["frame"] <= frame))

    def sted_frames(self, frame: int | None = None) -> int:
        """Full STED images charged in the window ending at ``frame`` (None: all)."""
        steds = [c for c in self.charges if c["kind"] == "sted"]
        if frame is None or self.window_frames is None:
            return len(steds)
        return sum(1 for c in steds if frame - self.window_frames < c["frame"] <= frame)

    def refusal(self, kind: str, dose_photons: float, frame: int) -> str | None:
        """Why an acquisition cannot be afforded, or None when it can."""
        if kind not in KINDS:
            raise NanoscopyError(f"Unknown acquisition kind {kind!r}; use one of {', '.join(KINDS)}.")
        if kind == "sted" and self.max_sted_frames is not None and self.sted_frames(frame) + 1 > self.max_sted_frames:
            window = f"in {self.window_frames} frames" if self.window_frames else "in this session"
            return f"the budget allows {self.max_sted_frames} full STED image(s) {window}"
        spent = self.dose_in_window(frame)
        if self.max_dose_photons is not None and spent + dose_photons > self.max_dose_photons:
            window = f"in {self.window_frames} frames" if self.window_frames else "in this session"
            return (f"the budget allows {self.max_dose_photons:.4g} photons {window} and {spent:.4g} are spent; "
                    f"this acquisition needs {dose_photons:.4g}")
        return None

    def charge(self, kind: str, dose_photons: float, frame: int) -> None:
        """Charge an acquisition, or raise :class:`BudgetExceeded` without charging."""
        reason = self.refusal(kind, dose_photons, frame)
        if reason is not None:
            raise BudgetExceeded(f"The {kind} acquisition at frame {frame} was refused: {reason}.")
        self.charges.append({"kind": kind, "dose_photons": float(dose_photons), "frame": int(frame)})

    def to_dict(self) -> dict[str, Any]:
        return {"max_sted_frames": self.max_sted_frames, "window_frames": self.window_frames,
                "max_dose_photons": self.max_dose_photons}

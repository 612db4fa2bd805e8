"""What a live session is parameterised by: :class:`LiveSettings`, checked before any model loads."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from napari_nanoscopy.analysis.variability import DISPARITY_METHODS
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.limits import MAX_SEED, check_int, check_samples
from napari_nanoscopy.live.policies import POLICIES, make_policy

# The pair trained on simulated dendrites, the segmenter being the generator's frozen task network: on
# simulated remodelling series it catches every onset; the generator trained on real structures too
# (tagan-live-factin) invents less on real images but caught fewer onsets (docs/live.md).
DEFAULT_GENERATOR = "tagan-live-factin-synthetic"
DEFAULT_SEGMENTER = "unet-live-factin-synthetic"
DEFAULT_SEGMENT_CLASS = "fibres"  # the paper watches the fibres of dendritic F-actin remodelling
SEED_STRIDE = 100_003  # frame t draws its dropout masks from seed * SEED_STRIDE + 2 t (and + 1)
# What the dice and area policies compare the synthetic segmentation with: the segmentation of the
# last real STED (the paper), or the synthetic segmentation of the frame that STED was acquired at
# (our option: the systematic bias of generator and segmenter is on both sides and cancels).
REFERENCES = ("sted", "synthetic")


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
    segment_class: str = DEFAULT_SEGMENT_CLASS  # the segmenter's class the decision watches
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


def bundled_live_segmenters() -> dict[str, list[str]]:
    """The bundled U-Net-Live models a session can segment with, and the classes each segments."""
    from napari_nanoscopy.formats import list_models  # reads the cards only, no weights

    return {card.name: list(card.task.outputs) for card in list_models()
            if card.training.get("method") == "unet-live" and card.task is not None}

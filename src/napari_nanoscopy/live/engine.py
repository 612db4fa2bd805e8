"""The TA-GAN Live decision engine: the models' part of each step of the live loop.

The runner (:mod:`napari_nanoscopy.live.runner`) acquires, charges the dose budget, records and
keeps the references; at each step it asks a :class:`DecisionEngine` for the numbers:
Monte-Carlo samples (steps 2 and 5), the disparity and the STED patch (step 3), the
segmentation of the ROI (step 6) and the decision (step 7). :class:`TaganLiveEngine` is given
its two predictors, local :class:`~napari_nanoscopy.inference.Restorer` s or remote workers
(:class:`~napari_nanoscopy.remote.RemoteRestorer`), and :meth:`TaganLiveEngine.load` builds it
with local ones from the settings' model names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from napari_nanoscopy.analysis.variability import best_patch, disparity_map
from napari_nanoscopy.card import InputNormalisation
from napari_nanoscopy.errors import NanoscopyError
from napari_nanoscopy.live.adapters import Frame, Region
from napari_nanoscopy.live.policies import Decision, Policy, make_policy
from napari_nanoscopy.live.settings import LiveSettings


class Predictor(Protocol):
    """A network the engine runs: a Restorer here, or a RemoteRestorer on a GPU computer."""

    def restore(self, image: np.ndarray, **options) -> Any: ...


class DecisionEngine(Protocol):
    """What the live loop asks of its models, one method per step of the TA-GAN paper's Table 1."""

    policy: Policy
    models: dict[str, dict[str, Any]]  # name, weights sha256 and source of each model, as recorded

    def generate(self, confocal: Frame, patch: Frame | None, seed: int) -> np.ndarray:
        """Steps 2 and 5: (N, Y, X) Monte-Carlo samples of the STED image of the field."""

    def propose_patch(self, samples: np.ndarray, roi: Region) -> tuple[np.ndarray, Region]:
        """Step 3: the disparity map of the samples and the STED patch outside ``roi`` where it is largest."""

    def segment(self, images: np.ndarray, pixel_size_nm: float) -> np.ndarray:
        """Step 6: raw outputs of the monitored class for a (N, Y, X) stack, (N, Y, X)."""

    def mask(self, outputs: np.ndarray) -> np.ndarray:
        """The binarised mean of segmentation outputs (a reference segmentation)."""

    def decide(self, outputs: np.ndarray, reference: np.ndarray | None) -> Decision:
        """Step 7: whether to acquire a full STED of the ROI."""

    def with_predictors(self, generator: Predictor, segmenter: Predictor) -> DecisionEngine:
        """The same engine running its networks on other predictors (for example remote workers)."""


@dataclass
class TaganLiveEngine:
    """TA-GAN Live generates, U-Net-Live segments, the policy decides.

    ``binarisation`` is the segmenter's threshold of the monitored class and ``patch_spec`` the
    normalisation of the STED patch channels; both come from the model cards (see :meth:`load`).
    """

    settings: LiveSettings
    generator: Predictor
    segmenter: Predictor
    generator_card: Any
    segmenter_card: Any
    models: dict[str, dict[str, Any]]
    policy: Policy
    class_index: int
    binarisation: float
    patch_spec: InputNormalisation

    @classmethod
    def load(cls, settings: LiveSettings, generator=None, segmenter=None) -> TaganLiveEngine:
        """Load and check the two models (the settings' names unless ``generator`` / ``segmenter``
        give a loaded :class:`~napari_nanoscopy.packages.ModelPackage` or a path) and run them here."""
        from napari_nanoscopy.inference import Restorer
        from napari_nanoscopy.packages import ModelPackage

        generator_package = _package(generator if generator is not None else settings.generator)
        segmenter_package = _package(segmenter if segmenter is not None else settings.segmenter)
        generator_card, segmenter_card = generator_package.card, segmenter_package.card
        if len(generator_card.input_channels) != 3:
            raise NanoscopyError(
                f"The live generator must take 3 channels (confocal, STED patch, patch mask) like TA-GAN Live; "
                f"'{generator_card.name}' takes {len(generator_card.input_channels)}. Pick a tagan-live model."
            )
        if segmenter_card.task is None:
            raise NanoscopyError(f"The segmenter '{segmenter_card.name}' has no segmentation outputs; pick a U-Net-Live model.")
        outputs = list(segmenter_card.task.outputs)
        if settings.segment_class not in outputs:
            raise NanoscopyError(
                f"The segmenter '{segmenter_card.name}' segments {', '.join(outputs)}, not "
                f"{settings.segment_class!r}; set the segment class (segment_class, live --segment-class, the Live "
                "widget's 'Segment class') to one of them."
            )
        class_index = outputs.index(settings.segment_class)
        # The generator's own task network is not needed: U-Net-Live segments the samples.
        generator_only = ModelPackage(
            dataclasses.replace(generator_card, task=None, task_network=None),
            generator_package.generator, None, generator_package.source,
        )
        options = dict(device=settings.device, precision=settings.precision, compile=settings.compile)
        models = {
            name: {"name": package.card.name, "weights_sha256": package.card.weights_sha256, "source": package.source}
            for name, package in (("generator", generator_package), ("segmenter", segmenter_package))
        }
        return cls(
            settings=settings, generator=Restorer(generator_only, **options),
            segmenter=Restorer(segmenter_package, **options), generator_card=generator_card,
            segmenter_card=segmenter_card, models=models, policy=make_policy(settings.policy, settings.threshold),
            class_index=class_index, binarisation=segmenter_card.task.thresholds[class_index],
            patch_spec=generator_card.normalization.sted_patch or generator_card.input_normalizations()[0],
        )

    def with_predictors(self, generator: Predictor, segmenter: Predictor) -> TaganLiveEngine:
        return dataclasses.replace(self, generator=generator, segmenter=segmenter)

    def generate(self, confocal: Frame, patch: Frame | None, seed: int) -> np.ndarray:
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

    def propose_patch(self, samples: np.ndarray, roi: Region) -> tuple[np.ndarray, Region]:
        settings = self.settings
        disparity = disparity_map(samples, settings.disparity, alpha=settings.flow_alpha,
                                  iterations=settings.flow_iterations, threads=settings.threads)
        return disparity, best_patch(disparity, settings.patch, exclude=roi)

    def segment(self, images: np.ndarray, pixel_size_nm: float) -> np.ndarray:
        result = self.segmenter.restore(images, pixel_size_nm=pixel_size_nm, samples=1)
        return result.task[:, self.class_index]

    def mask(self, outputs: np.ndarray) -> np.ndarray:
        return outputs.mean(axis=0) > self.binarisation

    def decide(self, outputs: np.ndarray, reference: np.ndarray | None) -> Decision:
        return self.policy.decide(outputs, self.binarisation, reference)


def _package(model):
    from napari_nanoscopy.formats import load_model
    from napari_nanoscopy.packages import ModelPackage

    if isinstance(model, ModelPackage):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model)
    raise NanoscopyError(f"A live model is a bundled name, a package folder or .zip, or a loaded package; got {model!r}.")

"""How much structure a restored image adds that its reference does not have.

The hallucination score compares power spectra in the band the input cannot carry, the spatial
frequencies above the input's cut-off (where its optical transfer function has fallen below
:data:`OTF_FLOOR` of its value at zero frequency). A restoration may put energy there only where the
reference has it too; any power the output has *beyond* the reference's, frequency by frequency, is
structure it invented (a lattice, a texture, stripes, ringing)::

    score = sum over |f| > cut-off of max(P_output(f) - P_reference(f), 0)
            / sum over |f| > cut-off of P_reference(f)

``P`` is the power spectrum of the image minus its mean, under a Hann window (so that the image's
edges add no spurious high frequencies), lightly smoothed over neighbouring frequencies (a Gaussian
of :data:`SPECTRUM_SMOOTHING` bins) so that the chance fluctuation of single frequency bins of a
noisy reference does not count. The score is dimensionless: 0 when the output adds nothing to the
reference's high frequencies (an identical image, or an honest blurry one, which has less power
there), 1 when what it adds equals the reference's own energy in that band. Being a ratio of
powers it depends on the images' relative scaling, so compare an output with a reference in the
same units (``evaluate`` maps every output onto its reference by the least-squares affine fit
first, as for PSNR). Missing detail does not raise the score; PSNR and SSIM measure that.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_nanoscopy.errors import NanoscopyError

__all__ = ["OTF_FLOOR", "SPECTRUM_SMOOTHING", "cutoff_from_psf", "hallucination_score"]

OTF_FLOOR = 0.05
SPECTRUM_SMOOTHING = 2.0  # frequency bins
_MIN_SIDE = 16
_OTF_GRID = 256


def cutoff_from_psf(psf: np.ndarray, floor: float = OTF_FLOOR) -> float:
    """The input's cut-off in cycles per pixel: the highest spatial frequency at which the optical
    transfer function of ``psf`` (2D, on the image's pixel grid) is still ``floor`` of its zero-frequency value."""
    psf = np.asarray(psf, np.float64)
    if psf.ndim != 2 or min(psf.shape) < 3 or max(psf.shape) > _OTF_GRID or not np.isfinite(psf).all():
        raise NanoscopyError(f"The PSF must be a finite 2D image of 3 to {_OTF_GRID} pixels a side, not of shape "
                             f"{psf.shape}; give the point spread function on the image's pixel grid.")
    if psf.sum() <= 0 or not 0 < floor < 1:
        raise NanoscopyError("The PSF must have a positive sum and the OTF floor lie between 0 and 1; "
                             "give a non-negative PSF and a floor such as 0.05.")
    padded = np.zeros((_OTF_GRID, _OTF_GRID))
    padded[: psf.shape[0], : psf.shape[1]] = psf
    otf = np.abs(np.fft.fft2(padded))
    carried = otf >= floor * otf[0, 0]
    return float(_radial_frequency((_OTF_GRID, _OTF_GRID))[carried].max())


def hallucination_score(output, reference, cutoff: float) -> float:
    """The power ``output`` has beyond ``reference``'s above ``cutoff`` (cycles per pixel), over the
    reference's power there (see the module's docstring). 2D images or (N, Y, X) stacks (the mean of
    the images' scores), of the same shape, at least 16 pixels a side."""
    output, reference = np.asarray(output, np.float64), np.asarray(reference, np.float64)
    if output.shape != reference.shape or output.ndim not in (2, 3) or min(output.shape[-2:]) < _MIN_SIDE:
        raise NanoscopyError(f"The output {output.shape} and the reference {reference.shape} must be 2D images or "
                             f"stacks of the same shape, at least {_MIN_SIDE} pixels a side; give matching images.")
    if not (np.isfinite(output).all() and np.isfinite(reference).all()):
        raise NanoscopyError("The output or the reference has NaN or infinite pixels; give finite images.")
    if not 0 < cutoff < 0.5 * np.sqrt(2):
        raise NanoscopyError(f"The cut-off must lie between 0 and the corner of the spectrum (0.707 cycles/pixel), "
                             f"not {cutoff!r}; give the input's cut-off in cycles per pixel.")
    band = _radial_frequency(output.shape[-2:]) > cutoff
    scores = []
    for out, ref in zip(output.reshape((-1,) + output.shape[-2:]), reference.reshape((-1,) + output.shape[-2:])):
        power_out, power_ref = _power(out), _power(ref)
        reference_energy = power_ref[band].sum()
        if reference_energy <= 0:
            raise NanoscopyError("The reference has no energy above the input's cut-off (it is constant or blurred); "
                                 "give a reference at a higher resolution than the input.")
        scores.append(np.maximum(power_out - power_ref, 0.0)[band].sum() / reference_energy)
    return float(np.mean(scores))


def _power(image: np.ndarray) -> np.ndarray:
    """The smoothed power spectrum of ``image`` minus its mean, under a Hann window."""
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    return ndimage.gaussian_filter(power, SPECTRUM_SMOOTHING, mode="wrap")  # the spectrum is periodic


def _radial_frequency(shape: tuple[int, int]) -> np.ndarray:
    """|f| in cycles per pixel on the fft2 grid of ``shape``."""
    return np.hypot(*np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij"))

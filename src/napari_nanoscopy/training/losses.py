"""The papers' loss functions, differentiable and averaged over the batch.

Plain L1 and MSE are torch's ``F.l1_loss`` and ``F.mse_loss``; this module adds the GAN
losses, SSIM / MS-SSIM and the class-weighted MSE of U-Net-Live.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import NanoscopyError

# Wang et al. 2004 / 2003: stabilising constants, Gaussian window and per-scale weights.
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
MS_SSIM_WEIGHTS = {
    1: (1.0,),
    3: (0.2096, 0.4659, 0.3245),
    5: (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
}
# Per-scale terms go to fractional powers; a positive floor keeps them (and gradients) finite.
MS_SSIM_FLOOR = 1e-6


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss (pix2pix, Wang): BCE with logits against all-real or all-fake labels."""
    labels = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


def relativistic_generator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """TCAN eq. 11, adversarial term: BCE(D(G(x)) - D(y), 1)."""
    return gan_loss(fake_logits - real_logits, real=True)


def relativistic_discriminator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """TCAN eq. 12: (BCE(D(G(x)) - D(y), 0) + BCE(D(y) - D(G(x)), 1)) / 2.

    BCE(a, 0) equals BCE(-a, 1), so both terms are the same number and their mean is one of them.
    """
    return gan_loss(real_logits - fake_logits, real=True)


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, channel_weights: Sequence[float]) -> torch.Tensor:
    """MSE with a weight per channel (U-Net-Live weights the rarer fibres class 2.5x); NaN target
    pixels (not annotated) are left out of the mean."""
    weights = torch.as_tensor(channel_weights, dtype=prediction.dtype, device=prediction.device)
    annotated = ~torch.isnan(target)
    if bool(annotated.all()):
        return ((prediction - target) ** 2 * weights[None, :, None, None]).mean()
    squared = torch.where(annotated, prediction - torch.nan_to_num(target), torch.zeros_like(prediction)) ** 2
    return (squared * weights[None, :, None, None]).sum() / annotated.sum().clamp(min=1)


def ssim_window_size(size: int, scales: int = 1) -> int:
    """The Gaussian window for images of ``size`` pixels: 11, or the largest odd size that fits
    the coarsest of ``scales`` scales (label2label used 7 for 5 scales of its patches)."""
    coarsest = size // 2 ** (scales - 1)
    window = min(SSIM_WINDOW, coarsest if coarsest % 2 else coarsest - 1)
    if window < 3:
        raise NanoscopyError(
            f"A {scales}-scale SSIM needs patches of at least {3 * 2 ** (scales - 1)} pixels, not {size}; "
            "use larger patches or fewer scales."
        )
    return window


def _gaussian_filter(image: torch.Tensor, window: int) -> torch.Tensor:
    """Separable Gaussian (sigma 1.5) per channel, 'valid' (no padding), as Wang et al. compute SSIM."""
    coords = torch.arange(window, dtype=image.dtype, device=image.device) - (window - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    kernel = kernel / kernel.sum()
    channels = image.shape[1]
    rows = kernel.view(1, 1, window, 1).expand(channels, 1, window, 1)
    cols = kernel.view(1, 1, 1, window).expand(channels, 1, 1, window)
    return F.conv2d(F.conv2d(image, rows, groups=channels), cols, groups=channels)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, data_range: float, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and mean contrast-structure term cs."""
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _gaussian_filter(x, window), _gaussian_filter(y, window)
    var_x = _gaussian_filter(x * x, window) - mu_x**2
    var_y = _gaussian_filter(y * y, window) - mu_y**2
    covariance = _gaussian_filter(x * y, window) - mu_x * mu_y
    cs = (2 * covariance + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs).mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Mean SSIM of two (N, C, H, W) batches whose values span ``data_range`` (2 for [-1, 1])."""
    return _ssim_terms(x, y, data_range, ssim_window_size(min(x.shape[-2:])))[0].mean()


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float, scales: int = 5, shifted: bool = False) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) with M = 1, 3 or 5 scales and the label2label weights.

    cs at every scale but the coarsest, full SSIM there, 2x2 average pooling between scales;
    M = 1 is plain SSIM. A term can be negative (an output whose mean has the other sign than
    the target's, e.g. a linear network's background drifting below 0), and a fractional
    power of it is undefined: by default such terms are floored at a tiny positive value,
    which also zeroes the gradient of the whole product. ``shifted`` maps every term t to
    (t + 1) / 2 instead, which keeps the product and its gradient alive; training uses it.
    """
    if scales not in MS_SSIM_WEIGHTS:
        raise NanoscopyError(f"MS-SSIM uses 1, 3 or 5 scales, not {scales!r}.")
    if scales == 1:
        return ssim(x, y, data_range)
    window = ssim_window_size(min(x.shape[-2:]), scales)
    terms = []
    for scale in range(scales):
        full, cs = _ssim_terms(x, y, data_range, window)
        terms.append(full if scale == scales - 1 else cs)
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    weights = torch.tensor(MS_SSIM_WEIGHTS[scales], dtype=x.dtype, device=x.device)
    stacked = torch.stack(terms, dim=-1)
    stacked = (stacked + 1) / 2 if shifted else stacked.clamp_min(MS_SSIM_FLOOR)
    return torch.prod(stacked**weights, dim=-1).mean()


def wang_ssim_loss(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Wang et al. 2019's SSIM term: -log((1 + SSIM) / 2), zero for identical images."""
    return -torch.log((1 + ssim(x, y, data_range)) / 2)


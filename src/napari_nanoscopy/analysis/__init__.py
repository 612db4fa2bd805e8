"""Analysis of images and masks: quality metrics, overlap scores and resolution."""

from napari_nanoscopy.analysis.metrics import (
    MS_SSIM_WEIGHTS,
    dice,
    iou,
    ms_ssim,
    nrmse,
    psnr,
    ssim,
)
from napari_nanoscopy.analysis.resolution import DecorrelationResult, decorrelation_resolution

__all__ = ["MS_SSIM_WEIGHTS", "DecorrelationResult", "decorrelation_resolution", "dice", "iou", "ms_ssim", "nrmse", "psnr", "ssim"]

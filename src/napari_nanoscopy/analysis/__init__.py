"""Analysis of images and masks: quality metrics and overlap scores."""

from napari_nanoscopy.analysis.metrics import (
    MS_SSIM_WEIGHTS,
    dice,
    iou,
    ms_ssim,
    nrmse,
    psnr,
    ssim,
)

__all__ = ["MS_SSIM_WEIGHTS", "dice", "iou", "ms_ssim", "nrmse", "psnr", "ssim"]

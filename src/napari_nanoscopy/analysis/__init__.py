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
from napari_nanoscopy.analysis.optical_flow import horn_schunck, horn_schunck_pairs, horn_schunck_reference
from napari_nanoscopy.analysis.variability import best_patch, disparity_map, superpixel_means, variability_score
from napari_nanoscopy.analysis.resolution import DecorrelationResult, decorrelation_resolution

__all__ = [
    "MS_SSIM_WEIGHTS", "DecorrelationResult", "decorrelation_resolution", "dice", "iou", "ms_ssim", "nrmse", "psnr", "ssim",
    "best_patch", "disparity_map", "horn_schunck", "horn_schunck_pairs", "horn_schunck_reference", "superpixel_means",
    "variability_score",
]

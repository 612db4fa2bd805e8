"""What benchmark figures were measured on (CPU, cores, load, versions, device) and how they are timed."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


# --- the machine -----------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on (CPU, cores, threads, load, versions, CUDA device)."""
    from . import __version__

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "architecture": platform.machine(),
        "cores_available": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "napari_nanoscopy": __version__,
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda_available": torch.cuda.is_available(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        info["memory_gb"] = round(int(meminfo["MemTotal"].split()[0]) / 2**20, 1)
    except (OSError, KeyError, ValueError):
        pass
    return info


# --- timing helpers ------------------------------------------------------------------------


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], Any], repeats: int, device: torch.device) -> dict[str, float]:
    """Min and median wall time of ``repeats`` calls (the caller warms up first)."""
    times = []
    for _ in range(repeats):
        sync_device(device)
        start = time.perf_counter()
        function()
        sync_device(device)
        times.append(time.perf_counter() - start)
    return {"min_s": min(times), "median_s": statistics.median(times), "repeats": repeats}


def timed_pair(first: Callable[[], Any], second: Callable[[], Any], repeats: int, device) -> tuple[dict, dict]:
    """Time two calls alternately (first, second, first, ...), so a changing load hits both alike."""
    runs: tuple[list, list] = ([], [])
    for _ in range(repeats):
        for function, times in zip((first, second), runs):
            times.extend([timed(function, 1, device)["min_s"]])
    return tuple({"min_s": min(t), "median_s": statistics.median(t), "repeats": repeats} for t in runs)

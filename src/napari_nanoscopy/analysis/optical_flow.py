"""Horn–Schunck optical flow with the kernels of the TA-GAN live loop, fast and reference.

The TA-GAN live pipeline measures the disparity between its Monte-Carlo samples as the
Horn–Schunck optical flow between consecutive samples (alpha 1, 100 iterations), with the
kernels of the classic Python implementation it used:

- averaging kernel ``[[1/12, 1/6, 1/12], [1/6, 0, 1/6], [1/12, 1/6, 1/12]]``;
- derivatives ``fx = K_x * (I1 + I2)``, ``fy = K_y * (I1 + I2)``, ``ft = K_t * (I1 - I2)``
  with ``K_x = 0.25 [[-1, 1], [-1, 1]]``, ``K_y = 0.25 [[-1, -1], [1, 1]]``,
  ``K_t = 0.25 [[1, 1], [1, 1]]`` (``*`` is ``scipy.ndimage.convolve``, mode ``reflect``);
- iteration ``ū = A * u``, ``v̄ = A * v``, ``d = (fx ū + fy v̄ + ft) / (alpha² + fx² + fy²)``,
  ``u = ū - fx d``, ``v = v̄ - fy d`` from ``u = v = 0``.

:func:`horn_schunck_reference` is that algorithm written plainly with scipy convolutions
(one pair at a time, as published). :func:`horn_schunck` computes the same iterates with
one compiled, vectorised pass per iteration over a padded buffer (numba, in float32: it
agrees with the reference to about 1e-6 on images scaled to [0, 1]); :func:`horn_schunck_pairs` runs many pairs in parallel threads.
``benchmarks/optical_flow.py`` measures both on 9 pairs of 500x500 images.
"""

from __future__ import annotations

import numpy as np

from napari_nanoscopy.errors import NanoscopyError

AVERAGING_KERNEL = np.array(
    [[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]], dtype=np.float64
)
KERNEL_X = 0.25 * np.array([[-1.0, 1.0], [-1.0, 1.0]])
KERNEL_Y = 0.25 * np.array([[-1.0, -1.0], [1.0, 1.0]])
KERNEL_T = 0.25 * np.ones((2, 2))

DEFAULT_ALPHA = 1.0
DEFAULT_ITERATIONS = 100


# --- checks ----------------------------------------------------------------------------------


def _checked_pair(image1, image2) -> tuple[np.ndarray, np.ndarray]:
    first, second = np.asarray(image1), np.asarray(image2)
    for name, image in (("image1", first), ("image2", second)):
        if image.ndim != 2 or min(image.shape) < 2 or image.dtype.kind not in "biuf":
            raise NanoscopyError(
                f"Optical flow needs two 2D real-valued images of at least 2x2 pixels; {name} has "
                f"shape {image.shape} and dtype {image.dtype}."
            )
    if first.shape != second.shape:
        raise NanoscopyError(
            f"Optical flow needs two images of the same shape; got {first.shape} and {second.shape}."
        )
    first, second = first.astype(np.float64), second.astype(np.float64)
    if not (np.isfinite(first).all() and np.isfinite(second).all()):
        raise NanoscopyError("The images contain NaN or infinite pixels; replace them before computing optical flow.")
    return first, second


def _checked_parameters(alpha, iterations) -> tuple[float, int]:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) or not alpha > 0:
        raise NanoscopyError(f"The Horn–Schunck smoothness alpha must be a positive number; got {alpha!r}.")
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise NanoscopyError(f"The number of Horn–Schunck iterations must be a whole number of at least 1; got {iterations!r}.")
    return float(alpha), int(iterations)


# --- reference -------------------------------------------------------------------------------


def horn_schunck_reference(image1, image2, alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS):
    """Horn–Schunck flow ``(u, v)`` from ``image1`` to ``image2``, written plainly with scipy.

    The published algorithm and kernels, one convolution per kernel and per iteration
    (float64). It is the yardstick :func:`horn_schunck` is checked and timed against.
    """
    from scipy.ndimage import convolve

    first, second = _checked_pair(image1, image2)
    alpha, iterations = _checked_parameters(alpha, iterations)
    fx = convolve(first, KERNEL_X) + convolve(second, KERNEL_X)
    fy = convolve(first, KERNEL_Y) + convolve(second, KERNEL_Y)
    ft = convolve(first, KERNEL_T) + convolve(second, -KERNEL_T)
    u = np.zeros_like(first)
    v = np.zeros_like(first)
    for _ in range(iterations):
        u_avg = convolve(u, AVERAGING_KERNEL)
        v_avg = convolve(v, AVERAGING_KERNEL)
        der = (fx * u_avg + fy * v_avg + ft) / (alpha**2 + fx**2 + fy**2)
        u = u_avg - fx * der
        v = v_avg - fy * der
    return u, v


# --- fast ------------------------------------------------------------------------------------


_KERNELS = None


def _kernels():
    """Compile the iteration kernel on first use (numba is imported lazily).

    Each iteration is one sweep over the rows: the two averages of a row go to small
    buffers, then one loop updates u and v. Keeping each loop to a few arrays lets the
    compiler vectorise it (its aliasing checks stay cheap), and the float32 working set of
    a 500x500 field stays in the CPU's caches.
    """
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    import numba

    @numba.njit(cache=True, nogil=True)
    def iterate(fx, fy, ft, gx, gy, iterations, u_out, v_out):  # pragma: no cover - compiled
        height, width = fx.shape
        dtype = fx.dtype
        # u and v live in (H+2, W+2) buffers whose border repeats the edge (reflect mode).
        u = np.zeros((height + 2, width + 2), dtype)
        v = np.zeros((height + 2, width + 2), dtype)
        u_next = np.zeros((height + 2, width + 2), dtype)
        v_next = np.zeros((height + 2, width + 2), dtype)
        u_avg = np.empty(width, dtype)
        v_avg = np.empty(width, dtype)
        corner = dtype.type(1.0 / 12.0)
        edge = dtype.type(1.0 / 6.0)
        for _ in range(iterations):
            for i in range(height):
                a0, a1, a2 = u[i], u[i + 1], u[i + 2]
                for j in range(width):
                    u_avg[j] = (corner * (a0[j] + a0[j + 2] + a2[j] + a2[j + 2])
                                + edge * (a0[j + 1] + a1[j] + a1[j + 2] + a2[j + 1]))
                b0, b1, b2 = v[i], v[i + 1], v[i + 2]
                for j in range(width):
                    v_avg[j] = (corner * (b0[j] + b0[j + 2] + b2[j] + b2[j + 2])
                                + edge * (b0[j + 1] + b1[j] + b1[j + 2] + b2[j + 1]))
                fxi, fyi, fti, gxi, gyi = fx[i], fy[i], ft[i], gx[i], gy[i]
                new_u, new_v = u_next[i + 1], v_next[i + 1]
                for j in range(width):
                    # (fx ū + fy v̄ + ft) / (alpha² + fx² + fy²) = s / den, with g = f / den
                    s = fxi[j] * u_avg[j] + fyi[j] * v_avg[j] + fti[j]
                    new_u[j + 1] = u_avg[j] - gxi[j] * s
                    new_v[j + 1] = v_avg[j] - gyi[j] * s
                new_u[0], new_u[width + 1] = new_u[1], new_u[width]
                new_v[0], new_v[width + 1] = new_v[1], new_v[width]
            u_next[0], u_next[height + 1] = u_next[1], u_next[height]
            v_next[0], v_next[height + 1] = v_next[1], v_next[height]
            u, u_next = u_next, u
            v, v_next = v_next, v
        u_out[:, :] = u[1:height + 1, 1:width + 1]
        v_out[:, :] = v[1:height + 1, 1:width + 1]

    @numba.njit(cache=True, nogil=True)
    def prepare(first, second, alpha2, fx, fy, ft, gx, gy):  # pragma: no cover - compiled
        # The reference's 2x2 convolutions (scipy's convolve with a 2x2 kernel k gives k00 a[i+1, j+1] + k01 a[i+1, j] + k10 a[i, j+1] + k11 a[i, j], the row and column past the end reflected), in float64, then float32.
        height, width = first.shape
        for i in range(height):
            i1 = min(i + 1, height - 1)
            for j in range(width):
                j1 = min(j + 1, width - 1)
                s00 = first[i, j] + second[i, j]
                s01 = first[i, j1] + second[i, j1]
                s10 = first[i1, j] + second[i1, j]
                s11 = first[i1, j1] + second[i1, j1]
                d00 = first[i, j] - second[i, j]
                d01 = first[i, j1] - second[i, j1]
                d10 = first[i1, j] - second[i1, j]
                d11 = first[i1, j1] - second[i1, j1]
                dx = 0.25 * ((s00 + s10) - (s01 + s11))
                dy = 0.25 * ((s00 + s01) - (s10 + s11))
                denominator = alpha2 + dx * dx + dy * dy
                fx[i, j] = dx
                fy[i, j] = dy
                ft[i, j] = 0.25 * (d00 + d01 + d10 + d11)
                gx[i, j] = dx / denominator
                gy[i, j] = dy / denominator

    _KERNELS = prepare, iterate
    return _KERNELS


def _run(first: np.ndarray, second: np.ndarray, alpha: float, iterations: int, u_out, v_out) -> None:
    prepare, iterate = _kernels()
    arrays = [np.empty(first.shape, dtype=np.float32) for _ in range(5)]  # fx, fy, ft, gx, gy
    prepare(first, second, alpha * alpha, *arrays)
    iterate(*arrays, iterations, u_out, v_out)


def horn_schunck(image1, image2, alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS):
    """Horn–Schunck flow ``(u, v)`` (float32 arrays) from ``image1`` to ``image2``.

    Same algorithm and kernels as :func:`horn_schunck_reference`, computed in float32 with
    one compiled pass per iteration (the first call compiles it, or loads it from numba's
    cache).
    """
    first, second = _checked_pair(image1, image2)
    alpha, iterations = _checked_parameters(alpha, iterations)
    u = np.empty(first.shape, dtype=np.float32)
    v = np.empty(first.shape, dtype=np.float32)
    _run(first, second, alpha, iterations, u, v)
    return u, v


def horn_schunck_pairs(
    images, alpha: float = DEFAULT_ALPHA, iterations: int = DEFAULT_ITERATIONS, threads: int | None = None
) -> np.ndarray:
    """Flow between consecutive images of a (N, Y, X) stack: a (N-1, 2, Y, X) array of (u, v).

    Pairs (0, 1), (1, 2), ... as the TA-GAN live loop takes them; they run in ``threads``
    threads (default: every CPU), the compiled kernel releasing the GIL.
    """
    stack = np.asarray(images)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise NanoscopyError(
            f"Optical flow between samples needs a (samples, Y, X) stack of at least 2 images; got shape {stack.shape}."
        )
    alpha, iterations = _checked_parameters(alpha, iterations)
    pairs = [_checked_pair(stack[k], stack[k + 1]) for k in range(stack.shape[0] - 1)]
    out = np.empty((len(pairs), 2) + stack.shape[1:], dtype=np.float32)
    _kernels()

    def one(k: int) -> None:
        _run(*pairs[k], alpha, iterations, out[k, 0], out[k, 1])

    workers = _thread_count(threads, len(pairs))
    if workers == 1:
        for k in range(len(pairs)):
            one(k)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(len(pairs))))
    return out


def _thread_count(threads: int | None, jobs: int) -> int:
    import os

    if threads is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(available, jobs))
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise NanoscopyError(f"threads must be a whole number of at least 1; got {threads!r}.")
    return int(min(threads, jobs))


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """Displacement length sqrt(u² + v²) of a (..., 2, Y, X) flow array."""
    flow = np.asarray(flow)
    return np.hypot(flow[..., 0, :, :], flow[..., 1, :, :])

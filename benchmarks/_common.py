"""Shared pieces of the benchmark scripts: upstream oracle, images, timing, peak RSS."""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "src"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def upstream_modules():
    """(segment_anything, mobile_sam, randomize_) with the torchvision/timm stand-ins."""
    from tests.oracle import standins

    standins.install()
    import mobile_sam
    import segment_anything
    from tests.oracle.upstream import randomize_

    return segment_anything, mobile_sam, randomize_


def blob_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB image of smooth bright blobs on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.full((height, width), 20.0)
    for _ in range(12):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.04, 0.12) * min(height, width)
        image += 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
    image += rng.normal(0, 5, image.shape)
    grey = np.clip(image, 0, 255).astype(np.uint8)
    return np.stack([grey, (grey * 0.8).astype(np.uint8), grey // 2], axis=-1)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_it(func: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``func()`` in seconds over ``repeats`` runs after ``warmup``.

    CUDA work is synchronised before each clock read, so asynchronous kernels count.
    """
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        func()
        _sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(
    first: Callable[[], object], second: Callable[[], object], repeats: int, warmup: int = 2
) -> tuple[list[float], list[float]]:
    """Seconds of ``first()`` and ``second()`` called alternately, ``repeats`` each after
    ``warmup`` calls each, so that load from other processes hits both alike."""
    for _ in range(warmup):
        first(), second()
    times_first, times_second = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        first()
        times_first.append(time.perf_counter() - start)
        start = time.perf_counter()
        second()
        times_second.append(time.perf_counter() - start)
    return times_first, times_second


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def status_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> float:
    """Reset the peak RSS to the current RSS (``clear_refs`` 5, Linux >= 4.0) and return
    the current RSS, MiB: what ran before (loading a file, generating data) is not
    counted in the peak that follows."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mib("VmRSS")

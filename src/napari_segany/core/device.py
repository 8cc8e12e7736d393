"""Choice of compute device and numeric precision.

``resolve_device("auto")`` picks CUDA, then Apple MPS, then CPU; an explicitly
requested device that this machine lacks raises :class:`DeviceError` (never a silent
fallback, so a user who asked for a GPU learns that they are not getting one).
``resolve_precision`` turns ``"auto" | "fp32" | "bf16"`` into the precision the
predictor should run at on that device.
"""

from __future__ import annotations

import functools
import logging
import re
import sys

import torch

from .errors import DeviceError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")
_NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Names of the devices torch can use here, e.g. ``["cuda:0", "cuda:1", "cpu"]``."""
    names = []
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def _absent(requested: str) -> DeviceError:
    return DeviceError(
        f"Device {requested!r} is not available on this machine "
        f"(available: {', '.join(available_devices())}). "
        'Use device="auto" to pick the best available device, or device="cpu".'
    )


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device request into a :class:`torch.device` that exists here.

    Parameters
    ----------
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
        ``"mps"`` or a :class:`torch.device`. Case and surrounding blanks are ignored.

    Returns
    -------
    torch.device
        ``cuda`` requests come back with an explicit index (``cuda:0``).

    Raises
    ------
    DeviceError
        The string is not a device name, or the device is absent on this machine.
    """
    if isinstance(device, torch.device):
        request = str(device)
    elif isinstance(device, str):
        request = device.strip().lower()
    else:
        raise DeviceError(
            f"device must be a string or torch.device, got {type(device).__name__}. "
            'Use device="auto", "cpu", "cuda", "cuda:N" or "mps".'
        )
    if request == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    match = _DEVICE_PATTERN.match(request)
    if match is None:
        raise DeviceError(
            f"Unknown device {device!r}. "
            'Use device="auto", "cpu", "cuda", "cuda:N" (N = GPU index) or "mps".'
        )
    kind, index = match.group(1), match.group(2)
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise _absent(request)
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise _absent(request)
    gpu = torch.cuda.current_device() if index is None else int(index)
    if gpu >= torch.cuda.device_count():
        raise _absent(request)
    return torch.device("cuda", gpu)


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """CPU feature flags from ``/proc/cpuinfo`` (empty set where that file does not exist)."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        logger.debug("Could not read /proc/cpuinfo", exc_info=True)
    return frozenset()


def _cuda_bf16(device: torch.device, including_emulation: bool) -> bool:
    """bf16 support of one GPU; torch's check looks at the *current* GPU only."""
    if not torch.cuda.is_available():
        return False
    current = torch.cuda.current_device()
    if device.index is None or device.index == current:
        return bool(torch.cuda.is_bf16_supported(including_emulation=including_emulation))
    with torch.cuda.device(device.index):
        return bool(torch.cuda.is_bf16_supported(including_emulation=including_emulation))


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (fast), not by emulation.

    CUDA: compute capability 8.0 or newer (Ampere+; emulated bf16 on older GPUs does
    not count). CPU: the ``avx512_bf16`` or
    ``amx_bf16`` instruction sets (read from ``/proc/cpuinfo`` on Linux; ``False``
    elsewhere, where no reliable check exists). MPS: ``False``.
    """
    resolved = torch.device(device) if isinstance(device, str) else device
    if resolved.type == "cuda":
        return _cuda_bf16(resolved, including_emulation=False)
    if resolved.type == "cpu":
        return bool(_cpu_flags() & _NATIVE_BF16_CPU_FLAGS)
    return False


def _bf16_possible(device: torch.device) -> bool:
    """Whether bf16 works at all on ``device`` (possibly slowly, by emulation)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return _cuda_bf16(device, including_emulation=True)
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """Choose the compute precision for ``device``.

    Parameters
    ----------
    precision
        ``"auto"`` (bf16 where the device has native bf16, else fp32), ``"fp32"`` or
        ``"bf16"``.
    device
        The device the model runs on (a :class:`torch.device` or a device name).

    Returns
    -------
    str
        ``"fp32"`` or ``"bf16"``.

    Raises
    ------
    DeviceError
        ``precision`` is not one of the three names, or ``"bf16"`` was requested on a
        device that cannot compute in bf16 at all (MPS, old GPUs).
    """
    choice = precision.strip().lower() if isinstance(precision, str) else precision
    if choice not in PRECISIONS:
        raise DeviceError(
            f'Unknown precision {precision!r}. Use precision="auto", "fp32" or "bf16".'
        )
    resolved = torch.device(device) if isinstance(device, str) else device
    if choice == "fp32":
        return "fp32"
    if choice == "auto":
        return "bf16" if native_bf16(resolved) else "fp32"
    if not _bf16_possible(resolved):
        raise DeviceError(
            f"bf16 precision is not supported on device {str(resolved)!r}. "
            'Use precision="fp32" or precision="auto".'
        )
    if not native_bf16(resolved):
        logger.warning(
            "bf16 on %s is emulated and may be slower than fp32; precision='auto' avoids it.",
            resolved,
        )
    return "bf16"

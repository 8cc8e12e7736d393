"""Device and precision choice, with torch's availability checks monkeypatched."""

from __future__ import annotations

import pytest
import torch

from napari_segany.core import device as device_module
from napari_segany.core.device import native_bf16, resolve_device, resolve_precision
from napari_segany.core.errors import DeviceError


def fake_machine(monkeypatch, gpus: int = 0, mps: bool = False, gpu_major: int = 8):
    """Pretend this machine has ``gpus`` CUDA GPUs of compute capability ``gpu_major``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)

    def is_bf16_supported(including_emulation=True):
        return gpus > 0 and (gpu_major >= 8 or including_emulation)

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    fake_machine(monkeypatch, gpus=2, mps=True)
    assert resolve_device("auto") == torch.device("cuda", 0)
    fake_machine(monkeypatch, gpus=0, mps=True)
    assert resolve_device("auto") == torch.device("mps")
    assert resolve_device() == torch.device("mps")
    fake_machine(monkeypatch, gpus=0, mps=False)
    assert resolve_device("auto") == torch.device("cpu")


def test_explicit_devices_that_exist(monkeypatch):
    fake_machine(monkeypatch, gpus=2)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device(" CUDA:1 ") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("request_", ["cuda", "cuda:0", "mps", torch.device("cuda", 0)])
def test_absent_explicit_device_says_what_is_available(monkeypatch, request_):
    fake_machine(monkeypatch, gpus=0, mps=False)
    with pytest.raises(DeviceError) as info:
        resolve_device(request_)
    message = str(info.value)
    assert "not available" in message
    assert "available: cpu" in message
    assert 'device="auto"' in message and 'device="cpu"' in message


def test_gpu_index_beyond_count_is_refused(monkeypatch):
    fake_machine(monkeypatch, gpus=2)
    with pytest.raises(DeviceError, match="cuda:0, cuda:1, cpu"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "tpu", "", 3])
def test_unknown_device_names_are_refused(monkeypatch, bad):
    fake_machine(monkeypatch)
    with pytest.raises(DeviceError):
        resolve_device(bad)


def test_native_bf16_per_device_type(monkeypatch):
    fake_machine(monkeypatch, gpus=1, gpu_major=8)
    assert native_bf16(torch.device("cuda", 0)) is True
    assert native_bf16("mps") is False
    fake_machine(monkeypatch, gpus=1, gpu_major=7)  # Turing: bf16 only emulated
    assert native_bf16("cuda") is False
    fake_machine(monkeypatch, gpus=0)
    assert native_bf16("cuda") is False


def test_native_bf16_on_cpu_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"sse", "avx512_bf16"}))
    assert native_bf16("cpu") is True
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert native_bf16(torch.device("cpu")) is True
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"avx512f", "avx2"}))
    assert native_bf16("cpu") is False


def test_cpu_flags_of_this_machine_match_proc_cpuinfo():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            text = cpuinfo.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo here")
    expected = "avx512_bf16" in text.split() or "amx_bf16" in text.split()
    assert native_bf16("cpu") is expected


def test_resolve_precision(monkeypatch):
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("FP32", "cpu") == "fp32"
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: frozenset())
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"  # emulated, allowed with a warning
    fake_machine(monkeypatch, gpus=1, gpu_major=7)
    assert resolve_precision("auto", "cuda:0") == "fp32"
    assert resolve_precision("bf16", "cuda:0") == "bf16"
    fake_machine(monkeypatch, gpus=1, gpu_major=9)
    assert resolve_precision("auto", "cuda:0") == "bf16"


def test_bf16_where_impossible_and_unknown_precision_are_refused(monkeypatch):
    fake_machine(monkeypatch, mps=True)
    with pytest.raises(DeviceError, match='precision="fp32"'):
        resolve_precision("bf16", "mps")
    assert resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(DeviceError, match="Unknown precision"):
        resolve_precision("fp16", "cpu")

"""Time our TinyViT encoder against upstream MobileSAM's, interleaved, same weights.

Usage (from the repository root)::

    PYTHONPATH=src:. .venv/bin/python benchmarks/_tinyvit_probe.py [--reps 5] [--size 1024]
        [--threads N] [--device cpu]

Prints, per precision (fp32, bf16 autocast), the median seconds of each encoder, the
ratio upstream / ours (> 1: we are faster) and the max abs difference of the outputs.
Calls alternate (upstream, ours, upstream, ...) so that load from other processes
hits both alike.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from tests.oracle import upstream

from napari_segany.core.model.tiny_vit import TinyViT


def _timed(
    encoder: torch.nn.Module, x: torch.Tensor, bf16: bool
) -> tuple[float, float, torch.Tensor]:
    """Wall seconds, CPU seconds of this process (all threads) and the fp32 output."""
    autocast = (
        torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.inference_mode(), autocast:
        out = encoder(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start, out.float()


def _compare(reference, ours, x, reps: int, bf16: bool) -> None:
    label = "bf16" if bf16 else "fp32"
    _timed(reference, x, bf16), _timed(ours, x, bf16)  # warm-up (allocator, kernels)
    ref_wall, ref_cpu, our_wall, our_cpu = [], [], [], []
    for _ in range(reps):
        wall, cpu, ref_out = _timed(reference, x, bf16)
        ref_wall.append(wall), ref_cpu.append(cpu)
        wall, cpu, our_out = _timed(ours, x, bf16)
        our_wall.append(wall), our_cpu.append(cpu)
    diff = (ref_out - our_out).abs().max().item()
    scale = ref_out.abs().max().item()
    for name, ref_t, our_t in (("wall", ref_wall, our_wall), ("cpu", ref_cpu, our_cpu)):
        ref_s, our_s = statistics.median(ref_t), statistics.median(our_t)
        print(
            f"{label} {name:4s} median: upstream {ref_s:.3f} s  ours {our_s:.3f} s  "
            f"ratio {ref_s / our_s:.2f}x  (min {min(ref_t):.3f} / {min(our_t):.3f} s)"
        )
    print(f"{label} max|diff| {diff:.2e} (max|out| {scale:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024, help="upstream only supports 1024")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-bf16", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    reference = upstream.random_upstream_sam("vit_t", seed=0).image_encoder.to(device).eval()
    ours = TinyViT(img_size=args.size).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.to(device)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    x = x.to(device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    _compare(reference, ours, x, args.reps, bf16=False)
    if not args.skip_bf16:
        _compare(reference, ours, x, args.reps, bf16=True)


if __name__ == "__main__":
    main()

"""Time our SAM ViT image encoder against upstream's, interleaved, same random weights.

Usage (from the repository root)::

    .venv/bin/python benchmarks/_encoder_probe.py [--arch vit_b] [--size 1024] [--reps 2]
        [--threads N] [--precision fp32,bf16] [--no-memory]

Each round runs upstream fp32, ours fp32, upstream bf16, ours bf16 once (after one
warm-up each), so that load from other processes hits all alike. It prints the
median wall/CPU seconds of each, speed-up ratios as medians of same-round ratios
(> 1: we are faster), the max abs difference to upstream's output and, for bf16, the
cosine similarity to upstream's fp32 output. ``bf16`` means inside
``torch.autocast(device, torch.bfloat16)``; ``upstream fp32 / ours bf16`` is the
speed-up a user gets from us with bf16 on. Peak memory of one forward pass (growth
of the resident set over the pass: Linux ``VmHWM`` after resetting it) is measured
in a fresh subprocess per model, so that memory the allocator keeps for one model
cannot hide the other's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

from _common import upstream_modules  # also puts src/ and the repository root on sys.path
from napari_segany.core.model.image_encoder import ImageEncoderViT

ARCHS = {  # embed_dim, depth, num_heads, global_attn_indexes
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def build_pair(arch: str, size: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(upstream, ours) encoders of ``arch`` at ``size`` with the same random weights."""
    segment_anything, _, randomize_ = upstream_modules()
    dim, depth, heads, global_idx = ARCHS[arch]
    kwargs = dict(
        img_size=size,
        embed_dim=dim,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4.0,
        out_chans=256,
        window_size=14,
        global_attn_indexes=global_idx,
    )
    reference = segment_anything.modeling.ImageEncoderViT(
        **kwargs,
        qkv_bias=True,
        use_rel_pos=True,
        rel_pos_zero_init=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    )
    randomize_(reference, seed=0)
    ours = ImageEncoderViT(**kwargs)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()


def run_once(encoder: torch.nn.Module, x: torch.Tensor, bf16: bool):
    """(wall s, process CPU s, fp32 output) of one forward pass under inference_mode."""
    autocast = (
        torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    start, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode(), autocast:
        out = encoder(x)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu, out.float()


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def timed_rounds(models: dict, x: torch.Tensor, configs: list[tuple[str, bool]], reps: int):
    """Round-robin timing: each round runs every (model, bf16) config once, in order.

    Returns ``{config: [(wall, cpu), ...]}`` and the last fp32 output of each config.
    """
    for name, bf16 in configs:  # warm-up
        run_once(models[name], x, bf16)
    times: dict = {c: [] for c in configs}
    outputs: dict = {}
    for _ in range(reps):
        for name, bf16 in configs:
            wall, cpu, outputs[(name, bf16)] = run_once(models[name], x, bf16)
            times[(name, bf16)].append((wall, cpu))
    return times, outputs


def report_ratio(label: str, times: dict, slow, fast) -> None:
    """Median over rounds of slow/fast (same-round pairs), wall and CPU."""
    pairs = list(zip(times[slow], times[fast]))
    wall = statistics.median(a[0] / b[0] for a, b in pairs)
    cpu = statistics.median(a[1] / b[1] for a, b in pairs)
    rounds = " ".join(f"{a[0]:.2f}/{b[0]:.2f}" for a, b in pairs)
    print(f"{label}: {wall:.2f}x wall, {cpu:.2f}x cpu   [rounds, s: {rounds}]")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(which: str, arch: str, size: int, bf16: bool) -> None:
    """In a subprocess: build both, drop the other one, print the forward's RSS growth."""
    reference, ours = build_pair(arch, size)
    model = reference if which == "upstream" else ours
    del reference, ours
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    run_once(model, x, bf16)  # warm-up: kernels, thread pools
    import gc

    gc.collect()
    before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    run_once(model, x, bf16)
    print(json.dumps({"peak_growth_mib": (_rss_kib("VmHWM") - before) / 1024}))


def measure_memory(arch: str, size: int, bf16: bool) -> dict[str, float]:
    out = {}
    for which in ("upstream", "ours"):
        cmd = [
            sys.executable,
            __file__,
            "--arch",
            arch,
            "--size",
            str(size),
            "--memory-child",
            which,
        ] + (["--precision", "bf16"] if bf16 else [])
        result = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        out[which] = json.loads(result.stdout.strip().splitlines()[-1])["peak_growth_mib"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_b", choices=sorted(ARCHS))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--precision", default="fp32,bf16")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-child", choices=("upstream", "ours"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    precisions = args.precision.split(",")
    if args.memory_child:
        memory_child(args.memory_child, args.arch, args.size, "bf16" in precisions)
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.arch} "
        f"at {args.size}x{args.size}, {args.reps} reps after 1 warm-up"
    )
    reference, ours = build_pair(args.arch, args.size)
    models = {"upstream": reference, "ours": ours}
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    configs = [(name, p == "bf16") for p in precisions for name in ("upstream", "ours")]
    times, outputs = timed_rounds(models, x, configs, args.reps)
    for (name, bf16), runs in times.items():
        walls = [r[0] for r in runs]
        print(
            f"{name:8s} {'bf16' if bf16 else 'fp32'}: median {statistics.median(walls):.2f} s "
            f"(min {min(walls):.2f}), cpu {statistics.median(r[1] for r in runs):.2f} s"
        )
    up32 = ("upstream", False)
    for bf16 in sorted({b for _, b in configs}):
        label = "bf16" if bf16 else "fp32"
        report_ratio(f"{label}: upstream / ours", times, ("upstream", bf16), ("ours", bf16))
        ref, ours_out = outputs[("upstream", bf16)], outputs[("ours", bf16)]
        line = (
            f"{label}: max|ours - upstream| {(ref - ours_out).abs().max().item():.3g} "
            f"(output max {ref.abs().max().item():.3g})"
        )
        if bf16 and up32 in outputs:
            line += (
                f"; cosine to upstream fp32: upstream {cosine(ref, outputs[up32]):.5f}, "
                f"ours {cosine(ours_out, outputs[up32]):.5f}"
            )
        print(line)
    if up32 in times and ("ours", True) in times:
        report_ratio("upstream fp32 / ours bf16", times, up32, ("ours", True))
        report_ratio("upstream fp32 / upstream bf16", times, up32, ("upstream", True))
    if not args.no_memory:
        for precision in precisions:
            mem = measure_memory(args.arch, args.size, precision == "bf16")
            print(
                f"{precision}: peak RSS growth of one forward: upstream "
                f"{mem['upstream']:.0f} MiB  ours {mem['ours']:.0f} MiB"
            )


if __name__ == "__main__":
    main()

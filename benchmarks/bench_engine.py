"""Engine benchmark: upstream segment-anything vs napari-segany, same weights, one run.

Times (median of ``--repeats`` after one warm-up):

- embedding (``set_image``) of a ``--size`` x ``--size`` RGB image: upstream fp32,
  ours fp32, ours "auto" (bf16 where the device has it natively);
- peak memory (RSS growth) during embedding, each variant in its own process;
- one point prompt with three masks at full resolution (``predict`` / ``segment``),
  calls alternating upstream / ours, median of ``--prompt-repeats``, and the ratio;
- agreement: ours-fp32 vs upstream and ours-auto vs ours-fp32 masks (IoU).

``--prompt-only`` skips the embedding timings (minutes on a CPU): both models get the
same random weights, each embeds the image once, and only the click is timed. Every run
also counts the pixels where the click's masks differ from upstream's when both decode
upstream's embedding (only pixels whose logit is within float rounding of 0 may differ:
our decoder reassociates products, its logits differ from upstream's by < 1e-6).

Usage::

    python benchmarks/bench_engine.py                      # ViT-B, 1024x1024, CPU
    python benchmarks/bench_engine.py --prompt-only --threads 2
    python benchmarks/bench_engine.py --model vit_t --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from _common import blob_image, mask_iou, peak_rss_mb, time_it, upstream_modules

POINTS_YX = [(0.5, 0.5), (0.3, 0.7), (0.7, 0.25), (0.15, 0.15), (0.8, 0.8)]


def _upstream_predictor(model: str, weights: Path, device: str):
    segment_anything, mobile_sam, _ = upstream_modules()
    package = mobile_sam if model == "vit_t" else segment_anything
    sam = package.sam_model_registry[model](checkpoint=None)
    sam.load_state_dict(torch.load(weights, weights_only=True))
    return package.SamPredictor(sam.eval().to(device))


def _ours(model: str, weights: Path, device: str, precision: str):
    from napari_segany.api import SegAny

    return SegAny(model=model, checkpoint=str(weights), device=device, precision=precision)


def _point_masks(predict, size: int) -> np.ndarray:
    masks = [predict(np.array([[y * size, x * size]])) for y, x in POINTS_YX]
    return np.stack(masks)


def embed_worker(args: argparse.Namespace) -> dict:
    """Run in a child process: time embedding, peak RSS growth, masks for POINTS_YX."""
    image = blob_image(args.size, args.size)
    if args.impl == "upstream":
        predictor = _upstream_predictor(args.model, args.weights, args.device)
        base = peak_rss_mb()
        seconds = time_it(lambda: predictor.set_image(image), args.repeats)

        def predict(point_yx):
            masks, _, _ = predictor.predict(point_yx[:, ::-1].copy(), np.array([1]))
            return masks
    else:
        segany = _ours(args.model, args.weights, args.device, args.impl.split("-")[1])
        base = peak_rss_mb()

        def embed():
            segany.cache.clear()
            segany.set_image(image)

        seconds = time_it(embed, args.repeats)

        def predict(point_yx):
            return segany.segment(points_yx=point_yx, labels=[1]).masks

    np.save(args.masks_out, _point_masks(predict, args.size))
    result = {"seconds": seconds, "peak_rss_growth_mb": peak_rss_mb() - base}
    if args.device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def run_child(impl: str, args: argparse.Namespace, tmp: Path) -> tuple[dict, np.ndarray]:
    masks_path = tmp / f"{impl}.npy"
    command = [
        sys.executable,
        __file__,
        "--child",
        impl,
        "--weights",
        str(args.weights),
        "--masks-out",
        str(masks_path),
        "--model",
        args.model,
        "--size",
        str(args.size),
        "--repeats",
        str(args.repeats),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    child = subprocess.run(command, capture_output=True, text=True)
    if child.returncode:
        sys.stderr.write(child.stderr)
        raise SystemExit(f"{impl} failed (exit {child.returncode}); its error output is above")
    return json.loads(child.stdout.strip().splitlines()[-1]), np.load(masks_path)


def prompt_timing(args: argparse.Namespace) -> dict:
    """Interleaved timing of one point prompt (3 masks, full resolution), and agreement.

    Calls alternate (upstream first) after two warm-up calls each, so that load from
    other processes hits both alike; medians of ``args.prompt_repeats`` calls, and the
    quartiles of the ratio within each alternating pair (drift between pairs cancels).
    """
    image = blob_image(args.size, args.size)
    upstream = _upstream_predictor(args.model, args.weights, args.device)
    upstream.set_image(image)
    ours = _ours(args.model, args.weights, args.device, "fp32")
    ours.set_image(image)
    point_yx = np.array([[args.size * 0.5, args.size * 0.5]])
    point_xy = point_yx[:, ::-1].copy()
    label = np.array([1])

    def upstream_click():
        return upstream.predict(point_xy, label, multimask_output=True)[0]

    def our_click():
        return ours.segment(points_yx=point_yx, labels=label).masks

    for _ in range(2):
        upstream_click(), our_click()
    up_s, our_s = [], []
    for _ in range(args.prompt_repeats):
        up_s.append(time_it(upstream_click, 1, warmup=0))
        our_s.append(time_it(our_click, 1, warmup=0))
    up_masks, our_masks = upstream_click(), our_click()
    # The prompt path alone: our predictor on upstream's embedding.
    shared = replace(ours.current.embedding, features=upstream.features.float().contiguous())
    shared_masks = ours.predictor.predict(shared, point_yx, label).masks
    pair_ratios = np.array(up_s) / np.array(our_s)
    return {
        "upstream_s": float(np.median(up_s)),
        "ours_s": float(np.median(our_s)),
        "pair_ratio_quartiles": [float(q) for q in np.percentile(pair_ratios, [25, 50, 75])],
        "repeats": args.prompt_repeats,
        "min_iou_own_embeddings": min(mask_iou(a, b) for a, b in zip(our_masks, up_masks)),
        "differing_pixels_shared_embedding": int(np.count_nonzero(shared_masks != up_masks)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "vit_t"])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--prompt-only",
        action="store_true",
        help="time only the click (same weights, one embedding each); skip embedding",
    )
    parser.add_argument("--prompt-repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--masks-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        args.impl = args.child
        print(json.dumps(embed_worker(args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        segment_anything, mobile_sam, randomize_ = upstream_modules()
        package = mobile_sam if args.model == "vit_t" else segment_anything
        sam = randomize_(package.sam_model_registry[args.model](checkpoint=None))
        args.weights = tmp / "weights.pth"
        torch.save(sam.state_dict(), args.weights)
        del sam
        report = prompt_report(args) if args.prompt_only else report_all(args, tmp)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _header(args: argparse.Namespace) -> dict:
    return {
        "model": args.model,
        "size": args.size,
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def prompt_report(args: argparse.Namespace) -> dict:
    return {**_header(args), "prompt": prompt_timing(args)}


def report_all(args: argparse.Namespace, tmp: Path) -> dict:
    results, masks = {}, {}
    for impl in ("upstream", "ours-fp32", "ours-auto"):
        results[impl], masks[impl] = run_child(impl, args, tmp)
    from napari_segany.core.device import resolve_device, resolve_precision

    auto = resolve_precision("auto", resolve_device(args.device))
    iou = {
        "ours_fp32_vs_upstream": min(
            mask_iou(a, b)
            for a, b in zip(
                masks["ours-fp32"].reshape(-1, args.size, args.size),
                masks["upstream"].reshape(-1, args.size, args.size),
            )
        ),
        "ours_auto_vs_fp32": min(
            mask_iou(a, b)
            for a, b in zip(
                masks["ours-auto"].reshape(-1, args.size, args.size),
                masks["ours-fp32"].reshape(-1, args.size, args.size),
            )
        ),
    }
    return {
        **_header(args),
        "auto_precision": auto,
        "embed": results,
        "prompt": prompt_timing(args),
        "min_mask_iou": iou,
    }


def print_table(report: dict) -> None:
    print(
        f"model {report['model']}, {report['size']}x{report['size']}, device "
        f"{report['device']}, torch {report['torch']}, {report['threads']} threads"
        + (f", auto = {report['auto_precision']}" if "auto_precision" in report else "")
    )
    print("| step | upstream | ours | speed-up |")
    print("|---|---|---|---|")
    embed = report.get("embed")
    if embed is not None:
        up = embed["upstream"]
        for impl in ("ours-fp32", "ours-auto"):
            ours = embed[impl]
            print(
                f"| embedding, {impl} | {up['seconds']:.2f} s | {ours['seconds']:.2f} s "
                f"| {up['seconds'] / ours['seconds']:.2f}x |"
            )
        for impl in ("ours-fp32", "ours-auto"):
            print(
                f"| peak RSS growth while embedding, {impl} | {up['peak_rss_growth_mb']:.0f} "
                f"MiB | {embed[impl]['peak_rss_growth_mb']:.0f} MiB | |"
            )
        if "peak_cuda_mb" in up:
            for impl in ("ours-fp32", "ours-auto"):
                print(
                    f"| peak CUDA memory, model and embedding, {impl} | "
                    f"{up['peak_cuda_mb']:.0f} MiB | {embed[impl]['peak_cuda_mb']:.0f} MiB | |"
                )
    prompt = report["prompt"]
    print(
        f"| one point prompt, 3 masks (median of {prompt['repeats']}, interleaved) "
        f"| {prompt['upstream_s'] * 1e3:.1f} ms | {prompt['ours_s'] * 1e3:.1f} ms "
        f"| {prompt['upstream_s'] / prompt['ours_s']:.2f}x |"
    )
    low, middle, high = prompt["pair_ratio_quartiles"]
    print(
        f"| the same calls: ratio within each upstream / ours pair, median (quartiles) | | "
        f"| {middle:.2f}x ({low:.2f}-{high:.2f}) |"
    )
    print(
        f"| click masks, min IoU on own embeddings | | {prompt['min_iou_own_embeddings']:.4f} | |"
    )
    print(
        "| click masks on upstream's embedding, pixels differing from upstream | | "
        f"{prompt['differing_pixels_shared_embedding']} | |"
    )
    for name, value in report.get("min_mask_iou", {}).items():
        print(f"| min mask IoU {name} | | {value:.4f} | |")


if __name__ == "__main__":
    raise SystemExit(main())

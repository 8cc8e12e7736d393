"""Everything-mode benchmark: upstream SamAutomaticMaskGenerator vs ours, same weights.

One process, same random weights, same image; embedding included in every time.
Prints wall times, the speed-up of ours (fp32 and "auto" precision) over upstream, and
how well the outputs agree: mask counts and the fraction of masks with a match of
IoU >= 0.9 both ways.

Usage::

    python benchmarks/bench_everything.py                        # ViT-B, 32x32 points
    python benchmarks/bench_everything.py --model vit_t --points-per-side 8 --size 256
    python benchmarks/bench_everything.py --peak-rss --size 2048  # ours only: peak RSS
    python benchmarks/bench_everything.py --device cuda --size 1024  # GPU, after a warm-up
    python benchmarks/bench_everything.py --modes --size 1024   # ours: grid, AIS, APG, built-in

``--modes`` runs only ours, per mode on one generated nuclei plane (embedding included,
each from an empty cache): SAM's grid, AIS and APG (random-weight ViT-B with a random
micro-sam instance decoder: APG's prompts are as many as the random maps' seeds) and
the built-in model's own AIS, and prints the grid's time over AIS's and APG's. APG
also runs on the maps a perfect decoder would give (one seed per nucleus); with
``--reference`` micro-sam's APG runs there too (its code from ``tests/oracle``, upstream
SAM with the same weights) and its time after the embedding is compared with ours.
``--peak-rss`` runs only ours (``SegAny.segment_everything`` on a uint16 plane, random
weights, no upstream) in this fresh process and prints its peak resident set size.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import blob_image, peak_rss_mb, upstream_modules


def _models(model: str, seed: int):
    """(upstream package, upstream model, ours), same random weights."""
    segment_anything, mobile_sam, _ = upstream_modules()
    from tests.oracle.upstream import matched_pair

    reference, ours = matched_pair(model, seed, 0.15)
    return (mobile_sam if model == "vit_t" else segment_anything), reference, ours


def _match(masks_a: list, masks_b: list) -> float:
    """Fraction of ``masks_a`` with a mask in ``masks_b`` of IoU >= 0.9."""
    if not masks_a or not masks_b:
        return float(len(masks_a) == len(masks_b))
    hits = 0
    flat_b = np.stack(masks_b).reshape(len(masks_b), -1)
    areas_b = flat_b.sum(1)
    for mask in masks_a:
        inter = flat_b[:, mask.ravel()].sum(1)
        union = areas_b + mask.sum() - inter
        hits += bool(np.any(inter >= 0.9 * np.maximum(union, 1)))
    return hits / len(masks_a)


def peak_rss(model: str, size: int, points_per_side: int, precision: str) -> None:
    """Everything mode of ours alone on a size x size plane; print time and peak RSS."""
    from napari_segany.api import SegAny
    from napari_segany.core.model.build import build_sam

    before = peak_rss_mb()
    session = SegAny.from_model(build_sam(model), "cpu", precision, name=model)
    plane = (blob_image(size, size)[..., 0].astype(np.uint16) * 16) + 100
    loaded = peak_rss_mb()
    start = time.perf_counter()
    session.set_image(plane)
    embedded = time.perf_counter() - start
    result = session.segment_everything(
        points_per_side=points_per_side, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    total = time.perf_counter() - start
    print(
        f"model {model} ({precision}), {size}x{size} uint16 plane, {points_per_side}^2 points, "
        f"{torch.get_num_threads()} threads: embed {embedded:.1f} s, total {total:.1f} s, "
        f"{len(result.objects)} objects, {result.n_candidates} candidates"
    )
    print(
        f"peak RSS: {peak_rss_mb():.0f} MiB (imports {before:.0f} MiB, "
        f"after model build and plane {loaded:.0f} MiB)"
    )


def _truth_maps(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The maps a perfect instance decoder would give for ``labels``: foreground, the
    distance to each object's centre and to its boundary, each normalised per object
    as micro-sam's training targets are (0 at the centre; 0 deep inside)."""
    from scipy import ndimage

    foreground = (labels > 0).astype(np.float32)
    center = np.ones(labels.shape, np.float32)
    boundary = np.ones(labels.shape, np.float32)
    inside = ndimage.distance_transform_edt(labels > 0)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mask = labels[box] == index
        yy, xx = np.nonzero(mask)
        to_centre = np.hypot(yy - yy.mean(), xx - xx.mean())
        depth = inside[box][mask]
        center[box][mask] = to_centre / max(to_centre.max(), 1.0)
        boundary[box][mask] = 1.0 - depth / max(depth.max(), 1.0)
    return foreground, center, boundary


def _compare_apg(package, reference, rgb, maps, result, ours_s: float) -> None:
    """micro-sam's APG (from its source, ``tests/oracle``) on the same plane, weights and
    maps: its time after the embedding against ours, and whether the labels agree."""
    from tests.oracle.torch_em_upstream import reference_apg

    predictor = package.SamPredictor(reference)
    with torch.inference_mode():
        predictor.set_image(rgb)
    start = time.perf_counter()
    expected = reference_apg(predictor, *maps)
    reference_s = time.perf_counter() - start
    ours = result.labels
    pairs = np.unique(np.stack([expected.ravel(), ours.ravel()]), axis=1)
    same = len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    alike = np.mean((expected > 0) == (ours > 0))
    print(
        f"APG on ideal maps after the embedding: micro-sam {reference_s:.2f} s, ours "
        f"{ours_s:.2f} s ({reference_s / ours_s:.1f}x); objects {expected.max()} vs "
        f"{ours.max()}, same partition: {same}, fore/background alike on {alike:.4f} of "
        "pixels (upstream's ViT-B embedding is not bit-equal to ours)"
    )


def modes(
    size: int, points_per_side: int, seed: int, precision: str, with_reference: bool = False
) -> None:
    """Seconds per plane of ours for each everything mode (module docstring)."""
    from napari_segany.api import SegAny
    from napari_segany.core.everything.ais import MAPS_KEY
    from napari_segany.core.model.instance_decoder import InstanceDecoder
    from napari_segany.core.synthetic import generate_scene

    randomize_ = upstream_modules()[2]
    package, reference, sam = _models("vit_b", seed)  # the same random weights
    sam.instance_decoder = randomize_(InstanceDecoder(), seed, 0.15)
    scene = generate_scene(np.random.default_rng(seed), (size, size), "nuclei", radius=14.0)
    plane = scene.image  # generated nuclei: the built-in model's kind of plane
    truth = _truth_maps(scene.labels)
    runs = []
    for name, model, mode in (
        ("vit_b grid", "vit_b", "grid"),
        ("vit_b ais", "vit_b", "ais"),
        ("vit_b apg", "vit_b", "apg"),
        ("vit_b apg, ideal maps", "vit_b", "apg"),
        ("builtin ais", "builtin", "auto"),
    ):
        if model == "builtin":
            session = SegAny("builtin", device="cpu", precision=precision)
        else:
            session = SegAny.from_model(sam, "cpu", precision, name=model)
        start = time.perf_counter()
        session.set_image(plane)
        embedded = time.perf_counter() - start
        if "ideal" in name:  # a perfect decoder's maps: one seed per nucleus
            session.current.prepared[MAPS_KEY] = truth
        decoding = time.perf_counter()
        result = session.segment_everything(mode=mode, points_per_side=points_per_side)
        runs.append((name, embedded, time.perf_counter() - start, len(result.objects)))
        if "ideal" in name and with_reference:
            ours_s = time.perf_counter() - decoding
            _compare_apg(package, reference, session.current.rgb, truth, result, ours_s)
        del session
    print(
        f"{size}x{size} generated nuclei ({plane.dtype}, {scene.labels.max()} nuclei), "
        f"{points_per_side}^2 grid points, {precision}, {torch.get_num_threads()} threads"
    )
    print(f"{'mode':<24}{'embed s':>9}{'total s':>9}{'objects':>9}")
    for name, embedded, total, count in runs:
        print(f"{name:<24}{embedded:>9.2f}{total:>9.2f}{count:>9}")
    grid = runs[0]
    for name, embedded, total, _ in runs[1:4]:
        print(
            f"grid / {name}: {grid[2] / total:.2f}x per plane, "
            f"{(grid[2] - grid[1]) / (total - embedded):.2f}x after the embedding"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=("vit_b", "vit_t", "vit_l", "vit_h"))
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peak-rss", action="store_true", help="ours only; print peak RSS")
    parser.add_argument("--modes", action="store_true", help="ours only; grid, AIS, APG, built-in")
    parser.add_argument(
        "--reference", action="store_true", help="with --modes: micro-sam's APG too (slow)"
    )
    parser.add_argument(
        "--precision", default="fp32", help="of --peak-rss and --modes (default fp32)"
    )
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (on cuda each variant runs once untimed first)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.peak_rss:
        peak_rss(args.model, args.size, args.points_per_side, args.precision)
        return
    if args.modes:
        modes(args.size, args.points_per_side, args.seed, args.precision, args.reference)
        return
    from napari_segany.core.device import resolve_precision
    from napari_segany.core.everything.grid import segment_everything
    from napari_segany.core.predictor import Predictor

    package, reference, ours = _models(args.model, args.seed)
    device = torch.device(args.device)
    reference = reference.to(device)
    rgb = blob_image(args.size, args.size)
    params = {"points_per_side": args.points_per_side}
    generator = package.SamAutomaticMaskGenerator(reference, **params)
    auto = resolve_precision("auto", device)
    warm_up = device.type == "cuda"  # CUDA start-up and kernel choice are not timed
    runs = {}
    with torch.inference_mode():
        if warm_up:
            generator.generate(rgb)
        start = time.perf_counter()
        upstream_masks = [r["segmentation"] for r in generator.generate(rgb)]
    runs["upstream fp32"] = time.perf_counter() - start
    for name, precision in (("ours fp32", "fp32"), (f"ours auto ({auto})", auto)):
        predictor = Predictor(ours, device, precision)
        if warm_up:
            segment_everything(predictor, rgb, **params)
        start = time.perf_counter()
        result = segment_everything(predictor, rgb, **params)
        runs[name] = time.perf_counter() - start
        masks = [result.mask(i) for i in range(len(result.objects))]
        runs[name + " masks"] = (
            len(masks),
            _match(upstream_masks, masks),
            _match(masks, upstream_masks),
        )
    print(
        f"model {args.model}, {args.size}x{args.size}, {args.points_per_side}^2 points, "
        f"device {args.device}, {torch.get_num_threads()} threads; "
        f"upstream kept {len(upstream_masks)} masks"
    )
    print(
        f"{'variant':<22}{'seconds':>9}{'speed-up':>10}{'masks':>7}{'up->ours':>10}{'ours->up':>10}"
    )
    base = runs["upstream fp32"]
    print(f"{'upstream fp32':<22}{base:>9.2f}{1.0:>10.2f}{len(upstream_masks):>7}")
    for name in [k for k in runs if k.startswith("ours") and not k.endswith("masks")]:
        count, recall, precision = runs[name + " masks"]
        print(
            f"{name:<22}{runs[name]:>9.2f}{base / runs[name]:>10.2f}{count:>7}"
            f"{recall:>10.3f}{precision:>10.3f}"
        )


if __name__ == "__main__":
    main()

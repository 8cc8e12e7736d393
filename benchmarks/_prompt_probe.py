"""Time one prompt (decode + masks at full resolution) against upstream SamPredictor.predict.

Usage (from the repository root)::

    .venv/bin/python benchmarks/_prompt_probe.py [--arch vit_b] [--size 1024 1024]
        [--reps 20] [--threads N] [--boxes 0]

Both predictors hold the same random weights and the *same* embedding (a random
tensor: the prompt path does not depend on its values), so only the prompt path is
timed: prompt encoding, mask decoding and postprocessing to the plane's resolution.
Calls alternate (upstream first), after warm-up, so that load from other processes hits
both alike. Printed: median milliseconds of upstream and ours for the whole call, for
the decoder alone (prompt encoder + mask decoder, low-resolution logits) and for the
postprocessing alone, the ratios upstream / ours (> 1: we are faster), the IoU of every
mask against upstream's and the number of pixels where the masks differ.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from _common import (
    interleaved_times,
    mask_iou,
    upstream_modules,
)  # also puts src/ and the root on sys.path
from napari_segany.core.embeddings import Embedding
from napari_segany.core.image import PIXEL_MEAN, PIXEL_STD, model_input_hw
from napari_segany.core.model.build import build_sam
from napari_segany.core.predictor import Predictor, upscale_masks


def build(arch: str, size: tuple[int, int]):
    """(upstream SamPredictor, our Predictor, our Embedding) on one shared embedding."""
    segment_anything, mobile_sam, randomize_ = upstream_modules()
    registry = mobile_sam.sam_model_registry if arch == "vit_t" else segment_anything
    registry = getattr(registry, "sam_model_registry", registry)
    reference = randomize_(registry[arch](checkpoint=None), seed=0)
    reference.pixel_mean.copy_(torch.tensor(PIXEL_MEAN).view(3, 1, 1))
    reference.pixel_std.copy_(torch.tensor(PIXEL_STD).view(3, 1, 1))
    ours = build_sam(arch)
    ours.load_state_dict(reference.state_dict())
    features = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0))
    predictor_class = (mobile_sam if arch == "vit_t" else segment_anything).SamPredictor
    upstream_predictor = predictor_class(reference)
    upstream_predictor.features = features
    upstream_predictor.original_size = size
    upstream_predictor.input_size = model_input_hw(size)
    upstream_predictor.is_image_set = True
    embedding = Embedding(features, size, model_input_hw(size), arch)
    return upstream_predictor, Predictor(ours, "cpu", "fp32"), embedding


def interleaved(first, second, reps: int) -> tuple[float, float]:
    """Median seconds of ``first()`` and ``second()``, called alternately."""
    times_first, times_second = interleaved_times(first, second, reps)
    return statistics.median(times_first), statistics.median(times_second)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit_b")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1024), metavar=("H", "W"))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = tuple(args.size)
    reference, ours, embedding = build(args.arch, size)
    point_yx = np.array([[0.45 * size[0], 0.55 * size[1]]])
    label = np.array([1])

    def upstream_call():
        with torch.inference_mode():
            return reference.predict(point_yx[:, ::-1], label, multimask_output=True)

    def our_call():
        return ours.predict(embedding, point_yx, label, multimask=True)

    masks, _, low_res = upstream_call()
    result = our_call()
    ious = [mask_iou(a, b) for a, b in zip(result.masks, masks)]
    up_total, our_total = interleaved(upstream_call, our_call, args.reps)

    logits = torch.as_tensor(low_res)[None]
    input_hw = model_input_hw(size)

    def upstream_post():
        with torch.inference_mode():
            return (reference.model.postprocess_masks(logits, input_hw, size) > 0).numpy()

    up_post, our_post = interleaved(
        upstream_post, lambda: upscale_masks(logits, input_hw, size), args.reps
    )

    model = reference.model
    model_xy = reference.transform.apply_coords(point_yx[:, ::-1].copy(), size)
    prompt = (torch.as_tensor(model_xy, dtype=torch.float32)[None], torch.tensor([[1]]))

    def upstream_decode():
        with torch.inference_mode():
            sparse, dense = model.prompt_encoder(points=prompt, boxes=None, masks=None)
            return model.mask_decoder(
                image_embeddings=reference.features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=True,
            )

    def our_decode():
        with torch.inference_mode():
            return ours.model.decode(embedding.features, *prompt, None, None, True)

    up_decode, our_decode_s = interleaved(upstream_decode, our_decode, args.reps)
    print(
        f"arch {args.arch}, plane {size[0]}x{size[1]}, threads {torch.get_num_threads()}, "
        f"one point, 3 masks, median of {args.reps}"
    )
    print(
        f"whole predict : upstream {up_total * 1e3:8.1f} ms  ours {our_total * 1e3:8.1f} ms  "
        f"ratio {up_total / our_total:5.2f}"
    )
    print(
        f"decoder alone : upstream {up_decode * 1e3:8.1f} ms  ours {our_decode_s * 1e3:8.1f} ms  "
        f"ratio {up_decode / our_decode_s:5.2f}"
    )
    print(
        f"postprocessing: upstream {up_post * 1e3:8.1f} ms  ours {our_post * 1e3:8.1f} ms  "
        f"ratio {up_post / our_post:5.2f}"
    )
    print("mask IoU vs upstream: " + ", ".join(f"{iou:.5f}" for iou in ious))
    print(f"pixels differing from upstream's masks: {int(np.count_nonzero(result.masks != masks))}")


if __name__ == "__main__":
    main()

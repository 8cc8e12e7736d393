"""Phase 4 (experiment): the built-in model's prompt encoder and mask decoder tuned on
tiny planes, its image encoder and foreground head frozen.

A plane much smaller than the model frame (a 61 x 57 crop) is enlarged at most 2x
(``max_upscale``) and sits in the frame's top-left corner, the rest padding. Training
saw such planes only through its zoom-out (images of 128-256 px, objects whole) and
its padding bands; a tiny crop cuts most of its objects at its edge. Here half the
batches are tiny planes made as the predictor makes them: a random 24-128 px crop of a
training window, a grey one's contrast mostly stretched again over the crop alone (as
a user's uint16 crop is read), enlarged 2x with the predictor's resize, at the frame's
origin; the other half are the training's own windows, so the rest is not forgotten::

    PYTHONPATH=src .venv/bin/python -m training.tune_tiny --steps 600

writes ``training/out/builtin_tiny.pt``; ``training.evaluate_builtin --weights`` that
file measures it with the built-in model's rules. Other flags of ``train_builtin``
(``--windows``, ``--batch``, ``--out``, ...) apply. The encoder is frozen so that the
foreground head (everything mode, snapped prompts) stays exact. Measured and not kept
(docs/models.md, "Why the tiny case stays short of the target").
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch

from napari_segany.core.image import resize_longest_side, robust_limits, to_model_rgb
from napari_segany.core.loading import load_model

from . import train_builtin as tb

logger = logging.getLogger("tune_tiny")
CROP_PX = (24, 128)  # crop sides drawn from this range (plane pixels)
UPSCALE = 2  # the built-in model's max_upscale
# A grey crop's contrast is stretched again over the crop alone this often: a uint16 or
# float crop is read with its own limits (the generator's share of such images), a
# uint8 one as it is.
RESTRETCH_RATE = 0.6


def tiny_plane(rng: np.random.Generator, rgb: np.ndarray, labels: np.ndarray):
    """One window (S, S, 3) uint8 / (S, S) as a tiny plane in the model frame.

    Returns (rgb, labels, pad) of the window's shape: the crop's pixels (a grey crop's
    contrast stretched over the crop with probability :data:`RESTRETCH_RATE`) enlarged
    2x at the top-left, labels likewise (nearest), ``pad`` True elsewhere.
    """
    size = labels.shape[0]
    largest = min(CROP_PX[1], size // UPSCALE)  # enlarged, the crop fits the window
    crop_h, crop_w = (int(v) for v in rng.integers(min(CROP_PX[0], largest), largest + 1, 2))
    y0 = int(rng.integers(0, size - crop_h + 1))
    x0 = int(rng.integers(0, size - crop_w + 1))
    crop = np.s_[y0 : y0 + crop_h, x0 : x0 + crop_w]
    pixels = rgb[crop]
    if (pixels == pixels[..., :1]).all() and rng.random() < RESTRETCH_RATE:
        grey = pixels[..., 0]
        low, high = robust_limits(grey)
        if high > low:  # (a flat crop stays as it is)
            pixels = to_model_rgb(grey, contrast_limits=(low, high))
    enlarged = resize_longest_side(pixels, UPSCALE * max(crop_h, crop_w))[0]
    enlarged = enlarged.permute(1, 2, 0).to(torch.uint8).numpy()
    out_h, out_w = enlarged.shape[:2]
    out_rgb = np.zeros_like(rgb)
    out_rgb[:out_h, :out_w] = enlarged
    out_labels = np.zeros_like(labels)
    out_labels[:out_h, :out_w] = tb.nearest(labels[crop], (out_h, out_w))
    pad = np.ones(labels.shape, bool)
    pad[:out_h, :out_w] = False
    return out_rgb, out_labels, pad


def tiny_batch(rng: np.random.Generator, rgb: np.ndarray, labels: np.ndarray):
    """:func:`tiny_plane` of each window after a random quarter turn and flip."""
    planes = []
    for index in range(len(labels)):
        turns, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
        r, lab = np.rot90(rgb[index], turns), np.rot90(labels[index], turns)
        if flip:
            r, lab = r[:, ::-1], lab[:, ::-1]
        planes.append(tiny_plane(rng, np.ascontiguousarray(r), np.ascontiguousarray(lab)))
    return tuple(np.stack(part) for part in zip(*planes))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", default="builtin", help="model to tune")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--tiny-rate", type=float, default=0.5, help="share of tiny batches")
    parser.add_argument("--tag", default="_tiny")
    own, rest = parser.parse_known_args(argv)
    args = tb.parse_args(rest)  # the training's own settings (prompts, losses, data, --out)
    args.__dict__.update(vars(own))
    return args


def tiny_or_window(args):
    """The tune's batches (``train_builtin.optimise``): tiny planes at the frame's origin
    with probability ``args.tiny_rate``, else the training's own windows."""

    def make(rng, rgb, labels):
        if rng.random() < args.tiny_rate:
            return tiny_batch(rng, rgb, labels), (0, 0), "tiny "
        return tb.augment(rng, rgb, labels, args.zoom_rate), None, ""

    return make


def tune(model, windows, args):
    """``args.steps`` steps on the prompt encoder and mask decoder of ``model``, the
    image encoder and foreground head frozen; returns the model in eval mode."""
    model.train()
    model.image_encoder.requires_grad_(False).eval()
    if model.foreground_head is not None:
        model.foreground_head.requires_grad_(False).eval()
    parameters = [*model.prompt_encoder.parameters(), *model.mask_decoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(args.seed + 4)
    steps = range(args.steps)
    batches = tiny_or_window(args)
    tb.optimise(model, None, optimizer, parameters, windows, args.batch, args.objects, steps,
                rng, args, batches)  # fmt: skip
    return model.eval()


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    started = time.perf_counter()
    windows = tb.training_windows(args)
    model = tune(load_model(args.source, device="cpu").model, windows, args)
    meta = {k: args.__dict__[k] for k in ("source", "steps", "lr", "tiny_rate", "seed")}
    meta["total_seconds"] = round(time.perf_counter() - started, 1)
    tb.save(model, args.out / f"builtin{args.tag}.pt", meta)


if __name__ == "__main__":
    main()

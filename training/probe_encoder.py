"""What the encoder alone learns in phase 0: train it on the auxiliary dense loss, then
measure the auxiliary head's foreground against the truth on held-out 512 px frames.

The experiment behind the ``detail_strides`` choice of docs/models.md::

    PYTHONPATH=src .venv/bin/python -m training.probe_encoder    # no detail path
    PYTHONPATH=src .venv/bin/python -m training.probe_encoder --detail-strides 4
    PYTHONPATH=src .venv/bin/python -m training.probe_encoder --detail-strides 2,4

Reported: ``foreground_iou`` (all objects against all foreground, per frame) and
``rim_iou``: per object, the predicted foreground within 3 px of it (other objects'
pixels excluded) against the object -- the rim quality the embedding allows, with
touching neighbours taken out of the question. Other options are those of
``train_builtin`` (``--encoder-steps``, ``--threads``, ...).
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from scipy import ndimage

from napari_segany.core.image import to_model_rgb
from napari_segany.core.model.foreground_head import ForegroundHead
from napari_segany.core.synthetic import generate_scene

from . import train_builtin
from .evaluate_builtin import EVAL_SEED, MIN_AREA, iou

FRAMES = 12
RIM_BAND_PX = 3


def rim_scores(model, aux: ForegroundHead) -> dict[str, float]:
    """Foreground IoU and per-object rim IoU of the auxiliary head on held-out frames."""
    foreground, rims = [], []
    for index in range(FRAMES):
        rng = np.random.default_rng(EVAL_SEED + 1000 + index)
        scene = generate_scene(rng, (512, 512))
        pixels = train_builtin._normalise(
            to_model_rgb(scene.image)[None], np.zeros((1, 512, 512), bool)
        )
        with torch.inference_mode():
            logits = aux(model.image_encoder(pixels.to(train_builtin._device(model))))
        predicted = logits[0, 0].cpu().numpy() > 0
        labels = scene.labels
        foreground.append(iou(predicted, labels > 0))
        for object_id in np.unique(labels)[1:]:
            mask = labels == object_id
            if mask.sum() < MIN_AREA:
                continue
            band = ndimage.binary_dilation(mask, iterations=RIM_BAND_PX) & ((labels == 0) | mask)
            rims.append(iou(predicted & band, mask))
    return {"foreground_iou": float(np.mean(foreground)), "rim_iou": float(np.mean(rims))}


def main(argv=None) -> None:
    args = train_builtin.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    windows = train_builtin.training_windows(args)
    model, aux = train_builtin.fresh_model(args)  # as train(): the same random streams
    rng = np.random.default_rng(args.seed + 1)
    started = time.perf_counter()
    train_builtin.pretrain_encoder(model, aux, windows, rng, args)
    seconds = time.perf_counter() - started
    scores = rim_scores(model.eval(), aux.eval())
    report = {
        "detail_strides": args.detail_strides,
        "encoder_steps": args.encoder_steps,
        "seconds": seconds,
    }
    print(json.dumps({**report, **scores}, indent=2))


if __name__ == "__main__":
    main()

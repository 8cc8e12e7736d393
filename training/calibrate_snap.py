"""Choose how prompts snap to the foreground head's objects (``core.seeds``).

::

    PYTHONPATH=src .venv/bin/python -m training.calibrate_snap

On generated calibration scenes (those of ``calibrate_everything``, not the held-out
set), up to 25 objects each, prompted as ``evaluate_builtin`` prompts them (a click at
the most interior pixel, the exact bounding box): mean IoU of the decoder's answer
(with the clicked-part and box rules), of the answer snapped to the head's object
where the decoder's best-scored mask and the object agree (IoU at least ``t``; 0:
always), the snapped click's object cut to the mask's box grown by ``g`` of its
sides (or not cut), and split from what lies past that box along the head's border
logits (``snapping.split_off``), with the decoder's mask or with the click's guide (the
mask decoded on the zoomed tile from two views, ``core.click_guide``); the box's
object cut to the box, and fitted to it
(``snapping.fit_to_box``: which objects join, the lowest level, where in the near-best
range); overall and for objects under 4 px of radius in the 512 px model frame.
About 4 minutes on 2 CPU threads.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from napari_segany.api import SegAny
from napari_segany.core.plugins import Prompt
from napari_segany.core.synthetic import interior_point_yx
from napari_segany.models.builtin import objects, snapping
from napari_segany.models.builtin.refiner import SnapToObjects

from .calibrate_everything import calibration_scenes
from .evaluate_builtin import MIN_AREA, MODEL_FRAME, iou

AGREEMENT = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)
GROWTH = (None, 0.0, 0.1, 0.25, 0.5)
SPLIT_GROWTH = (0.1, 0.25, 0.5)
# (inside share, lowest logit, position) of fit_to_box; 1.01: no object joins
BOX_FITS = (
    *((inside, -2.0, 0.5) for inside in (0.5, 0.7, 0.9, 1.01)),
    *((0.9, lowest, 0.5) for lowest in (-1.5, -1.0, 0.5)),
    *((0.9, -2.0, position) for position in (0.35, 0.65, 0.8)),
)
SMALL_RADIUS = 4.0


def click_answers(
    result, objects: np.ndarray, click: np.ndarray, border_logits, guided: np.ndarray
) -> dict:
    """The best-scored mask of a click snapped by each click rule of the sweep, by the
    rule's name; ``guided``: the click's masks with the best-scored one replaced by its
    guide (``SnapToObjects._guided``, ``models.builtin.click_guide``)."""
    best = int(np.argmax(result.scores))

    def snapped(masks=result.masks, **rule) -> np.ndarray:
        return snapping.snap_to_objects(
            masks, result.scores, objects, click, np.array([1]), None, **rule
        )[best]

    answers = {}
    for agreement in AGREEMENT:
        answers[f"snapped where IoU >= {agreement}"] = snapped(agreement_iou=agreement)
    for growth in GROWTH:
        rule = "not cut" if growth is None else f"cut to the mask's box + {growth}"
        answers[f"snapped, {rule}"] = snapped(box_growth=growth)
    for growth in SPLIT_GROWTH:
        answer = snapped(border_logits=border_logits, split_growth=growth)
        answers[f"snapped, split past the mask's box + {growth}"] = answer
        answer = snapped(guided, border_logits=border_logits, split_growth=growth)
        answers[f"snapped, split past the guide's box + {growth}"] = answer
    answers["the guide alone"] = guided[best]
    return answers


def measure(session: SegAny, snap: SnapToObjects, n_images: int, max_objects: int) -> dict:
    scores: dict[tuple[str, str, bool], list[float]] = {}
    rng = np.random.default_rng(0)

    def add(prompt: str, rule: str, small: bool, answer: np.ndarray, truth: np.ndarray):
        scores.setdefault((prompt, rule, small), []).append(iou(answer, truth))

    for scene in calibration_scenes(n_images):
        session.set_image(scene.image)
        # the objects with the logits they were found on (what the split and fit need)
        context = session._current
        found = snap.prepare(context)
        objects, logits, zoom = found.labels, found.logits, found.zoom
        foreground_logits, border_logits = logits
        to_frame = MODEL_FRAME / max(scene.labels.shape)
        ids = [i for i in np.unique(scene.labels) if i and (scene.labels == i).sum() >= MIN_AREA]
        for object_id in rng.permutation(ids)[:max_objects]:
            truth = scene.labels == object_id
            small = np.sqrt(truth.sum() / np.pi) * to_frame < SMALL_RADIUS
            click = np.array([interior_point_yx(truth)])
            result = session.segment(points_yx=click, labels=[1])
            best = int(np.argmax(result.scores))
            add("click", "decoder", small, result.masks[best], truth)
            prompt = Prompt(click, np.array([1]), None, None, True)
            guided = snap._guided(result.masks, result, prompt, context, zoom)
            answers = click_answers(result, objects, click, border_logits, guided)
            for rule, answer in answers.items():
                add("click", rule, small, answer, truth)
            ys, xs = np.nonzero(truth)
            box = np.array([ys.min(), xs.min(), ys.max(), xs.max()], dtype=np.float64)
            result = session.segment(box_yxyx=box, multimask=False)
            add("box", "decoder", small, result.masks[0], truth)
            snapped = snapping.snap_to_objects(
                result.masks, result.scores, objects, None, None, box
            )
            add("box", "snapped, cut to the box", small, snapped[0], truth)
            votes = np.bincount(objects[result.masks[0]], minlength=1)
            votes[0] = 0
            for inside, lowest, position in BOX_FITS:
                fitted = snapped[0]  # the box's mask falls on no object: not fitted
                if votes.max() > 0:
                    fitted = snapping.fit_to_box(
                        objects,
                        int(votes.argmax()),
                        box,
                        foreground_logits,
                        border_logits,
                        inside_share=inside,
                        logits=tuple(v for v in snapping.BOX_FIT_LOGITS if v >= lowest),
                        position=position,
                    )
                rule = f"fitted: {inside} inside joins, logits from {lowest}, at {position}"
                add("box", f"snapped, {rule}", small, fitted, truth)
    table = []
    for prompt, rule in sorted({(p, r) for p, r, _ in scores}):
        small, large = scores.get((prompt, rule, True), []), scores.get((prompt, rule, False), [])
        table.append(
            {
                "prompt": prompt,
                "rule": rule,
                "iou": round(float(np.mean(small + large)), 4),
                "iou_small": round(float(np.mean(small)), 4) if small else None,
                "small_objects": len(small),
                "objects": len(small) + len(large),
            }
        )
    return {"table": table}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--objects", type=int, default=25)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument(
        "--views",
        type=int,
        choices=objects.VIEWS,
        default=objects.HEAD_VIEWS,
        help="the head's views (SnapToObjects(views=...))",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # the decoder's answers with the model's mask rules; snapped by hand below
    rules = ["clip_to_box", "clicked_parts"]
    session = SegAny(args.model, device="cpu", precision="fp32", refine=rules)
    result = measure(session, SnapToObjects(views=args.views), args.images, args.objects)
    report = {"model": args.model, "images": args.images, "views": args.views, **result}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

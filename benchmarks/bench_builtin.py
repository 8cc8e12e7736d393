"""Speed of the built-in model on 2 CPU threads: embedding, prompts, everything mode.

    cd benchmarks && ../.venv/bin/python bench_builtin.py [--threads 2] [--repeats 5]

Targets (docs/models.md): embedding of a 1024 x 1024 image <= 0.3 s on 2 cores; the
whole model <= 15 MB. The embedding time includes the conversion to model RGB and the
resize to the 512 px frame (what ``SegAny.embed`` does), not a cache hit.
"""

from __future__ import annotations

import argparse

import numpy as np

from _common import time_it
from napari_segany import SegAny
from napari_segany._sample_data import nuclei_scene_2d
from napari_segany.core import checkpoints, registry
from napari_segany.core.synthetic import generate_scene
from napari_segany.models.builtin.refiner import SnapToObjects

DECODER_RULES = ["clip_to_box", "clicked_parts"]  # the built-in model's rules, not snapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fp32 either way)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    path = checkpoints.packaged_checkpoint(registry.REGISTRY["builtin"])
    session = SegAny(device=args.device, precision="fp32")
    rng = np.random.default_rng(7)
    planes = [
        generate_scene(rng, (1024, 1024), kind="nuclei", radius=14, dtype="uint16").image
        for _ in range(args.repeats + 1)
    ]
    index = iter(range(len(planes)))

    def embed() -> None:
        session.cache.clear()
        session.prepare(planes[next(index)], refine=False)

    embedding = time_it(embed, args.repeats)
    session.set_image(planes[0])  # embeds and prepares: the head's objects and views
    click = time_it(lambda: session.segment(points_yx=[[500, 500]], labels=[1]), 20)
    session.refiners = DECODER_RULES
    click_decoded = time_it(lambda: session.segment(points_yx=[[500, 500]], labels=[1]), 20)
    session.refiners = "auto"
    box = _box_around(_prepared(session).labels, (500, 500))

    def box_prompt() -> None:  # three candidates, as the widget asks for one box
        session.segment(box_yxyx=box)

    fitted = time_it(box_prompt, 20)
    session.refiners = DECODER_RULES
    decoded = time_it(box_prompt, 20)
    session.refiners = "auto"

    def prepare() -> None:  # the plane's embedding is cached: the head's pass and its views
        session._planes.clear()
        session.prepare(planes[0])

    objects = time_it(prepare, args.repeats)
    session.refiners = [*DECODER_RULES, SnapToObjects(views=1)]
    objects_one_view = time_it(prepare, args.repeats)
    session.refiners = "auto"
    session.set_image(planes[0])
    zoom = _prepared(session).zoom
    warmup = int(args.device != "cpu")  # CUDA start-up and kernel choice are not timed

    def everything_on(plane: np.ndarray, **params) -> float:
        session.set_image(plane)

        def run() -> None:
            session._everything = None  # decode again: time the model, not the cache
            session.segment_everything(**params)

        return time_it(run, 1, warmup=warmup)

    sample = nuclei_scene_2d().image
    scene_512 = generate_scene(rng, (512, 512), kind="nuclei", radius=8).image
    grid = {  # the point grid at the thresholds calibrated for this model
        "mode": "grid",
        "pred_iou_thresh": 0.45,
        "stability_score_thresh": 0.0,
        "box_nms_thresh": 0.02,
    }
    sam_grid = {**grid, "clicked_component_only": False}
    print(
        f"built-in model, {args.device}, {args.threads} threads, "
        f"weights {path.stat().st_size / 1e6:.1f} MB"
    )
    print(f"embedding 1024x1024 uint16 (convert + resize + encode): {embedding * 1000:.0f} ms")
    print(
        f"one click (decode + guide + upscale + rules, 1024x1024): {click * 1000:.1f} ms; "
        f"not snapped {click_decoded * 1000:.1f} ms"
    )
    print(
        f"one box, 3 candidates (decode + upscale + rules):      {fitted * 1000:.1f} ms "
        f"fitted to the head's object, {decoded * 1000:.1f} ms not snapped"
    )
    print(
        f"prepare: head objects and views (once per plane, 1024x1024): {objects * 1000:.0f} ms "
        f"(zoom {zoom}, two views); one view {objects_one_view * 1000:.0f} ms"
    )
    for name, plane in (("256x256 sample", sample), ("512x512 scene", scene_512)):
        ours = everything_on(plane)
        gridded = everything_on(plane, **grid)
        sams = everything_on(plane, **sam_grid)
        print(
            f"everything mode {name}: model defaults (head objects) {ours:.2f} s; "
            f"32^2 grid, clicked parts {gridded:.2f} s; whole masks {sams:.2f} s"
        )
    small = generate_scene(rng, (1024, 1024), kind="nuclei", radius=5, coverage=0.3).image
    session.set_image(small)
    zoomed, whole = everything_on(small), everything_on(small, head_zoom=1)
    one_view = everything_on(small, head_views=1)
    print(
        f"everything mode 1024x1024, small nuclei (zoom {_prepared(session).zoom}): automatic zoom "
        f"{zoomed:.2f} s (one view: {one_view:.2f} s); whole plane at once (head_zoom=1) "
        f"{whole:.2f} s"
    )


def _box_around(objects: np.ndarray, yx: tuple[int, int]) -> np.ndarray:
    """(y0, x0, y1, x1) of the head's object at ``yx`` (of the plane if none)."""
    label = objects[yx]
    if label == 0:
        return np.array([0.0, 0.0, objects.shape[0] - 1.0, objects.shape[1] - 1.0])
    rows, cols = np.nonzero(objects == label)
    return np.array([rows.min(), cols.min(), rows.max(), cols.max()], dtype=np.float64)


def _prepared(session: SegAny):
    """What the snapping refiner prepared for the current plane (objects, logits, zoom)."""
    return session._current.prepared[SnapToObjects.name]


if __name__ == "__main__":
    main()

"""Where the ``tiny`` case's everything-mode figure comes from (issue 19).

``training.evaluate_builtin --case tiny`` crops 61 x 57 pixels around the object nearest
each held-out scene's centre. The scenes' objects reach a radius of 40 px, so some
crops lie inside one object: no background and none of its outline in view. This
measures, per crop::

    PYTHONPATH=src .venv/bin/python -m training.tiny_crops --images 24

- ``everything_f1``: everything mode run on the crop (as ``evaluate_builtin``);
- ``everything_f1_in_context``: everything mode run on the whole scene, its labels
  cropped to the same window afterwards (the same model, with what lies around);
- the share of the crop its largest true object covers; crops where it is at least
  :data:`INSIDE_SHARE` are "inside one object";
- ``everything_f1_if_others_perfect``: the mean F1 were every other crop answered
  perfectly and these as now -- the most any change to the other crops can give.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from .evaluate_builtin import held_out_scene, matching_f1
from .input_cases import tiny_window
from .sessions import evaluation_session

INSIDE_SHARE = 0.95  # a crop of which one object covers this much lies inside it


def crop_rows(session, count: int) -> list[dict]:
    """One row per held-out scene: its crop's F1 alone and in context, and the share of
    the crop its largest object covers."""
    rows = []
    for index in range(count):
        scene = held_out_scene(index)
        window = tiny_window(scene.labels)  # the crop of the ``tiny`` case
        crop_image, crop_labels = scene.image[window], scene.labels[window]
        session.set_image(crop_image)
        alone = matching_f1(crop_labels, session.segment_everything().labels)[0]
        session.set_image(scene.image)
        around = session.segment_everything().labels[window]
        areas = np.bincount(crop_labels.ravel())[1:]
        rows.append(
            {
                "scene": index,
                "kind": scene.kind,
                "radius": round(float(scene.radius), 1),
                "largest_share": round(float(areas.max() / crop_labels.size), 2)
                if areas.size
                else 0.0,
                "everything_f1": round(alone, 3),
                "everything_f1_in_context": round(matching_f1(crop_labels, around)[0], 3),
            }
        )
    return rows


def summary(rows: list[dict]) -> dict:
    """Means over all crops and over the two groups, and the bound of the module
    docstring."""
    inside = [row["largest_share"] >= INSIDE_SHARE for row in rows]

    def group(chosen: list[dict]) -> dict:
        return {
            "crops": len(chosen),
            "everything_f1": round(float(np.mean([r["everything_f1"] for r in chosen])), 3),
            "everything_f1_in_context": round(
                float(np.mean([r["everything_f1_in_context"] for r in chosen])), 3
            ),
        }

    inside_rows = [row for row, flag in zip(rows, inside) if flag]
    other_rows = [row for row, flag in zip(rows, inside) if not flag]
    bound = (sum(r["everything_f1"] for r in inside_rows) + len(other_rows)) / len(rows)
    report = {"all": group(rows)}
    if inside_rows:
        report[f"inside one object (largest >= {INSIDE_SHARE:.0%} of the crop)"] = group(
            inside_rows
        )
    if other_rows:
        report["others"] = group(other_rows)
    report["everything_f1_if_others_perfect"] = round(bound, 3)
    return report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--weights", default=None, help="tuned built-in weights (a file)")
    parser.add_argument("--per-crop", action="store_true", help="also print every crop's row")
    args = parser.parse_args(argv)
    rows = crop_rows(evaluation_session(args.model, args.weights), args.images)
    report = summary(rows)
    if args.per_crop:
        report["crops"] = rows
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

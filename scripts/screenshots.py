"""Take the screenshots of docs/usage.md from a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py [NAME ...]

The window fills that 1600 x 1000 screen (a common laptop size), so the pictures show
what such a screen shows: the dock scrolls rather than growing past the screen.

Everything is the real code with the real built-in model (``SegAny()``, shipped in
the package, trained on synthetic images -- see docs/models.md) on the generated sample
images; prompts are placed on objects of the samples' known true labels.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["SEGANY_NOTHREADS"] = "1"  # deterministic pictures

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message=".*PyQt5.*")  # keep toasts out of the pictures
warnings.filterwarnings("ignore", message=".*System theme.*")

import napari  # noqa: E402
import napari._qt.qt_main_window as _main_window  # noqa: E402

# napari's PyQt5 deprecation notice is a toast, not a Python warning: switch it off
_main_window.SHOW_QT_WARNING = False
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from napari_segany import SegAny  # noqa: E402
from napari_segany._qt.widget import BOXES, LABELS, PROMPTS, SegAnyWidget  # noqa: E402
from napari_segany._sample_data import (  # noqa: E402
    make_nuclei_3d,
    nuclei_scene_2d,
    nuclei_scenes_3d,
)
from napari_segany.core.synthetic import interior_point_yx  # noqa: E402

IMAGES = ROOT / "docs" / "images"
SCREEN_WH = (1600, 1000)
SESSION = SegAny(device="cpu")  # the built-in model


def _interior_yx(labels: np.ndarray, label: int) -> list[int]:
    """The pixel of object ``label`` farthest from its border."""
    return list(interior_point_yx(labels == label, edge_is_background=False))


def _central_objects(labels: np.ndarray, count: int) -> list[int]:
    """``count`` medium-sized labels nearest the image centre."""
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    medium = ids[(areas > np.percentile(areas, 30)) & (areas < np.percentile(areas, 90))]
    centres = ndimage.center_of_mass(labels > 0, labels, medium)
    middle = np.array(labels.shape) / 2
    order = np.argsort([np.hypot(*(np.array(c) - middle)) for c in centres])
    return [int(medium[i]) for i in order[:count]]


def _box_yxyx(labels: np.ndarray, label: int, margin: int = 2) -> list[list[int]]:
    ys, xs = np.nonzero(labels == label)
    return [[ys.min() - margin, xs.min() - margin], [ys.max() + margin, xs.max() + margin]]


def _settle(viewer: napari.Viewer, widget: SegAnyWidget) -> None:
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    napari.qt.get_qapp().processEvents()


def _shot(viewer: napari.Viewer, name: str) -> None:
    """Save a screenshot as a small palette PNG (docs images stay well under 150 KB)."""
    from PIL import Image

    path = IMAGES / name
    pixels = viewer.screenshot(canvas_only=False, flash=False)
    picture = Image.fromarray(np.asarray(pixels)[..., :3])
    picture = picture.resize((picture.width * 3 // 4, picture.height * 3 // 4), Image.LANCZOS)
    # octree keeps the few saturated overlay colours (preview, rings) that median cut
    # merged into the greys, and its PNGs are smaller
    palette = picture.quantize(
        colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    palette.save(path, optimize=True)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")


def _viewer(
    image: np.ndarray, name: str, session: object | None = None
) -> tuple[napari.Viewer, SegAnyWidget]:
    """A viewer window filling the screen with the image and the docked widget; the
    view is the one the widget leaves (the image fitted to the canvas)."""
    viewer = napari.Viewer(title="napari-segany", show=True)
    viewer.window._qt_window.resize(*SCREEN_WH)
    viewer.add_image(image, name=name, colormap="gray")
    widget = SegAnyWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment Anything", area="right")
    widget.use_session(session or SESSION)
    for _ in range(3):  # the dock is laid out and the view fitted (the widget's first show)
        napari.qt.get_qapp().processEvents()
    return viewer, widget


def points_and_boxes() -> None:
    """Steps 2-4 on a 2D image: points, candidates, boxes, commit."""
    scene = nuclei_scene_2d()
    first, second, third = _central_objects(scene.labels, 3)
    viewer, widget = _viewer(scene.image, "nuclei")
    prompts = viewer.layers[PROMPTS]
    prompts.add(_interior_yx(scene.labels, first))  # on a nucleus
    widget.toggle_polarity()  # Shift-N: the next point is negative
    prompts.add(_interior_yx(scene.labels, second))  # on another: background for this one
    widget.toggle_polarity()
    _settle(viewer, widget)
    _shot(viewer, "01-points-preview.png")
    widget.next_candidate()
    _settle(viewer, widget)
    _shot(viewer, "02-next-candidate.png")
    widget.commit()
    viewer.layers[BOXES].add_rectangles(
        [_box_yxyx(scene.labels, second), _box_yxyx(scene.labels, third)]
    )
    _settle(viewer, widget)
    _shot(viewer, "03-boxes-preview.png")
    widget.commit()
    viewer.layers.selection.active = viewer.layers[LABELS]
    _settle(viewer, widget)
    _shot(viewer, "04-committed.png")
    viewer.close()


def stack() -> None:
    """Step 5: a ZYX stack, prompts on the shown slice, all slices embedded."""
    viewer, widget = _viewer(make_nuclei_3d(), "nuclei stack")
    viewer.dims.set_point(0, 5)
    labels = nuclei_scenes_3d()[5].labels
    viewer.layers[PROMPTS].add([5, *_interior_yx(labels, _central_objects(labels, 1)[0])])
    widget.compute_all_slices()
    _settle(viewer, widget)
    _shot(viewer, "05-stack.png")
    viewer.close()


def everything() -> None:
    """Step 6: everything mode on a slice, a threshold changed, then the whole stack."""
    viewer, widget = _viewer(make_nuclei_3d(), "nuclei stack")
    panel = widget.everything
    panel.box.setChecked(True)  # open the group: the dock scrolls, the window stays
    for _ in range(3):
        napari.qt.get_qapp().processEvents()
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # scrolled down to the everything-mode group
    # loading the built-in model set the panel to its own defaults (docs/models.md)
    viewer.dims.set_point(0, 5)
    widget.segment_everything()  # Shift-E
    _settle(viewer, widget)
    _shot(viewer, "06-everything-slice.png")
    # re-applied without the model; for the head's objects: mean foreground probability
    panel.iou_spin.setValue(0.8)
    panel.timer.stop()
    panel.reselect()
    widget.segment_everything_stack()
    _settle(viewer, widget)
    # another slice of the stack (objects keep their ids): the one with most objects
    found = np.asarray(viewer.layers["SegAny everything"].data)
    counts = [len(np.unique(plane)) - 1 if index != 5 else -1 for index, plane in enumerate(found)]
    viewer.dims.set_point(0, int(np.argmax(counts)))
    _settle(viewer, widget)
    _shot(viewer, "07-everything-stack.png")
    viewer.close()


def through_the_stack() -> None:
    """Step 7: two nuclei clicked and committed on one slice, propagated through Z."""
    from napari_segany.core.synthetic.volume import generate_volume

    scene = generate_volume(np.random.default_rng(4), (24, 192, 192), 11.0, 2.0, "uint16")
    viewer, widget = _viewer(scene.image, "nuclei volume")
    middle = 12
    ids = _central_objects(scene.labels[middle], 2)
    viewer.dims.set_point(0, middle)
    for label in ids:
        viewer.layers[PROMPTS].add([middle, *_interior_yx(scene.labels[middle], label)])
        _settle(viewer, widget)
        widget.commit()
    panel = widget.volume
    panel.box.setChecked(True)
    for _ in range(3):
        napari.qt.get_qapp().processEvents()
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # scrolled down to the group
    panel.propagate()
    viewer.layers.selection.active = viewer.layers[LABELS]
    viewer.dims.set_point(0, middle + 2)  # two slices away from the clicks
    _settle(viewer, widget)
    _shot(viewer, "08-through-the-stack.png")
    viewer.close()


def curation() -> None:
    """Step 8: another tool's labels curated -- a correction previewed, then a missed
    nucleus added, a merged pair split and the result."""
    scene = nuclei_scene_2d()
    truth = scene.labels.astype(np.int32)
    eroded, missed, merged = _central_objects(truth, 3)
    start = truth.copy()
    start[(truth == eroded) & ~ndimage.binary_erosion(truth == eroded, iterations=3)] = 0
    start[truth == missed] = 0
    ring = ndimage.binary_dilation(truth == merged, iterations=2) & (truth != merged)
    neighbours = np.unique(truth[ring & (truth > 0)])
    partner = int(neighbours[0]) if neighbours.size else None
    if partner is not None:
        start[truth == partner] = merged  # two nuclei under one id
    viewer, widget = _viewer(scene.image, "nuclei")
    curated = viewer.add_labels(start, name="cellpose labels", opacity=0.9)
    curated.contour = 2  # outlines: the filled preview stands out
    widget.controls.target_combo.setCurrentText("cellpose labels")
    objects = np.isin(truth, [eroded, missed, merged])
    ys, xs = np.nonzero(objects)
    viewer.camera.center = ((ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2)
    viewer.camera.zoom = 0.8 * viewer.camera.zoom * truth.shape[0] / max(
        np.ptp(ys) + 40, np.ptp(xs) + 40)  # fmt: skip
    prompts = viewer.layers[PROMPTS]
    viewer.layers.selection.active = prompts
    prompts.add(_interior_yx(start, eroded))  # inside an existing object: a correction
    _settle(viewer, widget)
    _shot(viewer, "09-curation-correction.png")
    widget.commit()
    prompts.add(_interior_yx(truth, missed))  # on background: a new object
    _settle(viewer, widget)
    widget.commit()
    if partner is not None:
        widget.controls.negative_box.setChecked(True)
        prompts.add(_interior_yx(truth, partner))  # Shift-click on the part to cut off
        widget.controls.negative_box.setChecked(False)
        widget.curation.split()
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(bar.maximum() // 3)  # the curation buttons in view
    _settle(viewer, widget)
    _shot(viewer, "10-curation-done.png")
    viewer.close()


if __name__ == "__main__":
    IMAGES.mkdir(parents=True, exist_ok=True)
    SHOTS = (points_and_boxes, stack, everything, through_the_stack, curation)
    for shot in SHOTS:  # all, or those named: screenshots.py through_the_stack
        if len(sys.argv) == 1 or shot.__name__ in sys.argv[1:]:
            shot()

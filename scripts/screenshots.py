"""Take the screenshots of docs/usage.md from a real napari viewer.

Run under a virtual display::

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python scripts/screenshots.py

The session is the test double ``tests.fakes.DiscSession`` (no weights needed): its
masks are discs around the first positive point and filled boxes, so the pictures
show where the widget puts masks, not SAM's segmentation quality. Everything else --
viewer, widget, layers, preview, commit, stack embedding -- is the real code.
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
import numpy as np  # noqa: E402
from tests.fakes import DiscSession  # noqa: E402

from napari_segany._qt.widget import BOXES, LABELS, PROMPTS, SegAnyWidget  # noqa: E402
from napari_segany._sample_data import make_nuclei_2d, make_nuclei_3d  # noqa: E402

IMAGES = ROOT / "docs" / "images"


def _settle(viewer: napari.Viewer, widget: SegAnyWidget) -> None:
    widget.prompts.timer.stop()
    widget.prompts.refresh()
    napari.qt.get_qapp().processEvents()


def _shot(viewer: napari.Viewer, name: str) -> None:
    path = IMAGES / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path.relative_to(ROOT)}")


def _viewer(
    image: np.ndarray, name: str, centre: tuple[float, float], zoom: float
) -> tuple[napari.Viewer, SegAnyWidget]:
    viewer = napari.Viewer(title="napari-segany", show=True)
    viewer.window._qt_window.resize(1280, 860)
    viewer.add_image(image, name=name, colormap="gray")
    widget = SegAnyWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment Anything", area="right")
    widget.use_session(DiscSession(radii=(9, 14, 20)))
    viewer.camera.center = centre
    viewer.camera.zoom = zoom
    return viewer, widget


def points_and_boxes() -> None:
    """Steps 2-4 on a 2D image: points, candidates, boxes, commit."""
    viewer, widget = _viewer(make_nuclei_2d(), "nuclei", (128, 128), 1.9)
    prompts = viewer.layers[PROMPTS]
    prompts.add([151, 170])  # on a nucleus
    widget.toggle_polarity()  # Shift-N: the next point is negative
    prompts.add([163, 110])  # on its neighbour: background for this object
    widget.toggle_polarity()
    _settle(viewer, widget)
    _shot(viewer, "01-points-preview.png")
    widget.next_candidate()
    _settle(viewer, widget)
    _shot(viewer, "02-next-candidate.png")
    widget.commit()
    viewer.layers[BOXES].add_rectangles([[[78, 20], [112, 68]], [[90, 170], [124, 208]]])
    _settle(viewer, widget)
    _shot(viewer, "03-boxes-preview.png")
    widget.commit()
    viewer.layers.selection.active = viewer.layers[LABELS]
    _settle(viewer, widget)
    _shot(viewer, "04-committed.png")
    viewer.close()


def stack() -> None:
    """Step 5: a ZYX stack, prompts on the shown slice, all slices embedded."""
    viewer, widget = _viewer(make_nuclei_3d(), "nuclei stack", (96, 96), 2.4)
    viewer.dims.set_point(0, 5)
    viewer.layers[PROMPTS].add([5, 128, 114])
    widget.compute_all_slices()
    _settle(viewer, widget)
    _shot(viewer, "05-stack.png")
    viewer.close()


if __name__ == "__main__":
    IMAGES.mkdir(parents=True, exist_ok=True)
    points_and_boxes()
    stack()

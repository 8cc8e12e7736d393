"""Open napari with the Segment Anything widget docked and a generated sample image."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m napari_segany [FILES...]``."""
    import napari

    from napari_segany._sample_data import make_nuclei_2d

    paths = sys.argv[1:] if argv is None else argv
    viewer = napari.Viewer(title="napari-segany")
    if paths:
        viewer.open(paths)
    else:
        viewer.add_image(make_nuclei_2d(), name="nuclei (generated)")
    viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    napari.run()
    return 0

"""Open napari with the Segment Anything widget docked and a generated sample image.

The widget's default model is the built-in one (shipped in the package), so it is
loaded right away and the sample is ready to click on, with no network.
"""

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
    _, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    if _default_model_is_packaged():
        widget.load_model()  # in the background: napari opens at once
    napari.run()
    return 0


def _default_model_is_packaged() -> bool:
    from napari_segany.core import registry

    return registry.get_entry(registry.DEFAULT_MODEL).packaged

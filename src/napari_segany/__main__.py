"""``python -m napari_segany``: open napari with the widget and a sample image."""

from napari_segany._qt.launch import main

if __name__ == "__main__":
    raise SystemExit(main())

"""Qt-free, napari-free core of napari-segany (model, prompts, caches)."""

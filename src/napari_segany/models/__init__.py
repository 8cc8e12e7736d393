"""Model plug-ins shipped with napari-segany (``core.plugins``), one package each."""

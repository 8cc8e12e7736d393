"""Qt side of napari-segany: the dock widget and its workers (the only Qt ring)."""

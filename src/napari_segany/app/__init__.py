"""Qt-free state of the widget: what the Qt views render and drive.

- :mod:`.sessions`: what the app needs from a session (typed protocols; ``SegAny``
  implements them, test doubles implement them explicitly);
- :mod:`.prompting`: prompts read from the layers, the preview and its candidates, the
  rules of a commit;
- :mod:`.everything`: an everything-mode run (decode in a worker, select again without
  the model, where its labels are written);
- :mod:`.widening`: a Labels layer too narrow for the new ids (a uint8 0/255 mask) is
  widened only with the user's consent, else nothing is written;
- :mod:`.curating`: one curation (history with undo/redo, provenance) per Labels layer.

Nothing here imports Qt; napari layer *models* are reached through
:mod:`napari_segany._layers`.
"""

"""The built-in model as a plug-in (``core.plugins``): nothing outside imports it.

The registry entry ``"builtin"`` names :data:`PLUGIN` (``ModelEntry.plugin``). The
package holds the model's weights (``builtin.pt``) and its rules:

- :mod:`.objects`: the foreground head's objects on a plane (zoom, two views, seeded
  watershed);
- :mod:`.snapping` and :mod:`.click_guide`: prompts answered with those objects;
- :mod:`.refiner`: :class:`~.refiner.SnapToObjects`, the prompt refiner that prepares
  a plane's objects in the background and snaps every prompt to them;
- :mod:`.proposer`: everything mode's ``"ais"`` proposer (formerly ``"foreground"``).

See docs/models.md for how each rule was chosen.
"""

from napari_segany.core.channels import SINGLE_STAIN_RULE
from napari_segany.core.plugins import ModelPlugin
from napari_segany.core.refiners import ClickedParts, ClipToBox

from .proposer import ForegroundProposer
from .refiner import SnapToObjects

# Calibrated on generated scenes disjoint from training and from the held-out set
# (training/calibrate_everything.py; docs/models.md, "Everything mode"). The head's
# objects never overlap and their scores are foreground probabilities, so no threshold
# and no NMS is needed. With mode="grid" use the grid's calibrated values:
# pred_iou_thresh 0.45, stability_score_thresh 0 and box_nms_thresh 0.02 (F1 0.52 held
# out, against 0.86).
EVERYTHING_DEFAULTS = {
    "points_per_side": 32,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 1.0,
}

# Trained at zooms of 0.5x to 2x of the generator's object sizes (training/train_builtin.py
# ZOOM_RANGE): a plane is never enlarged more than 2x into the 512 px frame (a 61 x 57
# crop is padded, not enlarged 8x; docs/models.md). Its zoomed tiles may be enlarged
# their zoom times more (objects.tiled_head_logits).
MAX_UPSCALE = 2.0

# Trained on one stain at a time (grey) and on (0, cells, nuclei) composites: a plane of
# two channels is read as its first channel (core.channels; docs/scripting.md, "Inputs").
PLUGIN = ModelPlugin(
    refiners=(ClipToBox(), ClickedParts(), SnapToObjects()),
    proposers=(ForegroundProposer(),),
    default_mode=ForegroundProposer.name,
    everything_defaults=EVERYTHING_DEFAULTS,
    channel_rule=SINGLE_STAIN_RULE,
    max_upscale=MAX_UPSCALE,
)

"""Everything mode: every object of a plane or a stack, without prompts.

- phase 1, a *proposer* (``core.plugins.Proposer``) finds candidates on a plane:
  SAM's point grid (:mod:`.grid`) or a model's own (declared by its plug-in);
  :mod:`.candidates` holds them;
- phase 2, :mod:`.selection`, picks objects among them without the model;
- :mod:`.stack` runs both over the planes of a stack (one loop for the API, the
  command line and the widget); :mod:`.modes` sorts parameters per proposer.
"""

from .candidates import GridCandidates
from .grid import GridParams, GridProposer, decode_grid
from .modes import AUTO, EverythingModes, param_names, pick_proposer, split_params
from .selection import EmptyResultWarning, EverythingObject, EverythingResult, FilterParams
from .stack import PlaneSelection, StackResult, run_planes, segment_everything_stack, select_planes

__all__ = [
    "AUTO",
    "EmptyResultWarning",
    "EverythingModes",
    "EverythingObject",
    "EverythingResult",
    "FilterParams",
    "GridCandidates",
    "GridParams",
    "GridProposer",
    "PlaneSelection",
    "StackResult",
    "decode_grid",
    "param_names",
    "pick_proposer",
    "run_planes",
    "segment_everything_stack",
    "select_planes",
    "split_params",
]

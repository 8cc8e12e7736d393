"""SAM 2.1 checkpoints: recognise their size from keys and shapes, refuse SAM 2.0.

The official files wrap the weights as ``{"model": state_dict}`` (unwrapped by
:mod:`.checkpoint_file`); their image parts are loaded into :class:`~.model.sam2.Sam2`
and their memory parts (video) are kept with it as ``memory_state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import CheckpointError
from .model.hiera import HIERA_SPECS

__all__ = ["SAM2_ARCHITECTURES", "Sam2Architecture", "detect_sam2", "is_sam2_state"]

_TRUNK = "image_encoder.trunk."
# Keys SAM 2.1 added to SAM 2.0's model (its spatial no-object embedding and the
# projection of the object pointers' temporal encoding).
SAM21_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight")


@dataclass(frozen=True)
class Sam2Architecture:
    """A SAM 2.1 size, as a registry entry's ``architecture`` names it.

    Attributes
    ----------
    name : str
        ``"sam2.1_tiny"``, ``"sam2.1_small"``, ``"sam2.1_base_plus"`` or ``"sam2.1_large"``.
    size : str
        The Hiera size (``core.model.hiera.HIERA_SPECS``).
    """

    name: str
    size: str

    @property
    def description(self) -> str:
        spec = HIERA_SPECS[self.size]
        return f"SAM 2.1 with a Hiera-{self.size} trunk ({sum(spec.stages)} blocks)"


SAM2_ARCHITECTURES = {
    f"sam2.1_{size}": Sam2Architecture(f"sam2.1_{size}", size) for size in HIERA_SPECS
}


def is_sam2_state(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether the weights hold a SAM 2 (Hiera) image encoder."""
    return _TRUNK + "patch_embed.proj.weight" in state_dict


def detect_sam2(state_dict: Mapping[str, torch.Tensor], path: Path) -> Sam2Architecture:
    """The SAM 2.1 size of a checkpoint's weights.

    Raises
    ------
    CheckpointError
        A SAM 2.0 file, or a Hiera trunk of none of SAM 2.1's sizes.
    """
    missing = [key for key in SAM21_KEYS if key not in state_dict]
    if missing:
        raise CheckpointError(
            f"{path} is a SAM 2.0 checkpoint (it lacks {', '.join(missing)}, which SAM 2.1 "
            "added); napari-segany runs SAM 2.1. Use the SAM 2.1 file of the same size "
            "(models 'sam2.1_tiny', 'sam2.1_small', 'sam2.1_base_plus', 'sam2.1_large')."
        )
    width = int(state_dict[_TRUNK + "patch_embed.proj.weight"].shape[0])
    blocks = {int(key.split(".")[3]) for key in state_dict if key.startswith(_TRUNK + "blocks.")}
    for size, spec in HIERA_SPECS.items():
        if spec.embed_dim == width and sum(spec.stages) == len(blocks):
            return SAM2_ARCHITECTURES[f"sam2.1_{size}"]
    known = ", ".join(
        f"{size} {spec.embed_dim} / {sum(spec.stages)}" for size, spec in HIERA_SPECS.items()
    )
    raise CheckpointError(
        f"{path} holds a Hiera trunk of width {width} with {len(blocks)} blocks, none of "
        f"SAM 2.1's sizes (width / blocks: {known}); only the official sizes are supported."
    )

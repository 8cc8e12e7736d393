"""Recognise a checkpoint's architecture and load it into a model.

Checkpoints are read safely by :func:`.checkpoint_file.read_state_dict`
(``torch.load(weights_only=True)``: a file that needs arbitrary unpickling is refused,
never executed; wrappers and key prefixes are accepted). Every key and shape is
checked *before* the model is filled, so a mismatch raises :class:`CheckpointError`
naming the offending keys and never leaves a half-loaded model.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from . import checkpoints, registry
from .checkpoint_file import HEAD_PREFIX, read_state_dict, read_tensors
from .device import resolve_device
from .errors import CheckpointError, DownloadError
from .model.build import ARCHITECTURES, Architecture, build_sam
from .model.foreground_head import ForegroundHead
from .model.instance_decoder import build_instance_decoder
from .model.sam import Sam
from .model.sam2 import Sam2, build_sam2, split_image_state
from .sam2_loading import Sam2Architecture, detect_sam2, is_sam2_state

logger = logging.getLogger(__name__)

# Keys a checkpoint may lack without changing any output: the unused classification
# head of TinyViT and BatchNorm's step counters. They are zero-filled when absent.
_OPTIONAL_KEY = re.compile(r"^image_encoder\.(head|norm_head)\.|\.num_batches_tracked$")
_LISTED_KEYS = 5
_INIT_FILLS = "uniform_ normal_ trunc_normal_ kaiming_uniform_ kaiming_normal_ xavier_uniform_"
_NO_INIT = frozenset(getattr(torch.nn.init, name) for name in _INIT_FILLS.split())

StateDict = dict[str, torch.Tensor]


@dataclass
class LoadedModel:
    """A model ready for inference and where it came from.

    Attributes
    ----------
    model
        The :class:`Sam` (or :class:`Sam2`), in eval mode, on ``device``, float32 weights.
    architecture
        Its architecture (registered or custom; a SAM 2.1 size).
    name
        Registry name, or the checkpoint file's stem for a file given by path.
    checkpoint_path
        The file the weights were read from.
    device
        Where the model lives.
    """

    model: Sam | Sam2
    architecture: Architecture | Sam2Architecture
    name: str
    checkpoint_path: Path
    device: torch.device


def _block_indexes(state_dict: Mapping, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for key in state_dict if (m := pattern.match(key))}
    return sorted(found)


def _shape(state_dict: Mapping, key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(
            f"Unrecognised checkpoint: key {key!r} is missing, so its architecture cannot "
            "be determined. Pass a Segment Anything, MobileSAM or micro-sam checkpoint."
        )
    return tuple(state_dict[key].shape)


def _vit_options(sd: Mapping) -> dict:
    """Encoder kwargs of a SAM ViT from its weights (see ``ImageEncoderViT``)."""
    enc = "image_encoder."
    embed_dim, _, patch_size, _ = _shape(sd, enc + "patch_embed.proj.weight")
    grid = _shape(sd, enc + "pos_embed")[1]
    blocks = _block_indexes(sd, enc + "blocks.")
    rows = [_shape(sd, f"{enc}blocks.{i}.attn.rel_pos_h")[0] for i in blocks]
    head_dim = _shape(sd, enc + "blocks.0.attn.rel_pos_h")[1]
    window_rows = {r for r in rows if r != 2 * grid - 1}
    if blocks != list(range(len(blocks))) or len(window_rows) > 1 or embed_dim % head_dim:
        raise CheckpointError(
            "Unrecognised ViT checkpoint: blocks, window sizes or head sizes are "
            "inconsistent. Pass a Segment Anything or micro-sam checkpoint."
        )
    return {
        "patch_size": patch_size,
        "embed_dim": embed_dim,
        "depth": len(blocks),
        "num_heads": embed_dim // head_dim,
        "mlp_ratio": _shape(sd, enc + "blocks.0.mlp.lin1.weight")[0] / embed_dim,
        "window_size": (window_rows.pop() + 1) // 2 if window_rows else 0,
        "global_attn_indexes": tuple(i for i, r in zip(blocks, rows) if r == 2 * grid - 1),
    }


def _tiny_vit_options(sd: Mapping) -> dict:
    """Encoder kwargs of a TinyViT (MobileSAM) from its weights."""
    enc = "image_encoder.layers."
    stages = _block_indexes(sd, enc)
    if stages != [0, 1, 2, 3]:
        raise CheckpointError(
            f"Unrecognised TinyViT checkpoint: expected 4 stages, found {len(stages)}."
        )
    depths = tuple(len(_block_indexes(sd, f"{enc}{s}.blocks.")) for s in stages)
    dims = [_shape(sd, f"{enc}0.blocks.0.conv1.c.weight")[1]]
    heads, windows = [2], [7]  # stage 0 is convolutional: reference values, unused
    for s in stages[1:]:
        heads_s, offsets = _shape(sd, f"{enc}{s}.blocks.0.attn.attention_biases")
        dims.append(_shape(sd, f"{enc}{s}.blocks.0.attn.qkv.weight")[1])
        heads.append(heads_s)
        windows.append(round(offsets**0.5))
    return {
        "embed_dims": tuple(dims),
        "depths": depths,
        "num_heads": tuple(heads),
        "window_sizes": tuple(windows),
        "mlp_ratio": _shape(sd, f"{enc}1.blocks.0.mlp.fc1.weight")[0] / dims[1],
    }


def _conv_options(sd: Mapping) -> dict:
    """Encoder kwargs of the convolutional encoder (built-in model) from its weights."""
    enc = "image_encoder."
    stages = _block_indexes(sd, enc + "stages.")
    if stages != [0, 1]:
        raise CheckpointError(
            f"Unrecognised convolutional checkpoint: expected 2 stages, found {len(stages)}."
        )
    dilations = tuple(
        tuple(
            int(sd[f"{enc}stages.{s}.blocks.{b}.dilation"])
            for b in _block_indexes(sd, f"{enc}stages.{s}.blocks.")
        )
        for s in stages
    )
    widths = (
        _shape(sd, enc + "stem.0.weight")[0],
        _shape(sd, enc + "stem.2.weight")[0],
        _shape(sd, enc + "stages.1.down.weight")[0],
    )
    options = {"widths": widths, "stage_dilations": dilations}
    details = tuple(s for s in (2, 4) if f"{enc}detail{s}.weight" in sd)
    if details:  # absent from the first built-in models: their records stay equal
        options["detail_strides"] = details
    return options


def _decoder_fields(sd: Mapping) -> dict:
    """Prompt-encoder and mask-decoder sizes of :class:`Architecture` from weights."""
    dec = "mask_decoder."
    return {
        "prompt_embed_dim": _shape(sd, "prompt_encoder.no_mask_embed.weight")[1],
        "mask_in_chans": _shape(sd, "prompt_encoder.mask_downscaling.3.weight")[0],
        "decoder_depth": len(_block_indexes(sd, dec + "transformer.layers.")),
        "decoder_mlp_dim": _shape(sd, dec + "transformer.layers.0.mlp.lin1.weight")[0],
        "num_multimask_outputs": _shape(sd, dec + "mask_tokens.weight")[0] - 1,
        "iou_head_depth": len(_block_indexes(sd, dec + "iou_prediction_head.layers.")),
        "iou_head_hidden_dim": _shape(sd, dec + "iou_prediction_head.layers.0.weight")[0],
    }


def detect_architecture(state_dict: Mapping[str, torch.Tensor]) -> Architecture:
    """Recognise the architecture of SAM weights from their keys and shapes.

    Parameters
    ----------
    state_dict
        Weights as returned by :func:`read_state_dict`.

    Returns
    -------
    Architecture
        The registered record of ``ARCHITECTURES`` when one matches exactly, else a
        custom record named ``"custom_vit"`` or ``"custom_tiny_vit"``.

    Raises
    ------
    CheckpointError
        The weights are not those of a SAM-family model.
    """
    if any(key.startswith("image_encoder.layers.") for key in state_dict):
        encoder, options = "tiny_vit", _tiny_vit_options(state_dict)
    elif any(key.startswith("image_encoder.blocks.") for key in state_dict):
        encoder, options = "vit", _vit_options(state_dict)
    elif any(key.startswith("image_encoder.stages.") for key in state_dict):
        encoder, options = "conv", _conv_options(state_dict)
    else:
        raise CheckpointError(
            "Unrecognised checkpoint: its image encoder is neither a SAM ViT "
            "('image_encoder.blocks.*'), a TinyViT ('image_encoder.layers.*') nor the "
            "built-in CNN ('image_encoder.stages.*')."
        )
    detected = Architecture(
        f"custom_{encoder}",
        encoder,
        options,
        **_decoder_fields(state_dict),
        description="architecture read from a checkpoint",
    )
    for known in ARCHITECTURES.values():
        if replace(detected, name=known.name, description=known.description) == known:
            return known
    logger.info("Checkpoint has a custom architecture: %s", detected)
    return detected


def detect_image_size(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Model input side ``S``: from a ViT's position embedding or the CNN's
    ``input_size`` buffer; 1024 for TinyViT."""
    if "image_encoder.input_size" in state_dict:
        return int(state_dict["image_encoder.input_size"].reshape(-1)[0])
    pos_embed = state_dict.get("image_encoder.pos_embed")
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if pos_embed is None or patch is None:
        return 1024
    return int(pos_embed.shape[1] * patch.shape[-1])


class _SkipRandomInit(TorchFunctionMode):
    """Turn ``torch.nn.init`` fills into no-ops (thread-local): the weights are about to
    be overwritten by a checkpoint, and random init of ViT-H alone takes seconds."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _NO_INIT:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def _check_keys(expected: StateDict, given: StateDict, path: Path) -> StateDict:
    """``given`` completed with zero-filled optional keys; raise on any mismatch."""
    missing = [k for k in expected if k not in given and not _OPTIONAL_KEY.search(k)]
    unexpected = [k for k in given if k not in expected]
    misshaped = [
        f"{k} {tuple(given[k].shape)} (model: {tuple(expected[k].shape)})"
        for k in expected
        if k in given and given[k].shape != expected[k].shape
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:_LISTED_KEYS])}"
        + (", ..." if len(keys) > _LISTED_KEYS else "")
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshaped),
        )
        if keys
    ]
    if problems:
        raise CheckpointError(
            f"{path} does not fit the model: " + "; ".join(problems) + ". Check that the "
            "model name matches the checkpoint, or pass only the checkpoint path."
        )
    completed = dict(given)
    for key in expected.keys() - given.keys():
        completed[key] = torch.zeros_like(expected[key], device="cpu")
    return completed


def build_loaded(
    state_dict: StateDict, architecture: Architecture, image_size: int, path: Path
) -> Sam:
    """A :class:`Sam` of ``architecture`` holding ``state_dict``, on the CPU, eval mode.

    Weights under :data:`HEAD_PREFIX` give the model its
    :class:`~.model.foreground_head.ForegroundHead`.

    Raises
    ------
    CheckpointError
        Keys or shapes differ from the model's (checked before any weight is copied).
    """
    with _SkipRandomInit():
        model = build_sam(architecture, image_size=image_size)
        if any(key.startswith(HEAD_PREFIX) for key in state_dict):
            channels, stride = architecture.prompt_embed_dim, architecture.embedding_stride
            hidden = len(_block_indexes(state_dict, HEAD_PREFIX + "hidden."))
            model.foreground_head = ForegroundHead(channels, stride, hidden)
    complete = _check_keys(model.state_dict(), state_dict, path)
    # assign: the model takes the checkpoint's tensors instead of copying them, so
    # loading needs no second copy of the weights in memory (half precision -> float32)
    model.load_state_dict(complete, strict=True, assign=True)
    return model.float().eval()


def build_loaded_sam2(state_dict: StateDict, architecture: Sam2Architecture, path: Path) -> Sam2:
    """A :class:`Sam2` holding the image parts of ``state_dict`` (checked as
    :func:`build_loaded` does); the memory parts are kept as its ``memory_state``."""
    with _SkipRandomInit():
        model = build_sam2(architecture.size)
    image_state, memory_state = split_image_state(state_dict)
    complete = _check_keys(model.state_dict(), image_state, path)
    model.load_state_dict(complete, strict=True, assign=True)
    model.memory_state = {key: value.float() for key, value in memory_state.items()}
    return model.float().eval()


def _is_path(model: str | os.PathLike) -> bool:
    if isinstance(model, os.PathLike):
        return True
    return model not in registry.REGISTRY and (
        os.sep in model or "/" in model or model.endswith((".pt", ".pth")) or Path(model).exists()
    )


def _resolve_source(model: str | os.PathLike, checkpoint) -> tuple[str, Path, str | None]:
    """(name, checkpoint path, expected architecture name or None)."""
    if _is_path(model):
        if checkpoint is not None:
            raise CheckpointError(
                f"Both model={str(model)!r} (a path) and checkpoint= were given; "
                "pass the file once, as model= or as checkpoint=."
            )
        path = Path(model).expanduser()
        return path.stem, path, None
    entry = registry.get_entry(str(model))
    if checkpoint is not None:
        return entry.name, Path(checkpoint).expanduser(), entry.architecture
    return entry.name, checkpoints.fetch(entry), entry.architecture


def _attach_instance_decoder(sam: Sam, name: str) -> None:
    """Give a registered micro-sam model its instance decoder (``registry.DECODERS``:
    downloaded once and verified, like the model). A decoder that cannot be had is a
    warning, not an error: prompting does not need it; automatic segmentation then
    has only SAM's grid."""
    entry = registry.DECODERS.get(name)
    if entry is None:
        return
    try:
        path = checkpoints.fetch(entry)
        sam.instance_decoder = build_instance_decoder(read_tensors(path), str(path))
    except (DownloadError, CheckpointError) as error:
        warnings.warn(
            f"The instance decoder of {name!r} is not available, so automatic "
            f"segmentation can only use SAM's grid: {error}",
            stacklevel=3,
        )


def load_model(
    model: str | os.PathLike = registry.DEFAULT_MODEL,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
) -> LoadedModel:
    """Load a SAM-family model ready for inference.

    Parameters
    ----------
    model
        A registry name (``"builtin"``, shipped in the package; ``"vit_b"``,
        ``"vit_t_lm"``, ...: their files are taken from the cache or downloaded once),
        or the path of a checkpoint file (architecture detected from the weights,
        works offline).
    checkpoint
        A local checkpoint file to use instead of the registry's download; it must hold
        the architecture of ``model`` (works offline).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a torch.device.

    Raises
    ------
    ModelNotFoundError, DownloadError, CheckpointError, DeviceError
        Unknown name, failed download, unusable file, absent device.
    """
    target = resolve_device(device)
    name, path, expected = _resolve_source(model, checkpoint)
    state_dict = read_state_dict(path)
    sam2 = is_sam2_state(state_dict)
    architecture = detect_sam2(state_dict, path) if sam2 else detect_architecture(state_dict)
    if expected is not None and architecture.name != expected:
        raise CheckpointError(
            f"{path} holds a {architecture.name!r} model, but model={name!r} needs "
            f"{expected!r}. Pass model= the matching name, or only the checkpoint path."
        )
    if sam2:
        sam = build_loaded_sam2(state_dict, architecture, path)
    else:
        sam = build_loaded(state_dict, architecture, detect_image_size(state_dict), path)
        if not _is_path(model):
            _attach_instance_decoder(sam, name)
    logger.info("Loaded %s (%s) from %s on %s", name, architecture.name, path, target)
    return LoadedModel(sam.to(target), architecture, name, path, target)

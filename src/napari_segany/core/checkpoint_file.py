"""Read the SAM weights of a checkpoint file, safely.

Files are read with ``torch.load(weights_only=True)``: a file that needs arbitrary
unpickling (custom classes, ``argparse.Namespace``, numpy objects, a plain ``pickle``
file) is refused, never executed, and the error says how to convert a *trusted* file
into plain weights. Fine-tuned checkpoints may wrap the state dict (``model_state``,
``model``, ``state_dict``) or prefix its keys (``sam.``, ``module.``); both are
accepted. Keys outside the model's parts (optimizer state, ...) are dropped.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from . import registry
from .errors import CheckpointError

WRAPPER_KEYS = ("model_state", "model", "state_dict")
KEY_PREFIXES = ("module.", "sam.")
HEAD_PREFIX = "foreground_head."  # the built-in model's extra head (not SAM's)
# SAM 2.1's files: its prompt encoder and decoder, the image-mode memory embedding, and
# the memory parts (video), kept for the SAM 2.1 model.
SAM2_PARTS = (
    "sam_prompt_encoder.",
    "sam_mask_decoder.",
    "no_mem_embed",
    "no_mem_pos_enc",
    "maskmem_tpos_enc",
    "no_obj_ptr",
    "no_obj_embed_spatial",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
    "memory_attention.",
    "memory_encoder.",
    "mask_downsample.",
)
MODEL_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.", HEAD_PREFIX, *SAM2_PARTS)
LISTED_KEYS = 5
_PICKLE_PROTOCOLS = range(2, 6)  # a pickle stream starts with PROTO (0x80) and these
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")

StateDict = dict[str, torch.Tensor]


def converted_path(path: Path) -> Path:
    """Where the conversion advice of a refused ``path`` saves the plain weights."""
    return path.with_name(f"{path.stem}_weights.pth")


def conversion_snippet(path: Path, plain_pickle: bool = False) -> str:
    """Python that turns a trusted pickled checkpoint into a weights-only file
    (``plain_pickle``: a file written by ``pickle.dump``, which ``torch.load`` cannot
    read at all)."""
    wrappers = ", ".join(repr(key) for key in WRAPPER_KEYS)
    if plain_pickle:
        load = f'    import pickle\n    ckpt = pickle.load(open(r"{path}", "rb"))\n'
    else:
        load = f'    ckpt = torch.load(r"{path}", map_location="cpu", weights_only=False)\n'
    return (
        "    import torch\n"
        + load
        + f"    sd = next((ckpt[k] for k in ({wrappers}) if k in ckpt), ckpt) "
        "if isinstance(ckpt, dict) else ckpt\n"
        '    sd = sd.state_dict() if hasattr(sd, "state_dict") else sd\n'
        "    torch.save({k: v for k, v in sd.items() if torch.is_tensor(v)}, "
        f'r"{converted_path(path)}")\n'
    )


def _refusal(path: Path, error: pickle.UnpicklingError) -> CheckpointError:
    """The error for a file the weights-only reader refused (or :func:`_corrupt`)."""
    text = str(error)
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    plain_pickle = False
    if unsafe is not None:
        found = f"pickled Python objects ({unsafe.group(1)})"
    elif "allowed global" in text:
        found = "pickled Python objects"
    elif "Unsupported operand" in text and _is_pickle(path):
        found, plain_pickle = "a plain Python pickle (not torch.save's format)", True
    else:
        return _corrupt(path, error)
    return CheckpointError(
        f"Refusing to load {path}: it holds {found}, and loading it needs arbitrary code "
        "execution, so it was refused for safety. If you trust its source, convert it "
        "once to plain weights in Python:\n"
        + conversion_snippet(path, plain_pickle)
        + f"and pass {converted_path(path)} instead."
    )


def _is_pickle(path: Path) -> bool:
    """Whether the file starts like a pickle stream of protocol 2 to 5."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS


def _corrupt(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(
        f"Cannot read the checkpoint {path}: the file is truncated or not a PyTorch "
        f"checkpoint ({type(error).__name__}: {str(error)[:200].strip()}). "
        "Download it again, or check that you picked the right file."
    )


def _not_a_file(path: Path) -> CheckpointError:
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)
        hint = f" (it holds {', '.join(inside[:3])})" if inside else ""
        return CheckpointError(
            f"Checkpoint {path} is a directory, not a file; pass the checkpoint file "
            f"inside it{hint}."
        )
    return CheckpointError(
        f"Checkpoint file {path} does not exist. Check the path, or give a registered "
        f"model name ({', '.join(registry.REGISTRY)}) to download one."
    )


def _load_file(path: Path) -> object:
    if not path.is_file():
        raise _not_a_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise _refusal(path, error) from error
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise _corrupt(path, error) from error


def _unwrap(content: object, path: Path) -> Mapping:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(content, Mapping):
            break
        inner = next(
            (content[k] for k in WRAPPER_KEYS if isinstance(content.get(k), Mapping)), None
        )
        if inner is None:
            break
        content = inner
    if not isinstance(content, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(content).__name__}, not a state dict of tensors. "
            "Save the weights with torch.save(model.state_dict(), path)."
        )
    return content


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Read the SAM weights of a checkpoint file, on the CPU.

    Returns
    -------
    dict of str to Tensor
        Keys ``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*`` and, for the
        built-in model, ``foreground_head.*``; SAM 2.1's parts (:data:`SAM2_PARTS`)
        for its files (wrappers unwrapped, ``sam.``/``module.``
        prefixes stripped, other keys dropped), tensors in the file's dtypes.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupt file; pickled Python objects (refused, never run);
        no SAM weights inside.
    """
    path = Path(path).expanduser()
    content = _unwrap(_load_file(path), path)
    weights: StateDict = {}
    for raw_key, value in content.items():
        key = _strip_prefixes(str(raw_key))
        if key.startswith(MODEL_PARTS) and isinstance(value, torch.Tensor):
            weights[key] = value
    if not any(key.startswith("image_encoder.") for key in weights):
        found = ", ".join(str(key) for key in list(content)[:LISTED_KEYS]) or "nothing"
        raise CheckpointError(
            f"{path} holds no SAM weights (no 'image_encoder.*' tensors; found {found}). "
            "Pass a Segment Anything, MobileSAM or micro-sam checkpoint."
        )
    return weights


def read_tensors(path: str | os.PathLike) -> StateDict:
    """Every tensor of a weights file (wrappers unwrapped, keys as they are), on the
    CPU: for files that are not SAM models (e.g. micro-sam's instance decoders).

    Raises
    ------
    CheckpointError
        As :func:`read_state_dict`, and when the file holds no tensor.
    """
    path = Path(path).expanduser()
    content = _unwrap(_load_file(path), path)
    tensors = {str(k): v for k, v in content.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors; it is not a weights file.")
    return tensors


def key_mismatches(expected: Mapping, given: Mapping) -> str:
    """The keys where ``given`` differs from ``expected`` (missing, unexpected or of
    another shape), sorted, the first five named: ``""`` when they agree."""
    wrong = sorted(
        key
        for key in set(expected) | set(given)
        if key not in given or key not in expected or given[key].shape != expected[key].shape
    )
    if not wrong:
        return ""
    return ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")

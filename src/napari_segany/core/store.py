"""A persistent embedding store: plane embeddings kept on disk in a zarr group.

Reopening a dataset with ``SegAny(..., embedding_store=path)`` finds every plane
embedded before and computes none again. Layout::

    path/                       zarr group, attrs {"format": FORMAT, "version": 1}
      <model>/                  one group per model: its weights' fingerprint
        <plane>/                one group per plane: the hash of its cache key
          features              (1, C, h, w) float32 (SAM 2.1: also skip0, skip1)
          attrs: key, original_hw, input_hw, model_key, checksum

A plane's key is the session's cache key (``core.embeddings.plane_key``: the plane's
content hash, shape, dtype, contrast limits, channels, channel axis, model and
precision), so a plane read with other contrast limits is another entry. The model
group is named by a fingerprint of the model's weights (:func:`model_fingerprint`),
so two checkpoints under one name never share embeddings, and one store serves every
model. Entries are written to a temporary name and renamed when complete; an entry
that fails to read, or whose bytes do not match its checksum, is reported (a
``StoreWarning``), computed again and rewritten -- never used.

bf16 sessions store their (float32) features as float32: the store is exact.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np
import torch
import xxhash

from .embeddings import Embedding
from .errors import InputError

logger = logging.getLogger(__name__)
__all__ = ["FORMAT", "EmbeddingStore", "StoreWarning", "model_fingerprint"]

FORMAT = "napari-segany embeddings"
VERSION = 1


class StoreWarning(UserWarning):
    """An embedding store entry could not be used (it is computed again)."""


def model_fingerprint(model: torch.nn.Module) -> str:
    """A 128-bit hash of every parameter and buffer of ``model`` (names, shapes, bytes).

    About 0.1 s per GB of weights; the same weights give the same fingerprint on any
    device and in any session."""
    digest = xxhash.xxh3_128()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}{tuple(data.shape)}{data.dtype}".encode())
        digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()).cast("B"))
    return digest.hexdigest()


def _key_text(key: tuple) -> str:
    return json.dumps([list(v) if isinstance(v, tuple) else v for v in key], default=str)


def _tensors(features) -> dict[str, torch.Tensor]:
    if isinstance(features, torch.Tensor):
        return {"features": features}
    first, second = features.skips
    return {"features": features.embedding, "skip0": first, "skip1": second}


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = xxhash.xxh3_128()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(memoryview(np.ascontiguousarray(arrays[name])).cast("B"))
    return digest.hexdigest()


class EmbeddingStore:
    """Plane embeddings of one model in a zarr store on disk (module docstring).

    Parameters
    ----------
    path : str or Path
        A directory: created if missing; an existing one must be an embedding store
        (or empty).
    fingerprint : str
        The model's :func:`model_fingerprint`.

    Raises
    ------
    InputError
        ``path`` is a file, or a directory holding something else than a store.
    """

    def __init__(self, path: str | os.PathLike, fingerprint: str) -> None:
        import zarr

        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"The embedding store {self.path} is a file; give a directory.")
        known = self.path.is_dir() and any(self.path.iterdir())
        if known and _format_of(self.path) != FORMAT:  # read only: change nothing there
            raise InputError(
                f"{self.path} is not a napari-segany embedding store (it holds other "
                "files); give an empty or new directory."
            )
        root = zarr.open_group(str(self.path), mode="a")
        if not known:
            root.attrs.update({"format": FORMAT, "version": VERSION})
        self._model_dir = self.path / fingerprint
        self.fingerprint = fingerprint

    def _entry_dir(self, key: tuple) -> Path:
        return self._model_dir / xxhash.xxh3_128_hexdigest(_key_text(key).encode())

    def get(self, key: tuple, device: torch.device | str = "cpu") -> Embedding | None:
        """The stored embedding of ``key`` on ``device``, or None (also when the entry is
        unreadable or corrupt: a ``StoreWarning`` says so and the entry is removed)."""
        folder = self._entry_dir(key)
        if not folder.is_dir():
            return None
        try:
            return self._read(folder, key, device)
        except Exception as error:  # any failure to read: never use it
            warnings.warn(
                f"Embedding store entry {folder.name} in {self.path} could not be used "
                f"({error}); the plane is embedded again.",
                StoreWarning,
                stacklevel=3,
            )
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def _read(self, folder: Path, key: tuple, device) -> Embedding:
        import zarr

        group = zarr.open_group(str(folder), mode="r")
        attrs = dict(group.attrs)
        if attrs.get("key") != _key_text(key):
            raise ValueError("it belongs to another plane")
        names = attrs["arrays"]
        arrays = {name: np.asarray(group[name][...]) for name in names}
        if _checksum(arrays) != attrs["checksum"]:
            raise ValueError("its bytes do not match its checksum")
        tensors = {name: torch.from_numpy(array).to(device) for name, array in arrays.items()}
        features = tensors["features"]
        if "skip0" in tensors:
            from .model.sam2 import Sam2Features

            features = Sam2Features(features, (tensors["skip0"], tensors["skip1"]))
        return Embedding(
            features, tuple(attrs["original_hw"]), tuple(attrs["input_hw"]), attrs["model_key"]
        )

    def put(self, key: tuple, embedding: Embedding) -> None:
        """Write ``embedding`` under ``key`` (complete or not at all)."""
        import zarr

        folder = self._entry_dir(key)
        if folder.is_dir():
            return
        arrays = {
            name: tensor.detach().float().cpu().numpy()
            for name, tensor in _tensors(embedding.features).items()
        }
        self._model_dir.mkdir(parents=True, exist_ok=True)
        temporary = self._model_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            group = zarr.open_group(str(temporary), mode="w")
            for name, array in arrays.items():
                _write_array(group, name, array)
            group.attrs.update(
                {
                    "key": _key_text(key),
                    "arrays": sorted(arrays),
                    "original_hw": list(embedding.original_hw),
                    "input_hw": list(embedding.input_hw),
                    "model_key": embedding.model_key,
                    "checksum": _checksum(arrays),
                }
            )
            os.replace(temporary, folder)
        except OSError as error:  # e.g. a full disk: the session goes on without it
            shutil.rmtree(temporary, ignore_errors=True)
            if not folder.is_dir():
                warnings.warn(
                    f"Could not write to the embedding store {self.path}: {error}",
                    StoreWarning,
                    stacklevel=3,
                )

    def __len__(self) -> int:
        """Entries stored for this model."""
        if not self._model_dir.is_dir():
            return 0
        return sum(1 for p in self._model_dir.iterdir() if not p.name.startswith("."))


def _format_of(path: Path) -> str | None:
    """The ``format`` attribute of the zarr group at ``path``, or None (read only)."""
    import zarr

    try:
        return zarr.open_group(str(path), mode="r").attrs.get("format")
    except Exception:  # not a zarr group at all
        return None


def _write_array(group, name: str, array: np.ndarray) -> None:
    """One uncompressed array (zarr 2 and 3)."""
    create = getattr(group, "create_array", None)
    if create is not None:
        target = create(name, shape=array.shape, dtype=array.dtype, chunks=array.shape)
    else:  # zarr 2
        target = group.create_dataset(name, shape=array.shape, dtype=array.dtype)
    target[...] = array

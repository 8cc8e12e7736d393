"""Finished units on disk: one part file per plane, a manifest per input.

A run keeps its parts in ``<OUTPUT>.parts/<input name>/``: ``manifest.json`` (the run's
settings and the input's identity, see :class:`InputParts`) and ``plane-<index>.npz``
per finished plane, each written to a temporary file and renamed into place, so a
part that exists is complete. A rerun reuses the parts of an input whose manifest
matches and recomputes everything of one whose settings or file changed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import SegAnyError
from ..core.everything.selection import EverythingObject
from ..core.files import atomic_path

MANIFEST = "manifest.json"
_INTS = ("label", "area", "visible_area")  # then bbox (4) and crop box (4)


class PartError(SegAnyError):
    """A part file cannot be read or belongs to other settings."""


@dataclass
class PlanePart:
    """A finished unit: a plane's labels (ids 1..n), its objects and phase-2 warnings."""

    labels: np.ndarray
    objects: list[EverythingObject]
    warnings: list[tuple[str, str]]


def save_part(path: Path, labels: np.ndarray, objects, caught, digest: str) -> None:
    """Write a part atomically.

    Parameters
    ----------
    labels : (H, W) uint32
    objects : sequence of EverythingObject
    caught : sequence of (warning class name, message)
    digest : str
        The run's settings digest, checked when the part is read.
    """
    ints = np.array(
        [[o.label, o.area, o.visible_area, *o.bbox_yxyx, *o.crop_box_yxyx] for o in objects],
        dtype=np.int64,
    ).reshape(-1, 11)
    floats = np.array(
        [[o.predicted_iou, o.stability_score, *o.point_yx] for o in objects], dtype=np.float64
    ).reshape(-1, 4)
    with atomic_path(path) as temporary:
        np.savez_compressed(
            temporary,
            labels=labels,
            ints=ints,
            floats=floats,
            warning_kinds=np.array([k for k, _ in caught], dtype=str),
            warning_texts=np.array([t for _, t in caught], dtype=str),
            digest=np.array(digest),
        )


def load_part(path: Path, digest: str) -> PlanePart:
    """Read a part saved with ``digest``; :class:`PartError` otherwise."""
    try:
        with np.load(path) as data:
            if str(data["digest"]) != digest:
                raise PartError(f"{path} belongs to other settings.")
            ints, floats = data["ints"], data["floats"]
            kinds, texts = data["warning_kinds"].tolist(), data["warning_texts"].tolist()
            labels = data["labels"]
    except (OSError, KeyError, ValueError) as error:
        raise PartError(
            f"{path} could not be read ({error}); delete it to redo the plane."
        ) from error
    objects = [
        EverythingObject(
            label=int(i[0]),
            area=int(i[1]),
            visible_area=int(i[2]),
            bbox_yxyx=tuple(int(v) for v in i[3:7]),
            predicted_iou=float(f[0]),
            stability_score=float(f[1]),
            point_yx=(float(f[2]), float(f[3])),
            crop_box_yxyx=tuple(int(v) for v in i[7:11]),
        )
        for i, f in zip(ints, floats)
    ]
    return PlanePart(labels, objects, list(zip(kinds, texts)))


def digest_of(manifest: dict) -> str:
    """A short hash of a manifest's settings and input identity."""
    text = json.dumps(manifest, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class InputParts:
    """The parts folder of one input.

    Parameters
    ----------
    folder : Path
    manifest : dict
        This run's settings and the input's identity (JSON-ready). Nothing is written
        until :meth:`start`.
    """

    def __init__(self, folder: Path, manifest: dict) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.digest = digest_of(manifest)
        found = self._read_manifest()
        self._matches = found is not None and found.get("digest") == self.digest
        self._state = found if self._matches else {"digest": self.digest, "run": manifest}

    def start(self, fresh: bool = False) -> None:
        """Make the folder ready for this run's parts. One holding parts of other
        settings or another version of the file (or any, with ``fresh``) is emptied:
        those parts are recomputed, never reused."""
        if fresh or not self._matches:
            if self.folder.exists():
                shutil.rmtree(self.folder)
            self._state = {"digest": self.digest, "run": self.manifest, "written": False}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._matches = True
        self._write_manifest()

    @property
    def written(self) -> bool:
        """The input's outputs were written by an earlier, unfinished run of these settings."""
        return bool(self._state.get("written"))

    def path(self, index: Sequence[int]) -> Path:
        """The part file of plane ``index``."""
        return self.folder / f"plane-{'_'.join(str(int(i)) for i in index) or 'yx'}.npz"

    def done(self, index: Sequence[int]) -> bool:
        """Plane ``index`` has a readable part of these settings."""
        path = self.path(index)
        if not path.is_file():
            return False
        try:
            with np.load(path) as data:
                return str(data["digest"]) == self.digest
        except (OSError, KeyError, ValueError):
            return False

    def load(self, index: Sequence[int]) -> PlanePart:
        return load_part(self.path(index), self.digest)

    def mark_written(self) -> None:
        """Record that the outputs are written and drop the part files (kept: the manifest,
        so a rerun of an unfinished batch skips this input)."""
        self._state["written"] = True
        self._write_manifest()
        for part in self.folder.glob("plane-*.npz"):
            part.unlink()

    def _read_manifest(self) -> dict | None:
        try:
            return json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None

    def _write_manifest(self) -> None:
        with atomic_path(self.folder / MANIFEST) as temporary:
            temporary.write_text(json.dumps(self._state, indent=1, sort_keys=True, default=str))

"""Checkpoint files: the cache folder, download, import and verification.

Checkpoints are downloaded once (with :mod:`pooch`, verified by their registered hash:
xxh128, or SHA-256 where that is what was published) into :func:`cache_dir` and never
at import time. A user on an offline machine can copy a file
obtained elsewhere into the cache with :func:`import_checkpoint` (or the command
``napari-segany import NAME FILE``).

Verification policy: a file is hashed once, when it enters the cache (download or
import). A small sidecar ``<filename>.verified`` then records the hash, size and
modification time of the verified file; :func:`cached_checkpoint` trusts a file whose
size and mtime still match its sidecar and re-hashes it otherwise (e.g. a file copied
into the cache folder by hand). Hashing a 2.5 GB ViT-H checkpoint takes about a second,
so this is done only when needed, not on every start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from pathlib import Path

import platformdirs
import xxhash

from . import registry
from .errors import CheckpointError, DownloadError
from .files import atomic_path, write_problem
from .registry import ModelEntry, get_entry

logger = logging.getLogger(__name__)

CACHE_ENV = "SEGANY_CACHE_DIR"
_CHUNK_BYTES = 1 << 20
_SIDECAR_SUFFIX = ".verified"


def cache_dir() -> Path:
    """The folder holding downloaded checkpoints, created if needed.

    ``$SEGANY_CACHE_DIR`` when set (``~`` is expanded), else the platform's user cache
    folder for ``napari-segany`` (e.g. ``~/.cache/napari-segany`` on Linux).

    Raises
    ------
    CheckpointError
        The folder cannot be created.
    """
    configured = os.environ.get(CACHE_ENV, "").strip()
    folder = Path(configured).expanduser() if configured else None
    if folder is None:
        folder = Path(platformdirs.user_cache_dir("napari-segany", appauthor=False))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(
            f"Cannot create the checkpoint cache folder {folder} ({error}). "
            f"Set the environment variable {CACHE_ENV} to a writable folder."
        ) from error
    return folder


def writable_cache_dir() -> Path:
    """:func:`cache_dir`, checked to take new files (a probe file is made and removed).

    Raises
    ------
    CheckpointError
        The folder cannot be created or written; the one-line message names it and
        ``SEGANY_CACHE_DIR``.
    """
    folder = cache_dir()
    error = write_problem(folder)
    if error is not None:
        raise CheckpointError(
            f"Cannot write to the checkpoint cache folder {folder} "
            f"({error.strerror or error}). Make it writable, or set the environment "
            f"variable {CACHE_ENV} to a writable folder."
        ) from error
    return folder


def _new_digest(entry: ModelEntry):
    """A fresh hasher of the entry's registered algorithm (xxh128 or SHA-256)."""
    return hashlib.sha256() if entry.hash_name == "sha256" else xxhash.xxh128()


def _hash_file(path: Path, entry: ModelEntry) -> str:
    digest = _new_digest(entry)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR_SUFFIX)


def _stat_record(path: Path, known_hash: str) -> dict:
    stat = path.stat()
    return {"hash": known_hash, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _mark_verified(path: Path, known_hash: str) -> None:
    """Write the sidecar stating that ``path`` was hashed and matched ``known_hash``
    (``"alg:hex"``)."""
    try:
        _sidecar(path).write_text(json.dumps(_stat_record(path, known_hash)), encoding="utf-8")
    except OSError:  # only costs a re-hash next time
        logger.debug("Could not write %s", _sidecar(path), exc_info=True)


def _is_verified(path: Path, known_hash: str) -> bool:
    try:
        recorded = json.loads(_sidecar(path).read_text(encoding="utf-8"))
        return recorded == _stat_record(path, known_hash)
    except (OSError, ValueError):
        return False


def cached_checkpoint(name: str | ModelEntry) -> Path | None:
    """Path of the verified cached file of a registered model, or ``None``.

    A file without a valid sidecar is hashed once; a file whose hash does not match is
    reported in the log and treated as absent (a later :func:`fetch` replaces it).
    """
    entry = get_entry(name)
    if entry.packaged:
        return packaged_checkpoint(entry)
    path = cache_dir() / entry.filename
    if not path.is_file():
        return None
    if _is_verified(path, entry.known_hash):
        return path
    logger.info("Verifying %s against the registered hash", path)
    if _hash_file(path, entry) != entry.hash_hex:
        logger.warning(
            "%s does not match the registered hash of %r and is ignored; "
            "it will be downloaded again.",
            path,
            entry.name,
        )
        return None
    _mark_verified(path, entry.known_hash)
    return path


_PACKAGED_VERIFIED: set[Path] = set()


def packaged_checkpoint(entry: ModelEntry) -> Path:
    """Path of the weights shipped in the package, hashed once per process.

    Raises
    ------
    CheckpointError
        The file is missing or damaged: the installation is broken.
    """
    path = registry.PACKAGED_DIR / entry.filename
    if path in _PACKAGED_VERIFIED:
        return path
    if not path.is_file() or _hash_file(path, entry) != entry.hash_hex:
        state = "missing" if not path.is_file() else "damaged (hash mismatch)"
        raise CheckpointError(
            f"The weights of the {entry.name!r} model shipped with napari-segany are "
            f"{state}: {path}. Reinstall napari-segany (pip install --force-reinstall "
            "napari-segany)."
        )
    _PACKAGED_VERIFIED.add(path)
    return path


def download_help(entry: ModelEntry) -> str:
    """Sentences telling a user how to get ``entry``'s file without our download."""
    return (
        f"Download {entry.url} elsewhere and then run "
        f"'napari-segany import {entry.name} FILE', or save it as "
        f"{cache_dir() / entry.filename}."
    )


def _progressbar(progress: bool | object) -> bool | object:
    """pooch's ``progressbar`` argument; False when tqdm is missing."""
    if progress is True and importlib.util.find_spec("tqdm") is None:
        logger.info("Install tqdm to see a download progress bar.")
        return False
    return progress


def fetch(name_or_entry: str | ModelEntry, progress: bool | object = True) -> Path:
    """Download (once) and verify a registered checkpoint; return its cached path.

    Parameters
    ----------
    name_or_entry
        A registry name or :class:`ModelEntry`.
    progress
        Show a progress bar (needs tqdm; silently off without it), or a tqdm-like
        object with ``total``, ``update``, ``reset`` and ``close`` to report to.

    Raises
    ------
    ModelNotFoundError
        Unknown name.
    DownloadError
        No network, an HTTP error or a hash mismatch; the message says where to get
        the file and where to put it. No partial file is left in the cache.
    """
    import pooch  # a heavy-ish import, only when downloading
    import requests

    entry = get_entry(name_or_entry)
    cached = cached_checkpoint(entry)
    if cached is not None:
        return cached
    folder = writable_cache_dir()  # before the download, not after it
    logger.info("Downloading %s from %s into %s", entry.name, entry.url, folder)
    # pooch's own logger prints the same news through a handler fixed at its import
    pooch.get_logger().setLevel(logging.WARNING)
    try:
        path = pooch.retrieve(
            entry.url,
            known_hash=entry.known_hash,
            fname=entry.filename,
            path=folder,
            progressbar=_progressbar(progress),
        )
    except (requests.exceptions.RequestException, OSError, ValueError) as error:
        raise DownloadError(
            f"Could not download the checkpoint {entry.filename!r} of model "
            f"{entry.name!r} ({type(error).__name__}: {error}). " + download_help(entry)
        ) from error
    path = Path(path)
    _mark_verified(path, entry.known_hash)
    return path


def import_checkpoint(name: str | ModelEntry, file: str | os.PathLike) -> Path:
    """Copy a user-supplied checkpoint file into the cache after verifying its hash.

    The copy goes to a temporary file in the cache folder that is renamed only after
    the hash matched, so the cache never holds a partial or wrong file.

    Raises
    ------
    ModelNotFoundError
        Unknown name.
    CheckpointError
        ``file`` does not exist or cannot be read; the cache folder cannot be written.
    DownloadError
        ``file`` does not match the registered hash of ``name``.
    """
    entry = get_entry(name)
    if entry.packaged:
        raise CheckpointError(
            f"The {entry.name!r} model ships inside napari-segany; there is nothing to "
            "import. To use other weights, pass the path of their file as the model."
        )
    source = Path(file).expanduser()
    if not source.is_file():
        problem = "it is a directory, not a file" if source.is_dir() else "no such file"
        raise CheckpointError(f"Cannot import {source}: {problem}. Check the path.")
    target = writable_cache_dir() / entry.filename
    try:
        digest = _new_digest(entry)
        with atomic_path(target) as temporary:
            with open(temporary, "wb") as writer, open(source, "rb") as reader:
                while chunk := reader.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    writer.write(chunk)
            if digest.hexdigest() != entry.hash_hex:
                raise DownloadError(
                    f"{source} is not the checkpoint of model {entry.name!r}: its "
                    f"{entry.hash_name} hash is {digest.hexdigest()}, expected "
                    f"{entry.hash_hex}. The file is "
                    f"incomplete or a different model; download it again from {entry.url}."
                )
    except OSError as error:
        raise CheckpointError(f"Cannot import {source} into {target}: {error}") from error
    _mark_verified(target, entry.known_hash)
    logger.info("Imported %s as %s", source, target)
    return target

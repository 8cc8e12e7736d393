"""Files: whether a folder takes new files, and writing a file atomically."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_problem"]


def write_problem(folder: Path) -> OSError | None:
    """Why ``folder`` cannot take a new file, or None when it can.

    A real probe file is created and removed: permissions (which root ignores in
    ``os.access``), read-only mounts and full quotas all show here.
    """
    try:
        handle, probe = tempfile.mkstemp(prefix=".segany-probe-", dir=folder)
    except OSError as error:
        return error
    os.close(handle)
    os.unlink(probe)
    return None


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces ``target`` when the block succeeds.

    Readers never see a half-written ``target``: the block writes the temporary file,
    which is renamed onto ``target`` (atomic on one file system) only if the block
    raises nothing; otherwise it is removed and ``target`` is untouched.
    """
    target = Path(target)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent
    )
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from others
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask: from /proc on Linux (no race with other threads), else
    read by setting it and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask

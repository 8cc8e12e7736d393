"""One click, this working tree against an older commit, interleaved in one process.

The machine's speed drifts between runs (shared CPUs), so a change to the prompt path
is best judged against the code before it in the same process: this script copies
``src/napari_segany`` of ``--against`` (``git archive``) into a temporary package
``napari_segany_old``, builds the same random-weight model in both, and alternates
their clicks (one point, three masks, 1024 x 1024, ViT-B). It prints both medians,
their ratio and whether the masks are equal.

    PYTHONPATH=src .venv/bin/python benchmarks/ab_click.py --against 8304965
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import blob_image, upstream_modules

ROOT = Path(__file__).resolve().parents[1]


def old_package(commit: str, into: Path) -> None:
    """``src/napari_segany`` at ``commit`` as the package ``napari_segany_old`` in ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "src/napari_segany"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "napari_segany_old"
    (into / "src" / "napari_segany").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bnapari_segany\b", "napari_segany_old", text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the older commit")
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        old_package(args.against, Path(folder))
        sys.path.insert(0, folder)
        sessions = {}
        weights = Path(folder) / "vit_b.pth"
        segment_anything, _, _ = upstream_modules()
        torch.save(
            segment_anything.sam_model_registry["vit_b"](checkpoint=None).state_dict(), weights
        )
        for name, package in (("before", "napari_segany_old"), ("after", "napari_segany")):
            api = importlib.import_module(f"{package}.api")
            sessions[name] = api.SegAny(
                "vit_b", checkpoint=str(weights), device="cpu", precision="fp32"
            )
            sessions[name].set_image(blob_image(1024, 1024))
        points, labels = np.array([[512.0, 512.0]]), np.array([1])
        masks = {k: s.segment(points_yx=points, labels=labels).masks for k, s in sessions.items()}
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.clicks):
            for name, session in sessions.items():
                start = time.perf_counter()
                session.segment(points_yx=points, labels=labels)
                times[name].append(time.perf_counter() - start)
    before, after = (1000 * np.median(times[name]) for name in ("before", "after"))
    print(
        f"{args.against} {before:.2f} ms, working tree {after:.2f} ms: after/before "
        f"{after / before:.3f}; masks equal: {np.array_equal(masks['before'], masks['after'])}"
    )


if __name__ == "__main__":
    main()

"""GUI-thread time of a correction's object prompts on large label planes.

    cd benchmarks && ../.venv/bin/python bench_object_prompt.py

A correction needs one object's prompts (grown box, most interior point). On planes of
2048, 4096 and 8192 px per side holding 2000 objects of 15 x 15 px, this times
``object_prompts`` on the whole plane (what a correction did before) against
``mask_prompt`` from the object's mask (what it does now), and checks they agree.
"""

from __future__ import annotations

import time

import numpy as np

from _common import ROOT  # noqa: F401  (puts src/ on the path)
from napari_segany.core.refine_labels import RefineRules, mask_prompt, object_prompts


def main() -> None:
    rules = RefineRules()
    for side in (2048, 4096, 8192):
        labels = np.zeros((side, side), np.uint32)
        rng = np.random.default_rng(0)
        for obj_id in range(1, 2000):
            y, x = rng.integers(0, side - 20, 2)
            labels[y : y + 15, x : x + 15] = obj_id
        start = time.perf_counter()
        whole = object_prompts(labels, [5], rules)[0]
        plane_s = time.perf_counter() - start
        start = time.perf_counter()
        alone = mask_prompt(labels == 5, 5, rules)
        mask_s = time.perf_counter() - start
        assert whole == alone
        print(f"{side} x {side}: object_prompts on the plane {plane_s:.2f} s, "
              f"mask_prompt {mask_s:.3f} s ({plane_s / mask_s:.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()

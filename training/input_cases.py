"""The held-out scenes as the inputs a microscopist has: other channels, tiny crops.

``training.evaluate_builtin --case NAME`` measures the model on the held-out scenes
turned into one of these inputs (issue 19); ``grey`` is the scenes as generated:

- ``red`` / ``green``: each single-channel scene becomes an RGB image with its stain
  in the red (green) channel and the other two channels empty (zero);
- ``two_channel``: each single-channel scene becomes channel 0 of a (H, W, 2) image
  whose channel 1 is another stain: an independent ``"cells"`` scene of the same size
  and dtype (its objects are not in the truth, so a reading that mixes the channels
  finds wrong objects);
- ``tiny``: a :data:`TINY_HW` crop of each scene (61 x 57, as the issue's noisy nuclei
  crop), centred on the object nearest the scene's centre; objects cut by the crop
  stay objects (the smallest parts are not prompted, ``MIN_AREA``).

Scenes that are RGB already (``cells_rgb``, 3 of the 24 default ones) stay as they are
in the channel cases, so every case is measured on the same scenes.
"""

from __future__ import annotations

import numpy as np

from napari_segany.core.synthetic import Scene, generate_scene

INPUT_CASES = ("grey", "red", "green", "two_channel", "tiny")
TINY_HW = (61, 57)
OTHER_STAIN_SEED = 555_000_111  # the second channel's scenes: seeds of their own


def as_case(scene: Scene, case: str, index: int) -> Scene:
    """The held-out ``scene`` (number ``index``) as input ``case`` (module docstring).

    Parameters
    ----------
    scene : Scene
        A held-out scene: ``image`` (H, W) or (H, W, 3), ``labels`` (H, W).
    case : str
        One of :data:`INPUT_CASES`.
    index : int
        The scene's number (seeds the second channel of ``two_channel``).

    Returns
    -------
    Scene
        Same kind and radius; ``image`` and ``labels`` changed as the case says.
    """
    if case not in INPUT_CASES:
        raise ValueError(f"case must be one of {INPUT_CASES}, got {case!r}")
    if case == "tiny":
        return _crop_around_an_object(scene, TINY_HW)
    if case == "grey" or scene.image.ndim == 3:
        return scene
    if case == "two_channel":
        rng = np.random.default_rng(OTHER_STAIN_SEED + index)
        other = generate_scene(rng, scene.labels.shape, kind="cells", dtype=scene.image.dtype.name)
        image = np.stack([scene.image, other.image], axis=-1)
        return Scene(image, scene.labels, scene.kind, scene.radius)
    image = np.zeros(scene.image.shape + (3,), scene.image.dtype)
    image[:, :, 0 if case == "red" else 1] = scene.image
    return Scene(image, scene.labels, scene.kind, scene.radius)


def tiny_window(labels: np.ndarray, crop_hw: tuple[int, int] = TINY_HW) -> tuple[slice, slice]:
    """The ``crop_hw`` window of (H, W) ``labels`` the ``tiny`` case crops: centred on
    the object nearest the plane's centre (as a person crops around a cell), kept inside
    the plane."""
    height, width = labels.shape
    ys, xs = np.nonzero(labels)
    y, x = height // 2, width // 2
    if ys.size:
        nearest = np.argmin((ys - y) ** 2 + (xs - x) ** 2)
        label = labels[ys[nearest], xs[nearest]]
        y, x = (int(v.mean()) for v in np.nonzero(labels == label))
    y0 = min(max(y - crop_hw[0] // 2, 0), height - crop_hw[0])
    x0 = min(max(x - crop_hw[1] // 2, 0), width - crop_hw[1])
    return np.s_[y0 : y0 + crop_hw[0], x0 : x0 + crop_hw[1]]


def _crop_around_an_object(scene: Scene, crop_hw: tuple[int, int]) -> Scene:
    window = tiny_window(scene.labels, crop_hw)
    return Scene(scene.image[window], scene.labels[window], scene.kind, scene.radius)

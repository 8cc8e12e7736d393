"""Automatic instance segmentation from decoder maps (``core.everything.ais``) against
micro-sam's post-processing (its smoothing, torch-em's seeded watershed, bioimage-cpp's
filters), on maps made from known objects: touching discs and a crescent."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from tests.oracle.torch_em_upstream import reference_ais

from napari_segany.core.errors import InputError
from napari_segany.core.everything.ais import AisParams, ais_labels


def _maps(seed: int = 0, shape=(160, 200)):
    """Foreground, centre-distance and boundary-distance maps as a trained decoder
    would give them for 9 objects (some touching, one non-convex), with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, np.int32)
    discs = [(40, 40, 18), (40, 74, 17), (110, 50, 22), (120, 150, 25), (60, 160, 14)]
    discs += [(140, 95, 9), (20, 120, 8), (95, 110, 12), (75, 125, 10)]
    for obj, (cy, cx, r) in enumerate(discs, start=1):
        truth[(np.hypot(yy - cy, xx - cx) < r) & (truth == 0)] = obj
    crescent = (np.hypot(yy - 120, xx - 150) < 25) & (np.hypot(yy - 110, xx - 162) < 18)
    truth[crescent] = 0  # object 4 becomes a crescent
    foreground = np.zeros(shape, np.float32)
    center = np.ones(shape, np.float32)
    boundary = np.ones(shape, np.float32)
    for obj in range(1, len(discs) + 1):
        mask = truth == obj
        inner = ndimage.distance_transform_edt(mask)
        boundary[mask] = 1 - inner[mask] / inner.max()
        cy, cx = ndimage.center_of_mass(mask)
        radius = np.hypot(yy - cy, xx - cx)
        center[mask] = np.clip(radius[mask] / (inner.max() * 1.5), 0, 1)
        foreground[mask] = 1
    noisy = [
        m + rng.normal(0, 0.08, shape).astype(np.float32) for m in (foreground, center, boundary)
    ]
    return [np.clip(m, 0, 1) for m in noisy], truth


def _object_ious(ours: np.ndarray, theirs: np.ndarray) -> list[float]:
    ious = []
    for obj in np.unique(theirs)[1:]:
        mask = theirs == obj
        hits = np.bincount(ours[mask])
        best = int(np.argmax(hits[1:]) + 1) if hits[1:].any() else 0
        union = np.count_nonzero(mask | (ours == best)) if best else mask.sum()
        ious.append(float(hits[best] / union) if best else 0.0)
    return ious


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"center_distance_threshold": 0.4, "boundary_distance_threshold": 0.6, "min_size": 60},
        {"foreground_smoothing": 0.0, "distance_smoothing": 0.8, "foreground_threshold": 0.6},
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_labels_equal_micro_sams(params, seed):
    (foreground, center, boundary), truth = _maps(seed)
    theirs = reference_ais(foreground, center, boundary, **params)
    ours = ais_labels(foreground, center, boundary, AisParams(**params))
    assert ours.shape == truth.shape and ours.dtype == np.int32
    assert len(np.unique(ours)) == len(np.unique(theirs)) > 5  # found objects, as many
    assert min(_object_ious(ours, theirs)) >= 0.98


def test_the_maps_segment_the_objects_they_were_made_from():
    (foreground, center, boundary), truth = _maps(0)
    ours = ais_labels(foreground, center, boundary)
    ious = _object_ious(ours, truth)
    assert np.mean(ious) > 0.85 and len(np.unique(ours)) - 1 == len(np.unique(truth)) - 1


def test_bad_maps_and_parameters_are_refused():
    with pytest.raises(InputError, match="one \\(H, W\\) shape"):
        ais_labels(np.zeros((4, 4)), np.zeros((4, 5)), np.zeros((4, 4)))
    with pytest.raises(InputError, match="min_size"):
        AisParams(min_size=-1)

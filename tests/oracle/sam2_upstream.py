"""The reference SAM 2.1 (Meta's ``sam2`` package) as a test oracle.

``sam2`` is installed without its dependencies (``scripts/_env.sh``): torchvision does
not import beside our CPU torch build, and the model code needs only torch, hydra
and iopath. Models are built from the package's own SAM 2.1 configs, so a wrong size
table on our side cannot be copied into the reference.
"""

from __future__ import annotations

from importlib import resources

import pytest
import torch

from .upstream import randomize_

sam2 = pytest.importorskip("sam2")
hydra_utils = pytest.importorskip("hydra.utils")
omegaconf = pytest.importorskip("omegaconf")

CONFIG_NAMES = {
    "tiny": "sam2.1_hiera_t.yaml",
    "small": "sam2.1_hiera_s.yaml",
    "base_plus": "sam2.1_hiera_b+.yaml",
    "large": "sam2.1_hiera_l.yaml",
}


def reference_config(size: str):
    """The ``model`` node of the official SAM 2.1 config of ``size``."""
    path = resources.files("sam2") / "configs" / "sam2.1" / CONFIG_NAMES[size]
    return omegaconf.OmegaConf.load(str(path)).model


def reference_image_encoder(size: str, seed: int = 0) -> torch.nn.Module:
    """Meta's SAM 2.1 image encoder (Hiera trunk + FPN neck) of ``size``, every
    parameter random (:func:`randomize_`), in eval mode."""
    encoder = hydra_utils.instantiate(reference_config(size).image_encoder)
    return randomize_(encoder, seed=seed).eval()

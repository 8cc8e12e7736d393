"""torch-em's UNETR and micro-sam's ``DecoderAdapter`` (micro-sam's instance decoder)
as a test oracle.

torch-em and micro-sam are installed without their dependencies (``scripts/_env.sh``):
their packages' ``__init__`` import data, training and GUI stacks (elf, vigra, ...)
that the model code does not need. So torch-em's two model modules are imported under
stand-in package entries, and micro-sam's ``DecoderAdapter`` class is taken from its
source file alone (it needs only torch).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

from .upstream import randomize_


def _model_modules():
    if "torch_em.model.unetr" in sys.modules:
        return sys.modules["torch_em.model.unetr"]
    spec = importlib.util.find_spec("torch_em")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torch-em (the instance decoder's oracle) is not installed")
    root = Path(spec.submodule_search_locations[0])
    for name, path in (("torch_em", root), ("torch_em.model", root / "model")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    import torch_em.model.unetr as unetr

    return unetr


class _EncoderStandIn(torch.nn.Module):
    """What UNETR reads of a SAM image encoder when it only decodes: input channels
    and the frame size."""

    in_chans = 3

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size


def reference_unetr(transposed: bool = False, seed: int = 0, frame: int = 1024) -> torch.nn.Module:
    """torch-em's UNETR as micro-sam's ``get_unetr`` builds it (3 outputs, sigmoid, no
    skip connections to the encoder) for a ``frame`` x ``frame`` model frame, every
    parameter random, in eval mode."""
    unetr = _model_modules()
    model = unetr.UNETR(
        backbone="sam",
        img_size=frame,
        encoder=_EncoderStandIn(frame),
        out_channels=3,
        use_sam_stats=True,
        final_activation="Sigmoid",
        use_skip_connection=False,
        resize_input=True,
        use_conv_transpose=transposed,
        embed_dim=256,
    )
    return randomize_(model, seed=seed).eval()


def reference_decoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The entries micro-sam keeps in a ``*_decoder`` file: all but the encoder's."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("encoder")}


def _definitions(package: str, module: str, names: list[str], namespace: dict) -> dict:
    """Functions and classes ``names`` of ``package``'s ``module``, compiled from its
    source into ``namespace`` (what they need, given by the caller) without importing
    the package."""
    if package in sys.modules and hasattr(sys.modules[package], "__path__"):
        root = Path(list(sys.modules[package].__path__)[0])
    else:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            pytest.skip(f"{package} (the instance decoder's oracle) is not installed")
        root = Path(spec.submodule_search_locations[0])
    path = root / f"{module.replace('.', '/')}.py"
    tree = ast.parse(path.read_text())
    wanted = [n for n in tree.body if getattr(n, "name", None) in names]
    exec(compile(ast.Module(wanted, type_ignores=[]), str(path), "exec"), namespace)
    return namespace


def _micro_sam_class(name: str, module: str = "instance_segmentation"):
    """A class of micro-sam's ``module``, compiled from its source with only torch."""
    return _definitions("micro_sam", module, [name], {"torch": torch})[name]


def reference_ais(foreground, center_distances, boundary_distances, **params):
    """micro-sam's ``InstanceSegmentationWithDecoder.generate`` (untiled) on given maps:
    its ``_apply_smoothing`` and torch-em's ``watershed_from_center_and_boundary_distances``
    (with ``size_filter``), on bioimage-cpp's filters and watershed as they import them."""
    import typing

    import numpy as np

    bic = pytest.importorskip("bioimage_cpp")
    micro = _definitions(
        "micro_sam", "instance_segmentation", ["_apply_smoothing"],
        {"filter_impl": bic.filters, "apply_filter": None},
    )  # fmt: skip
    torch_em = _definitions(
        "torch_em", "util.segmentation",
        ["size_filter", "watershed_from_center_and_boundary_distances"],
        {"np": np, "bic": bic, "Optional": typing.Optional},
    )  # fmt: skip
    smoothing = params.pop("foreground_smoothing", 1.0)
    if smoothing > 0:
        foreground = micro["_apply_smoothing"](foreground, smoothing, None, None)
    return torch_em["watershed_from_center_and_boundary_distances"](
        center_distances, boundary_distances, foreground, **params
    )


def reference_decode(model: torch.nn.Module, embedding, input_hw, original_hw):
    """micro-sam's ``DecoderAdapter`` around ``model`` on an embedding: (1, 3, H, W)."""
    adapter = _micro_sam_class("DecoderAdapter")(model).eval()
    return adapter(embedding, input_hw, original_hw)

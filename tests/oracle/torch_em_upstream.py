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


class _ParallelStandIn:
    """What micro-sam's APG calls of ``elf.parallel`` (not installable beside our torch
    build), on one block as elf computes planes up to its 512 x 512 blocks: bioimage-cpp's
    4-connected labelling and distance transform, numpy's unique / isin."""

    def __init__(self, bic) -> None:
        self._bic = bic

    def label(self, data, out=None, block_shape=None, **_):
        labels = self._bic.segmentation.label(data, background=0, connectivity=1)
        if out is None:
            return labels
        out[...] = labels  # micro-sam passes uint32 arrays: their dtype matters downstream
        return out

    def distance_transform(self, data, halo=None, block_shape=None, **_):
        return self._bic.distance.distance_transform(data)

    def unique(self, data, return_counts=False, block_shape=None, **_):
        import numpy as np

        return np.unique(data, return_counts=return_counts)

    def isin(self, data, values, out=None, block_shape=None, **_):
        import numpy as np

        out[...] = np.isin(data, values)
        return out

    def relabel_consecutive(self, data, block_shape=None, **_):
        import numpy as np

        values = np.unique(data)
        lookup = np.zeros(int(values.max()) + 1, data.dtype)
        lookup[values[values > 0]] = np.arange(1, int((values > 0).sum()) + 1)
        data[...] = lookup[data]
        return data, int(lookup.max()), lookup


class _DecoderSegmenterStandIn:
    """``InstanceSegmentationWithDecoder``'s state as ``AutomaticPromptGenerator`` reads
    it (its ``initialize`` runs the decoder: the test passes the maps instead)."""

    @property
    def is_initialized(self):
        return True


def reference_apg(predictor, foreground, center_distances, boundary_distances, **params):
    """micro-sam's ``AutomaticPromptGenerator.generate`` (untiled) on given maps, with
    ``predictor`` (an upstream ``SamPredictor`` with its image set): its prompt
    derivation, ``batched_inference``, ``apply_nms`` and ``mask_data_to_segmentation``,
    compiled from micro-sam's source, on bioimage-cpp and ``_ParallelStandIn``."""
    import typing

    import numpy as np
    from skimage.measure import regionprops
    from skimage.segmentation import find_boundaries

    from . import upstream

    bic = pytest.importorskip("bioimage_cpp")
    typing_names = {n: getattr(typing, n) for n in ("Any", "Dict", "List", "Optional", "Union")}
    common = {"np": np, "torch": torch, **typing_names}
    amg = upstream.segment_anything.utils.amg
    transforms = upstream.segment_anything.utils.transforms
    vendored = _definitions("micro_sam", "_vendored", ["batched_mask_to_box"], dict(common))
    util = types.SimpleNamespace(
        **_definitions(
            "micro_sam", "util",
            ["apply_nms", "_batched_mask_nms", "_calculate_ious_between_pred_masks",
             "_calculate_iomin_between_pred_masks", "_overlap_matrix", "_xywh_to_xyxy",
             "mask_data_to_segmentation"],
            {**common, "amg_utils": amg, "parallel_impl": _ParallelStandIn(bic),
             "batched_nms": None, "Tuple": tuple},
        )
    )  # fmt: skip
    inference = _definitions(
        "micro_sam", "inference",
        ["batched_inference", "_validate_inputs", "_process_masks_for_batch"],
        {**common, "amg_utils": amg, "ResizeLongestSide": transforms.ResizeLongestSide,
         "batched_mask_to_box": vendored["batched_mask_to_box"], "util": util,
         "SamPredictor": object, "os": __import__("os"), "Tuple": tuple},
    )  # fmt: skip
    micro = _definitions(
        "micro_sam", "instance_segmentation",
        ["_get_centers", "_derive_point_prompts", "_derive_box_prompts",
         "AutomaticPromptGenerator"],
        {**common, "find_boundaries": find_boundaries, "regionprops": regionprops,
         "parallel_impl": _ParallelStandIn(bic), "util": util,
         "batched_inference": inference["batched_inference"],
         "InstanceSegmentationWithDecoder": _DecoderSegmenterStandIn},
    )  # fmt: skip
    generator = micro["AutomaticPromptGenerator"]()
    generator._predictor = predictor
    generator._foreground = foreground
    generator._center_distances = center_distances
    generator._boundary_distances = boundary_distances
    with torch.inference_mode():
        return generator.generate(**params)

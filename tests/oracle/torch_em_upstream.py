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


def _micro_sam_class(name: str, module: str = "instance_segmentation"):
    """A class of micro-sam's ``module``, compiled from its source with only torch."""
    spec = importlib.util.find_spec("micro_sam")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("micro-sam (the instance decoder's oracle) is not installed")
    path = Path(spec.submodule_search_locations[0]) / f"{module}.py"
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    namespace = {"torch": torch}
    exec(compile(ast.Module([node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def reference_decode(model: torch.nn.Module, embedding, input_hw, original_hw):
    """micro-sam's ``DecoderAdapter`` around ``model`` on an embedding: (1, 3, H, W)."""
    adapter = _micro_sam_class("DecoderAdapter")(model).eval()
    return adapter(embedding, input_hw, original_hw)

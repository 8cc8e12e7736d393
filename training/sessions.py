"""The session an evaluation measures: a registry model, or tuned weights run with the
built-in model's rules."""

from __future__ import annotations

from napari_segany.api import SegAny
from napari_segany.core.loading import load_model
from napari_segany.core.plugins import load_plugin
from napari_segany.core.registry import REGISTRY


def evaluation_session(
    model: str = "builtin", weights: str | None = None, device: str = "cpu", refine="auto"
) -> SegAny:
    """The fp32 session of ``model`` (a registry name or a file, its own rules), or of the
    model file ``weights`` with the built-in model's plug-in (its input rules, refiners
    and everything mode): how tuned built-in weights are measured as they would ship.
    """
    if weights is None:
        return SegAny(model, device=device, precision="fp32", refine=refine)
    loaded = load_model(weights, device=device)
    plugin = load_plugin(REGISTRY["builtin"].plugin)
    return SegAny.from_model(
        loaded.model, loaded.device, "fp32", str(loaded.name), plugin=plugin, refine=refine
    )

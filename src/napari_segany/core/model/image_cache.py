"""The mask decoder's cached image side: what it was computed from, checked per prompt."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:
    from .implicit_image import PlaneProjections
    from .transformer import ImageTokens

__all__ = ["CachedImage", "parameters_of"]


class CachedImage:
    """A prepared image side and the tensors it was computed from.

    Holding the input tensors keeps their memory alive, so an equal data pointer,
    version, shape, stride, dtype and device means unchanged contents.
    """

    def __init__(
        self, inputs: tuple[Tensor, ...], image: ImageTokens, upscaling: tuple[Tensor, ...]
    ) -> None:
        self.inputs = inputs
        self.fingerprints = [_fingerprint(tensor) for tensor in inputs]
        self.image = image
        self.plane: PlaneProjections | None = None  # made on the first implicit prompt
        self.upscaling = upscaling  # the decoder's upscaling matmuls (same weights)

    def matches(self, inputs: tuple[Tensor, ...]) -> bool:
        """True if ``inputs`` are (still) the tensors the image side was computed from.

        The same tensor object is checked by data pointer and version only (its shape,
        strides, dtype and device change only with those); others by the whole
        fingerprint. Called on every prompt, so kept cheap.
        """
        if len(inputs) != len(self.inputs):
            return False
        for tensor, held, known in zip(inputs, self.inputs, self.fingerprints):
            if tensor is held:
                version = -1 if tensor.is_inference() else tensor._version
                if (tensor.data_ptr(), version) != known[:2]:
                    return False
            elif _fingerprint(tensor) != known:
                return False
        return True


def parameters_of(module: nn.Module) -> list[Tensor]:
    """Every parameter of ``module`` and its submodules, in a fixed order.

    The same set as ``module.parameters()`` (shared ones may repeat), from a plain
    walk over the module dicts: measured ~2x faster, and it runs on every prompt.
    """
    found: list[Tensor] = []
    pending = [module]
    while pending:
        current = pending.pop()
        found += [param for param in current._parameters.values() if param is not None]
        pending += [child for child in current._modules.values() if child is not None]
    return found


def _fingerprint(tensor: Tensor) -> tuple:
    """Identity of a tensor's current contents (inference tensors have no version)."""
    version = -1 if tensor.is_inference() else tensor._version
    return (
        tensor.data_ptr(),
        version,
        tuple(tensor.shape),
        tensor.stride(),
        tensor.dtype,
        tensor.device,
    )

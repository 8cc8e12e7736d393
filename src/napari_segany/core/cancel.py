"""Stop a running image-encoder forward pass from another thread.

Cancelling an embedding must stop the computation, not only drop its result: a ViT-H
plane takes a minute on a CPU. :func:`stop_on` registers forward pre-hooks on the
blocks of an encoder (every child of every ``nn.ModuleList`` inside it:
``image_encoder.blocks`` of the ViT, ``image_encoder.layers`` and their ``blocks`` in
TinyViT, the ``stages`` of the built-in CNN, or any other encoder built from module
lists). Each hook checks a
:class:`threading.Event` before its block runs and raises :class:`CancelledError` once
the event is set, so the forward pass ends within one block.

Only the thread that entered :func:`stop_on` is affected: the hooks ignore forward
passes of other threads on the same model (e.g. a second embedding running beside a
cancelled one).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from torch import nn

from .errors import CancelledError


def encoder_blocks(encoder: nn.Module) -> list[nn.Module]:
    """Every child of every ``nn.ModuleList`` inside ``encoder``, in definition order.

    An encoder without module lists gives its direct children.
    """
    blocks: list[nn.Module] = []
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList):
            blocks.extend(module.children())
    return blocks or list(encoder.children())


def image_encoder_of(session) -> nn.Module | None:
    """The image encoder of a ``SegAny`` session, ``Predictor`` or ``Sam`` (None if none)."""
    model = getattr(getattr(session, "predictor", session), "model", session)
    encoder = getattr(model, "image_encoder", None)
    return encoder if isinstance(encoder, nn.Module) else None


@contextlib.contextmanager
def stop_on(encoder: nn.Module | None, event: threading.Event) -> Iterator[int]:
    """Within the block, forward passes of ``encoder`` in this thread stop once ``event`` is set.

    Parameters
    ----------
    encoder : torch.nn.Module or None
        The image encoder (None: nothing to hook, the block runs unchanged).
    event : threading.Event
        Set it (from any thread) to cancel.

    Yields
    ------
    int
        How many blocks were hooked.

    Raises
    ------
    CancelledError
        From the next block that starts after ``event`` was set (also when it was set
        before the block was entered).
    """
    if event.is_set():
        raise CancelledError("Cancelled before the computation started.")
    blocks = encoder_blocks(encoder) if encoder is not None else []
    owner = threading.get_ident()

    def check(_module: nn.Module, _inputs: tuple) -> None:
        if event.is_set() and threading.get_ident() == owner:
            raise CancelledError("The embedding was cancelled; nothing was changed.")

    handles = [block.register_forward_pre_hook(check) for block in blocks]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()

"""Cancelling an embedding stops the encoder within one block (core.cancel)."""

import threading

import pytest
import torch

from napari_segany.core.cancel import encoder_blocks, image_encoder_of, stop_on
from napari_segany.core.errors import CancelledError
from napari_segany.core.model.build import build_sam
from tests.fakes import tiny_architecture


@pytest.fixture(scope="module")
def sam():
    from dataclasses import replace

    arch = tiny_architecture()
    arch = replace(arch, encoder_kwargs={**arch.encoder_options, "depth": 4})
    torch.manual_seed(0)
    return build_sam(arch, image_size=64).eval()


def _counting(blocks):
    ran = []
    handles = [b.register_forward_hook(lambda *_, n=n: ran.append(n)) for n, b in enumerate(blocks)]
    return ran, handles


def test_setting_the_event_stops_before_the_next_block(sam):
    blocks = encoder_blocks(sam.image_encoder)
    assert blocks == list(sam.image_encoder.blocks) and len(blocks) == 4
    ran, handles = _counting(blocks)
    event = threading.Event()
    handles.append(blocks[1].register_forward_hook(lambda *_: event.set()))  # cancel here
    with pytest.raises(CancelledError), stop_on(image_encoder_of(sam), event):
        sam.image_encoder(torch.zeros(1, 3, 64, 64))
    assert ran == [0, 1]  # blocks 2 and 3 never ran
    for handle in handles:
        handle.remove()
    assert all(not block._forward_pre_hooks for block in blocks)  # our hooks are gone
    sam.image_encoder(torch.zeros(1, 3, 64, 64))  # the model works normally afterwards


def test_other_threads_are_not_stopped(sam):
    event = threading.Event()
    event_set = threading.Event()
    results = {}

    def other_thread():
        event_set.wait()
        results["other"] = sam.image_encoder(torch.zeros(1, 3, 64, 64)).shape

    thread = threading.Thread(target=other_thread)
    thread.start()
    with stop_on(image_encoder_of(sam), event) as hooked:
        event.set()
        event_set.set()
        thread.join()
        with pytest.raises(CancelledError):
            sam.image_encoder(torch.zeros(1, 3, 64, 64))
    assert hooked == 4 and results["other"] == (1, 32, 4, 4)


def test_tinyvit_stages_and_their_blocks_are_hooked():
    from napari_segany.core.model.tiny_vit import TinyViT

    encoder = TinyViT(
        img_size=64,
        embed_dims=(8, 16, 16, 16),
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 2, 2),
        window_sizes=(2, 2, 2, 2),
    )
    blocks = encoder_blocks(encoder)
    assert len(blocks) >= 4 + 4  # the 4 stages, and their blocks
    ran, _ = _counting(list(encoder.layers))
    event = threading.Event()
    encoder.layers[0].register_forward_hook(lambda *_: event.set())
    with pytest.raises(CancelledError), stop_on(encoder, event):
        encoder(torch.zeros(1, 3, 64, 64))
    assert ran == [0]  # stages 1 to 3 never ran


def test_an_event_set_before_starting_raises_at_once():
    event = threading.Event()
    event.set()
    with pytest.raises(CancelledError), stop_on(None, event):
        pass

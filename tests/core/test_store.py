"""The persistent embedding store: a reopened dataset is never embedded again; another
model, other reading options or a corrupt entry are never served stored features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.fakes import tiny_architecture

from napari_segany.api import SegAny
from napari_segany.core.embeddings import plane_key
from napari_segany.core.errors import InputError
from napari_segany.core.model.build import build_sam
from napari_segany.core.store import EmbeddingStore, StoreWarning, model_fingerprint


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_sam(tiny_architecture(), image_size=256)


def _session(model, store) -> SegAny:
    session = SegAny.from_model(model, name="tiny", embedding_store=store)
    calls = []
    encode = session.predictor.model.image_encoder.forward
    session.predictor.model.image_encoder.forward = lambda x: calls.append(1) or encode(x)
    session.encoder_calls = calls
    return session


def _plane(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, (90, 120)).astype(np.uint16)


def test_a_reopened_dataset_is_read_back_not_embedded(tmp_path):
    model = _model()
    first = _session(model, tmp_path / "store")
    planes = [_plane(0), _plane(1)]
    expected = [first.prepare(p) for p in planes]
    assert first.encoder_calls == [1, 1] and len(first.embedding_store) == 2
    again = _session(model, tmp_path / "store")  # a new session: empty memory cache
    for plane, embedding in zip(planes, expected):
        stored = again.prepare(plane)
        torch.testing.assert_close(stored.features, embedding.features, rtol=0, atol=0)
        assert stored.input_hw == embedding.input_hw and stored.model_key == embedding.model_key
    assert again.encoder_calls == []
    again.prepare(planes[0], contrast_limits=(0, 1000))  # other reading: another entry
    assert again.encoder_calls == [1] and len(again.embedding_store) == 3


def test_another_models_weights_never_share_entries(tmp_path):
    first = _session(_model(0), tmp_path / "store")
    first.prepare(_plane())
    other = _session(_model(1), tmp_path / "store")  # same name, other weights
    assert other.embedding_store.fingerprint != first.embedding_store.fingerprint
    other.prepare(_plane())
    assert other.encoder_calls == [1]
    assert len(first.embedding_store) == len(other.embedding_store) == 1


def test_a_corrupt_entry_is_reported_recomputed_and_rewritten(tmp_path):
    model = _model()
    first = _session(model, tmp_path / "store")
    expected = first.prepare(_plane()).features.clone()
    chunks = [p for p in (tmp_path / "store").rglob("*") if p.is_file() and p.stat().st_size > 1000]
    assert chunks  # the features' bytes
    for chunk in chunks:
        data = bytearray(chunk.read_bytes())
        data[len(data) // 2] ^= 0xFF
        chunk.write_bytes(bytes(data))
    again = _session(model, tmp_path / "store")
    with pytest.warns(StoreWarning, match="checksum"):
        recomputed = again.prepare(_plane())
    assert again.encoder_calls == [1]
    torch.testing.assert_close(recomputed.features, expected)
    third = _session(model, tmp_path / "store")  # rewritten: read back again
    third.prepare(_plane())
    assert third.encoder_calls == []


def test_paths_that_are_not_stores_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        EmbeddingStore(tmp_path / "file", "abc")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a napari-segany embedding store"):
        EmbeddingStore(tmp_path / "other", "abc")
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]


def test_the_fingerprint_follows_the_weights():
    model = _model()
    before = model_fingerprint(model)
    assert model_fingerprint(_model()) == before
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    assert model_fingerprint(model) != before


def test_sam2_features_round_trip(tmp_path):
    from napari_segany.core.model.sam2 import build_sam2

    torch.manual_seed(0)
    model = build_sam2("tiny").eval()
    first = SegAny.from_model(model, name="sam2-tiny", embedding_store=Path(tmp_path))
    plane = np.random.default_rng(0).integers(0, 255, (64, 80)).astype(np.uint8)
    expected = first.prepare(plane).features
    again = SegAny.from_model(model, name="sam2-tiny", embedding_store=Path(tmp_path))
    key = plane_key(plane, model_key=again.predictor.model_key)
    stored = again.embedding_store.get(key, "cpu")
    torch.testing.assert_close(stored.features.embedding, expected.embedding, rtol=0, atol=0)
    for got, want in zip(stored.features.skips, expected.skips):
        torch.testing.assert_close(got, want, rtol=0, atol=0)

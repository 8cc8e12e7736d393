"""Embedding record and the byte-bounded LRU cache."""

from __future__ import annotations

import threading

import torch

from napari_segany.core.embeddings import Embedding, EmbeddingCache


def _embedding(grid: int = 8, tag: float = 0.0) -> Embedding:
    features = torch.full((1, 256, grid, grid), float(tag))
    return Embedding(features, original_hw=(30, 40), input_hw=(96, 128), model_key="m")


def test_nbytes_counts_float32_features():
    assert _embedding(8).nbytes == 256 * 8 * 8 * 4
    assert _embedding(64).nbytes == 4 * 1024 * 1024  # one SAM embedding: 4 MiB


def test_hits_misses_and_lru_eviction_by_bytes():
    size = _embedding().nbytes
    cache = EmbeddingCache(max_bytes=2 * size + size // 2)  # room for two
    first, second, third = (_embedding(tag=t) for t in (1, 2, 3))
    cache.put("a", first)
    cache.put("b", second)
    assert cache.get("a") is first  # "a" is now the most recent
    assert cache.get("zzz") is None
    cache.put("c", third)  # evicts "b", the least recently used
    assert "b" not in cache and "a" in cache and "c" in cache
    assert len(cache) == 2 and cache.nbytes == 2 * size
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.get("b") is None and cache.misses == 2


def test_entries_of_different_sizes_evict_until_they_fit():
    small, big = _embedding(4), _embedding(8)  # big = 4 x small
    cache = EmbeddingCache(max_bytes=big.nbytes + small.nbytes)
    for key in "abcde":
        cache.put(key, small)
    assert len(cache) == 5
    cache.put("big", big)  # must evict 4 of the 5 small ones
    assert len(cache) == 2 and "e" in cache and "big" in cache
    assert cache.nbytes == big.nbytes + small.nbytes


def test_putting_a_key_again_replaces_without_double_counting():
    cache = EmbeddingCache(max_bytes=10 * _embedding().nbytes)
    cache.put("a", _embedding(tag=1))
    replacement = _embedding(tag=2)
    cache.put("a", replacement)
    assert len(cache) == 1 and cache.nbytes == replacement.nbytes
    assert cache.get("a") is replacement


def test_too_big_entry_is_returned_but_not_cached():
    cache = EmbeddingCache(max_bytes=_embedding(4).nbytes)
    cache.put("small", _embedding(4))
    big = _embedding(8)
    assert cache.put("big", big) is big
    assert "big" not in cache and "small" in cache
    disabled = EmbeddingCache(max_bytes=0)
    disabled.put("x", _embedding(4))
    assert len(disabled) == 0


def test_clear_empties_the_cache():
    cache = EmbeddingCache()
    cache.put("a", _embedding())
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and cache.get("a") is None


def test_concurrent_puts_and_gets_keep_the_budget():
    entry = _embedding(4)
    cache = EmbeddingCache(max_bytes=5 * entry.nbytes)

    def work(offset: int) -> None:
        for i in range(300):
            cache.put((offset, i % 20), entry)
            cache.get((offset, (i * 7) % 20))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 5 and cache.nbytes == 5 * entry.nbytes
    assert cache.hits + cache.misses == 4 * 300

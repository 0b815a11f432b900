"""The feature cache: content-addressed, memory-mapped, and safe against interrupted writes."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from ufd_lib.features.extraction.feature_cache import FeatureCache, setting_id, stored_features

SETTING = {"encoder": "random-clip:tiny", "preprocess": {"center_crop": 224}}


def digest(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest()


def random_features(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_round_trip_within_float16_precision(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    features = random_features(10)
    keys = [digest(i) for i in range(10)]
    cache.write_chunk(keys, features)
    reopened = FeatureCache(tmp_path, SETTING)  # as a later process would see it
    loaded = reopened.load(keys)
    assert loaded.dtype == np.float32 and loaded.shape == (10, 16)
    np.testing.assert_allclose(loaded, features, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(loaded, features.astype(np.float16).astype(np.float32))
    assert len(reopened) == 10 and reopened.dim == 16


def test_stored_features_are_numpys_float16_bit_for_bit():
    """Every float16 value, the float32 values on each side of it and halfway to the next (ties
    to even), beyond the range, subnormals, and layouts torch does not take as they are."""
    halves = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    halves = halves[np.isfinite(halves)]
    values = np.concatenate([[1e6, -1e6, 65520.0, np.inf, -np.inf], halves, np.nextafter(halves, np.inf),
                             np.nextafter(halves, -np.inf), (halves[:-1] + halves[1:]) / 2]).astype(np.float32)
    values = values[: len(values) // 64 * 64].reshape(-1, 64)  # the out-of-range values first: kept
    for features in (values, values[:, ::2], np.asfortranarray(values), values.astype(">f4"),
                     values.astype(np.float64)):
        stored = stored_features(features)
        with np.errstate(over="ignore"):
            expected = np.ascontiguousarray(features, dtype=np.float16)
        assert stored.dtype == np.float16 and stored.flags.c_contiguous
        np.testing.assert_array_equal(stored.view(np.uint16), expected.view(np.uint16))


def two_chunks(folder, rows: int, first: int) -> tuple[np.ndarray, list[bytes]]:
    """(features, keys) of ``rows`` images cached in ``folder`` as two chunks, ``first`` rows in the first."""
    cache = FeatureCache(folder, SETTING)
    features = random_features(rows)
    keys = [digest(i) for i in range(rows)]
    cache.write_chunk(keys[:first], features[:first])
    cache.write_chunk(keys[first:], features[first:])
    return features, keys


def test_load_follows_the_order_asked_across_chunks(tmp_path):
    features, keys = two_chunks(tmp_path, 9, 4)
    order = [7, 0, 3, 3, 8, 1]
    loaded = FeatureCache(tmp_path, SETTING).load([keys[i] for i in order])
    np.testing.assert_array_equal(loaded, features[order].astype(np.float16).astype(np.float32))


def test_load_writes_into_the_array_it_is_given_when_it_fits(tmp_path):
    features, keys = two_chunks(tmp_path, 6, 3)
    order = [4, 1, 5, 0]
    expected = features[order].astype(np.float16).astype(np.float32)
    given = torch.full((4, 16), 7.0)
    loaded = FeatureCache(tmp_path, SETTING).load([keys[i] for i in order], out=given)
    np.testing.assert_array_equal(loaded, expected)
    assert np.shares_memory(loaded, given.numpy())
    unfit = torch.full((5, 16), 7.0)
    loaded = FeatureCache(tmp_path, SETTING).load([keys[i] for i in order], out=unfit)
    np.testing.assert_array_equal(loaded, expected)
    assert not np.shares_memory(loaded, unfit.numpy()) and (unfit == 7).all()


def test_chunks_are_memory_mapped_float16_files(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk([digest(0), digest(1)], random_features(2))
    reopened = FeatureCache(tmp_path, SETTING)
    assert len(reopened) == 2
    assert all(isinstance(chunk, np.memmap) for chunk in reopened._chunks)
    stored = list(cache.directory.glob("chunk-*.features.npy"))
    assert len(stored) == 1 and np.load(stored[0]).dtype == np.float16


@pytest.mark.parametrize("key", [b"\x07" * 31 + b"\x00", b"\xab" + b"\x00" * 31, b"\x00" * 32])
def test_digests_with_trailing_zero_bytes(tmp_path, key):
    cache = FeatureCache(tmp_path, SETTING)
    other = b"\x07" * 32
    features = random_features(2)
    cache.write_chunk([key, other], features)
    reopened = FeatureCache(tmp_path, SETTING)
    assert reopened.contains([key, other, b"\x07" * 31 + b"\x01"]).tolist() == [True, True, False]
    np.testing.assert_allclose(reopened.load([key]), features[:1], atol=1e-2)


def test_different_settings_use_different_directories(tmp_path):
    first = FeatureCache(tmp_path, SETTING)
    second = FeatureCache(tmp_path, {**SETTING, "preprocess": {"center_crop": 224, "jpeg_quality": 50}})
    assert first.directory != second.directory
    assert first.directory.parent == second.directory.parent == tmp_path
    first.write_chunk([digest(0)], random_features(1))
    assert not FeatureCache(tmp_path, second.setting).contains([digest(0)]).any()
    # The id depends on content, not on key order.
    assert setting_id({"a": 1, "b": 2}) == setting_id({"b": 2, "a": 1})


def test_chunk_without_commit_mark_is_ignored(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk([digest(0)], random_features(1, seed=1))
    cache.write_chunk([digest(1)], random_features(1, seed=2))
    markers = sorted(cache.directory.glob("chunk-*.json"))
    assert len(markers) == 2
    markers[1].unlink()  # as if the process died before the commit mark was written
    reopened = FeatureCache(tmp_path, SETTING)
    assert reopened.contains([digest(0), digest(1)]).tolist() == [True, False]
    assert len(reopened) == 1


def test_missing_digest_raises_key_error(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk([digest(0)], random_features(1))
    with pytest.raises(KeyError, match=digest(5).hex()):
        cache.load([digest(0), digest(5)])
    with pytest.raises(KeyError):
        FeatureCache(tmp_path / "empty", SETTING).load([digest(0)])


def test_empty_load_and_mismatched_write(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    assert cache.load([]).shape[0] == 0
    with pytest.raises(ValueError):
        cache.write_chunk([digest(0), digest(1)], random_features(1))


def test_setting_is_recorded_next_to_the_chunks(tmp_path):
    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk([digest(0)], random_features(1))
    assert json.loads((cache.directory / "setting.json").read_text()) == SETTING


def _only_chunk(cache: FeatureCache, suffix: str):
    (path,) = cache.directory.glob(f"chunk-*{suffix}")
    return path


@pytest.mark.parametrize("damage", ["bit flip", "truncate"])
def test_damaged_chunk_is_set_aside_with_a_warning(tmp_path, damage):
    keys = [digest(i) for i in range(6)]
    FeatureCache(tmp_path, SETTING).write_chunk(keys, random_features(6))
    features_file = _only_chunk(FeatureCache(tmp_path, SETTING), ".features.npy")
    data = bytearray(features_file.read_bytes())
    if damage == "bit flip":
        data[-3] ^= 0x10
    else:
        data = data[: len(data) // 2]
    features_file.write_bytes(bytes(data))
    reopened = FeatureCache(tmp_path, SETTING)
    with pytest.warns(UserWarning, match="corrupt .*checksum mismatch"):
        assert not reopened.contains(keys).any()
    assert list(reopened.directory.glob("chunk-*")) == []
    assert len(list(reopened.directory.glob("corrupt-chunk-*"))) == 3
    reopened.write_chunk(keys, random_features(6, seed=1))
    np.testing.assert_array_equal(FeatureCache(tmp_path, SETTING).load(keys),
                                  random_features(6, seed=1).astype(np.float16).astype(np.float32))


def test_unwritable_cache_gives_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import os

    cache = FeatureCache(tmp_path, SETTING)
    cache.write_chunk([digest(0)], random_features(1))
    before = sorted(p.name for p in cache.directory.iterdir())

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="cannot write to the feature cache .*No space left on device.*--cache-dir"):
        cache.write_chunk([digest(1)], random_features(1))
    assert sorted(p.name for p in cache.directory.iterdir()) == before
    assert FeatureCache(tmp_path, SETTING).contains([digest(0), digest(1)]).tolist() == [True, False]
